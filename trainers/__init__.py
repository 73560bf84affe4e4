"""Training side: models, data, tasks, pruning methods and the training loop."""
