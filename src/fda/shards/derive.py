"""Derived shard sets: a finished shard set copied with some members of its samples rewritten.

:func:`rewrite` keeps the shard names, the sample keys and the member order, so a derived set is what the readers
expect of any shard set; the manifest records where it came from (``derived``). The benchmarks derive sets whose
masks are all ones or another clip's (:func:`fda.lab.motion_bench.derive_mask_set`).
"""

import os
from typing import Any, Callable, Dict, List, Mapping

from fda.shards.manifest import load_manifest, split_shards
from fda.shards.reader import iter_samples, unreadable_shard
from fda.shards.schema import CONFIG, MANIFEST, read_json, write_json_atomic
from fda.shards.writer import ShardWriter

Sample = Dict[str, Any]
"""A sample as :func:`fda.shards.reader.iter_samples` yields it: ``__key__`` and member suffix -> bytes."""


def rewrite(src: str, dst: str, fn: Callable[[str, List[Sample]], List[Mapping[str, bytes]]], *,
            derived: Mapping[str, Any]) -> str:
    """Copy the shard set ``src`` to ``dst``, split by split, with the members ``fn`` returns in place of the old.

    Args:
        src: a finished shard set (its manifest is read).
        dst: the copy's folder (created); a copy already finished there (manifest present) is kept as it is.
        fn: ``(split, samples in the order written) -> per sample {member suffix: new bytes}``; members it leaves
            out are copied byte for byte. It is called once per split, in the manifest's order.
        derived: what the copy is, recorded as the manifest's ``derived`` after ``"from": src``.

    Returns:
        ``dst``.

    Raises:
        InputError: ``src`` is no finished shard set or a shard is unreadable (or what ``fn`` raises).
    """
    if os.path.isfile(os.path.join(dst, MANIFEST)):
        return dst
    manifest = load_manifest(src)
    os.makedirs(dst, exist_ok=True)
    for split in manifest.get("splits", {}):
        names = split_shards(manifest, split)
        per_shard = [list(iter_samples([os.path.join(src, name)], handler=unreadable_shard))
                     for name in names]  # read once
        new = fn(split, [raw for shard in per_shard for raw in shard])
        pos = 0
        for name, shard in zip(names, per_shard):
            with ShardWriter(os.path.join(dst, name)) as writer:
                for raw in shard:
                    changed = new[pos]
                    writer.write([(f"{raw['__key__']}.{suffix}", changed.get(suffix, data))
                                  for suffix, data in raw.items()  # tar order, as written
                                  if not suffix.startswith("__")])  # __key__, __url__: not members
                    pos += 1
    if os.path.isfile(os.path.join(src, CONFIG)):
        write_json_atomic(os.path.join(dst, CONFIG), read_json(os.path.join(src, CONFIG)))
    write_json_atomic(os.path.join(dst, MANIFEST), {**manifest, "derived": {"from": os.path.abspath(src),
                                                                            **derived}})
    return dst
