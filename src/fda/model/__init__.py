"""Alpha-CLIP on open_clip: alpha patch embedding, checkpoints, video encoder, transforms."""
