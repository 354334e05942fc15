"""Training loop, loss, optimiser and schedule."""
