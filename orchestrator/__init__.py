"""Sweep orchestration on Ray Tune + Ray Train, tracked in MLflow."""
