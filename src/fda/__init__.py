"""FDA-CLIP: frame-difference alpha masks for Alpha-CLIP text-video retrieval."""

__version__ = "0.1.0"
