"""datasets/loaders."""
