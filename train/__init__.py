"""Training through accelerate: one loop shared by every model."""
