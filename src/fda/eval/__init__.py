"""Retrieval metrics and evaluation runs (``from fda.eval import metrics``)."""
