"""The application layer: experiments and scene generators built on the core packages.

The core (``pipeline``, ``shards``, ``model``, ``train``, ``eval``) never imports ``fda.lab``;
``tests/test_layering.py`` keeps it that way.
"""
