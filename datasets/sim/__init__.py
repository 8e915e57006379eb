"""datasets/sim."""
