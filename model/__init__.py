"""TZN: Temporal Zoom Network detector (pure PyTorch)."""
