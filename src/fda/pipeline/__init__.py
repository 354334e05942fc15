"""Offline preprocessing: decode videos, sample frames, compute frame-difference masks, write shards."""
