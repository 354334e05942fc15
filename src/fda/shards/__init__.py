"""The shard format (schema, manifest, writer, reader): a versioned contract between the stages.

``fda.shards.rewrite`` (:func:`fda.shards.derive.rewrite`, imported lazily: the readers pull in webdataset) copies a
shard set with some members rewritten.
"""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "rewrite":
        return importlib.import_module("fda.shards.derive").rewrite
    raise AttributeError(f"module 'fda.shards' has no attribute {name!r}")
