"""The damage suite: damaged copies of a clip, and what ``fda preprocess`` makes of each.

A clip is damaged the ways files are in the wild (partial downloads, bit rot, careless concatenation, a wrong
extension), each way a seeded, reproducible byte edit (:func:`mutants`). :func:`judge` preprocesses a damaged copy
as ``fda preprocess`` would (:func:`fda.pipeline.preprocess.decode_clip`) and compares it with the undamaged clip:
every damaged copy must be a recorded failure, or a sample whose stored frames equal the undamaged clip's frames
at the stored indices, or a sample whose json marks each stored frame that differs (``tainted`` /
``tainted_partners``). Anything else is ``wrong``: a silently wrong frame. ``tests/test_damage.py`` runs it on
generated clips; ``benchmarks/bench_damage.py`` on real footage. See docs/DAMAGE.md.
"""

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import numpy as np

from fda.config import PreprocessConfig
from fda.pipeline.datasets import VideoItem
from fda.pipeline.clips import decode_clip
from fda.pipeline.video import VideoError, decode_frames

FLIPS = 8
"""Bytes flipped by one byte-flip mutant."""

RENAMED = {".mp4": ".mkv", ".mkv": ".avi", ".webm": ".mp4", ".avi": ".webm"}
"""The extension a renamed copy gets, by its real one."""


def _flip(data: bytes, rng: np.random.Generator, start: float, end: float) -> bytes:
    """:data:`FLIPS` random bytes between ``start`` and ``end`` (fractions of the file) inverted."""
    out = bytearray(data)
    lo, hi = int(len(data) * start), max(int(len(data) * end), int(len(data) * start) + 1)
    for at in rng.integers(lo, hi, FLIPS):
        out[at] ^= 0xFF
    return bytes(out)


def _zero(data: bytes, rng: np.random.Generator) -> bytes:
    """A tenth of the file (at least 1 kB) zeroed from its middle."""
    span = max(len(data) // 10, 1024)
    middle = len(data) // 2
    return data[:middle] + bytes(min(span, len(data) - middle)) + data[middle + span:]


def _duplicate(data: bytes, rng: np.random.Generator) -> bytes:
    """The twentieth of the file before its middle written twice."""
    middle = len(data) // 2
    return data[:middle] + data[middle - len(data) // 20:middle] + data[middle:]


def _truncate(data: bytes, rng: np.random.Generator, keep: float) -> bytes:
    """The first ``keep`` of the file (a partial download)."""
    return data[:int(len(data) * keep)]


def _joined(data: bytes, rng: np.random.Generator) -> bytes:
    """The file joined end to end to itself."""
    return data + data


def _same(data: bytes, rng: np.random.Generator) -> bytes:
    return data


MUTANT_KINDS: Dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "flip-start": functools.partial(_flip, start=0.02, end=0.10),
    "flip-middle": functools.partial(_flip, start=0.45, end=0.55),
    "flip-end": functools.partial(_flip, start=0.90, end=0.99),
    "zero-block": _zero,
    "duplicate-chunk": _duplicate,
    "truncate-30": functools.partial(_truncate, keep=0.30),
    "truncate-60": functools.partial(_truncate, keep=0.60),
    "truncate-90": functools.partial(_truncate, keep=0.90),
    "truncate-98": functools.partial(_truncate, keep=0.977),
    "joined": _joined,
    "renamed": _same,
}
"""Each kind of damage: ``(bytes, rng) -> damaged bytes`` (``renamed`` keeps the bytes; :func:`mutants` changes the
extension)."""


def mutants(path: str, out_dir: str, seed: int = 0) -> Iterator[Tuple[str, str]]:
    """Write one damaged copy of ``path`` per kind of :data:`MUTANT_KINDS` into ``out_dir``; yield ``(kind, path)``.

    The same ``seed`` gives the same bytes.
    """
    with open(path, "rb") as f:
        data = f.read()
    stem, ext = os.path.splitext(os.path.basename(path))
    for number, (kind, mutate) in enumerate(MUTANT_KINDS.items()):
        rng = np.random.default_rng([seed, number])
        new_ext = RENAMED.get(ext.lower(), ".mkv") if kind == "renamed" else ext
        out = os.path.join(out_dir, f"{stem}.{kind}{new_ext}")
        with open(out, "wb") as f:
            f.write(mutate(data, rng))
        yield kind, out


@dataclass(frozen=True)
class Verdict:
    """What became of one damaged copy.

    Attributes:
        outcome: ``failure`` (a recorded failure), ``recorded`` (a sample whose json records damage: frames lost,
            truncated or tainted), ``clean`` (a sample with no damage record and the undamaged clip's frames) or
            ``wrong`` (a stored frame differs from the undamaged clip's and the json does not mark it).
        detail: the failure's reason, or the frames that differ.
        meta: the sample json (``None`` for a failure).
    """

    outcome: str
    detail: str = ""
    meta: Optional[Dict[str, Any]] = None


DAMAGE_FIELDS = ("tainted_frames", "holes", "demux_damage", "length_note")


def damage_recorded(meta: Dict[str, Any]) -> bool:
    """Whether a sample json records any damage."""
    return bool(meta["frames_lost"] or meta["truncated_frames"] or meta["decode_errors"]
                or any(k in meta for k in DAMAGE_FIELDS))


def judge(path: str, reference: str, cfg: PreprocessConfig, split: str = "test", joined: bool = False) -> Verdict:
    """Preprocess the damaged copy ``path`` as ``cfg`` says and compare it with the undamaged clip ``reference``
    (``joined``: ``path`` is the clip joined to itself, so its frame ``i`` is the clip's frame ``i mod N``)."""
    item = VideoItem(os.path.basename(path).replace(".", "_"), split, path, ("a damaged clip",),
                     os.path.basename(path))
    try:
        clip = decode_clip(item, cfg)
    except VideoError as err:
        return Verdict("failure", str(err))
    meta = clip.meta
    whole = decode_frames(reference, [], cfg.size, full=True)
    period = whole.count if joined and whole.count else 1 << 62
    needed = sorted(set(meta["indices"]) | set(meta["partners"]))
    ref_frames = decode_frames(reference, sorted({i % period for i in needed}), cfg.size, full=True).frames
    ref = {i: ref_frames[i % period] for i in needed if i % period in ref_frames}
    marked = set(meta.get("tainted", [])), set(meta.get("tainted_partners", []))
    differ = []
    for which, (indices, stored) in enumerate(((meta["indices"], clip.frames), (meta["partners"], clip.partners))):
        for k, (i, frame) in enumerate(zip(indices, stored)):
            if (i not in ref or not np.array_equal(ref[i], frame)) and k not in marked[which]:
                differ.append(f"{'partner' if which else 'frame'} {k} (index {i})")
    if differ:
        return Verdict("wrong", ", ".join(differ[:4]) + (f" and {len(differ) - 4} more" if len(differ) > 4 else ""),
                       meta)
    return Verdict("recorded" if damage_recorded(meta) else "clean", "", meta)


def suite_config(size: int = 32, **changes: Any) -> PreprocessConfig:
    """The preprocess config the damage suite runs with (the defaults, small frames)."""
    return dataclasses.replace(PreprocessConfig(".", size=size), **changes)
