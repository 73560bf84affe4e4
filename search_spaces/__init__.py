"""search_spaces package."""
