"""The training input pipeline: shard set -> endless, deterministic, per-rank streams of uint8 batches.

One explicit ``webdataset.DataPipeline`` per DataLoader worker (STYLE.md §7), every stage a top-level generator
wrapped by ``pipelinefilter`` (picklable, no lambdas)::

    slot_pieces        the shards this (rank, worker) slot reads in this epoch, endlessly re-shuffled pass after pass
    piece_samples      tar -> raw samples (bytes per member); a truncated/corrupt shard is skipped with a warning
    expand_captions    the captions a video contributes: all of them ("all") or one at random per visit ("random")
    shuffle_pairs      a seeded shuffle buffer of videos that emits one (video, caption) pair per draw
    batch_unique       batches that never hold the same video twice (a repeat waits for the next batch)
    skip_batches       fast-forward after a resume, before any JPEG is decoded
    decode_batch       JPEG/PNG -> uint8 arrays, stacked: frames [B, T, H, W, 3], masks [B, T, H, W]

Equal steps on every rank (the webdataset + DDP trap, PERF_NOTES.md): shards are dealt to ``world_size x workers``
slots per epoch, balanced by the manifest's pair counts, and every slot's stream is endless (a slot that runs out
starts another shuffled pass over its shards, as ``DistributedSampler`` pads). The trainer takes exactly
:func:`batches_per_epoch` batches per rank per epoch, computed from the manifest, so no rank waits for another.
Every pair is seen once per epoch up to that padding and the dropped remainder of the last global batch.

Determinism: every random choice comes from ``numpy.random.default_rng([seed, epoch, slot, ...])``, so a slot's
stream depends only on (seed, epoch, slot). With DataLoader workers the loader returns batch ``i`` from worker
``i % workers``; after a resume at batch ``b`` physical worker ``p`` plays logical worker ``(p + b) % workers`` and
skips that worker's share of the first ``b`` batches, so the stream continues exactly where it stopped.

This module yields numpy (no torch import, STYLE.md §2); the trainer wraps the pipeline in a torch DataLoader.
"""

import functools
import json
import logging
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import webdataset as wds
from webdataset.utils import pytorch_worker_info

from fda.config import CAPTION_MODES
from fda.errors import ConfigError, InputError
from fda.shards.manifest import ShardInfo, SplitInfo
from fda.shards.reader import decode_sample, iter_samples, one_line, shard_of
from fda.shards.schema import CAPTIONS, META, frame_member, mask_member

logger = logging.getLogger(__name__)

PASS_END = "__pass_end__"  # marker between two passes over a slot's shards: the shuffle buffer drains there


def batches_per_epoch(info: SplitInfo, captions: str, batch_size: int, world_size: int) -> int:
    """Batches every rank takes per epoch: the epoch's pairs over the global batch, remainder dropped (>= 1)."""
    return max(1, info.pairs(captions) // (batch_size * world_size))


# ---------------------------------------------------------------------------------------------------------------
# Planning: which slot reads which shard (pure, tested directly).

Piece = Tuple[str, int, int]  # (shard url, modulo k, remainder j): samples i of the shard with i % k == j


def plan_slots(shards: Sequence[ShardInfo], n_slots: int, seed: int, epoch: int,
               captions: str = "all") -> List[List[Piece]]:
    """Deal the shards of one epoch to ``n_slots`` (rank, worker) slots.

    With at least as many shards as slots, shards are shuffled (seeded by ``seed`` and ``epoch``) and each goes to
    the slot with the fewest pairs so far. With fewer shards than slots, each shard is shared by several slots,
    each reading every k-th sample, so no slot is idle.

    Returns:
        ``n_slots`` lists of pieces ``(url, k, j)``.
    """
    order = np.random.default_rng([seed, epoch, 0x5107]).permutation(len(shards))
    plan: List[List[Piece]] = [[] for _ in range(n_slots)]
    if len(shards) >= n_slots:
        load = np.zeros(n_slots, dtype=np.int64)
        for i in order:
            slot = int(np.argmin(load))  # first lightest: deterministic
            plan[slot].append((shards[i].url, 1, 0))
            load[slot] += shards[i].captions if captions == "all" else shards[i].samples
        return plan
    owners: Dict[int, List[int]] = {}
    for slot in range(n_slots):
        owners.setdefault(int(order[slot % len(shards)]), []).append(slot)
    for shard_index, slots in owners.items():
        for j, slot in enumerate(slots):
            plan[slot].append((shards[shard_index].url, len(slots), j))
    return plan


def slot_videos(plan: Sequence[Sequence[Piece]], shards: Sequence[ShardInfo]) -> List[int]:
    """Videos each slot of ``plan`` reads per pass (from the manifest counts)."""
    samples = {s.url: s.samples for s in shards}
    return [sum(len(range(j, samples[url], k)) for url, k, j in pieces) for pieces in plan]


def check_plan(info: SplitInfo, batch_size: int, world_size: int, workers: int, seed: int = 0, epoch: int = 0,
               captions: str = "all") -> None:
    """Refuse a layout in which some slot cannot fill a batch without repeating a video.

    Raises:
        ConfigError: a (rank, worker) slot of the epoch's deal sees fewer videos than ``batch_size``.
    """
    n_slots = world_size * max(1, workers)
    fewest = min(slot_videos(plan_slots(info.shards, n_slots, seed, epoch, captions), info.shards))
    if fewest < batch_size:
        raise ConfigError(f"--batch-size {batch_size} needs that many distinct videos per data stream, but with "
                          f"{world_size} process(es) x {max(1, workers)} worker(s) over {len(info.shards)} shard(s) "
                          f"of {info.videos} videos one stream sees only {fewest}: lower --batch-size or "
                          f"--loader-workers")


def logical_worker(physical: int, workers: int, skip: int) -> int:
    """The worker whose stream physical worker ``physical`` continues after ``skip`` batches (see module doc)."""
    return (physical + skip) % workers


def worker_skip(logical: int, workers: int, skip: int) -> int:
    """How many of the first ``skip`` batches came from logical worker ``logical`` (batch i from i % workers)."""
    return max(0, -(-(skip - logical) // workers))


def _slot(rank: int, workers: int, skip: int) -> Tuple[int, int]:
    """``(slot, logical worker)`` of the calling DataLoader worker (or the main process)."""
    _, _, physical, num = pytorch_worker_info()
    workers = max(1, workers)
    if num != workers:
        raise RuntimeError(f"pipeline built for {workers} workers runs in a DataLoader with {num}")
    logical = logical_worker(physical, workers, skip)
    return rank * workers + logical, logical


# ---------------------------------------------------------------------------------------------------------------
# Stages. Each takes the upstream iterator first; ``pipelinefilter`` binds the rest.

def _slot_pieces(plan: List[List[Piece]], rank: int, workers: int, skip: int, seed: int,
                 epoch: int) -> Iterator[Dict[str, Any]]:
    """Source: this slot's pieces, pass after pass (each pass re-shuffled), forever."""
    slot, _ = _slot(rank, workers, skip)
    pieces = plan[slot]
    for pass_index in range(1 << 62):
        order = np.random.default_rng([seed, epoch, slot, pass_index, 0x9A55]).permutation(len(pieces))
        for i in order:
            url, k, j = pieces[i]
            yield {"url": url, "k": k, "j": j, "pass": pass_index}


class ShardWarnings:
    """Exception handler for tar reading: log each broken shard once per worker, naming it, and go on."""

    def __init__(self) -> None:
        self.seen: set = set()

    def __call__(self, exn: Exception) -> bool:
        url = shard_of(exn)
        if url not in self.seen:
            self.seen.add(url)
            logger.warning("skipping the rest of shard %s: %s", url, one_line(exn))
        return True


def _complete(raw: Dict[str, Any]) -> Optional[str]:
    """``None`` when a raw sample has every member its meta names, else what is wrong (cheap: no image decode)."""
    try:
        meta = json.loads(raw[META])
        captions = json.loads(raw[CAPTIONS])
        count = len(meta["indices"])
    except Exception as exn:  # noqa: BLE001 - anything unreadable is a broken sample
        return f"unreadable meta or captions ({one_line(exn)})"
    if not captions:
        return "no captions"
    for i in range(count):
        for member in (frame_member(i), mask_member(i)):
            if member not in raw:
                return f"member {member} missing"
    return None


def _piece_samples(pieces: Iterator[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """Raw samples of each piece; a broken shard or sample is skipped with a warning naming it.

    Raises:
        InputError: a whole pass over the slot's shards produced no sample (every shard broken).
    """
    handler = ShardWarnings()
    bad_samples: set = set()
    current_pass, yielded = 0, 0
    for piece in pieces:
        if piece["pass"] != current_pass:
            if yielded == 0:
                raise InputError(f"no readable sample in shard(s) of this data stream (last: {piece['url']}): "
                                 f"check the shards or rerun fda preprocess")
            current_pass, yielded = piece["pass"], 0
            yield {PASS_END: True}
        k, j = piece["k"], piece["j"]
        for index, raw in enumerate(iter_samples([piece["url"]], handler=handler)):
            if index % k != j:
                continue
            problem = _complete(raw)
            if problem is not None:
                tag = (piece["url"], raw.get("__key__"))
                if tag not in bad_samples:
                    bad_samples.add(tag)
                    logger.warning("skipping sample %s of shard %s: %s", raw.get("__key__"), piece["url"], problem)
                continue
            yielded += 1
            yield raw


def _expand_captions(samples: Iterator[Dict[str, Any]], mode: str, rank: int, workers: int, skip: int, seed: int,
                     epoch: int) -> Iterator[Dict[str, Any]]:
    """Raw sample -> ``{"raw", "video", "captions"}``: its captions to emit, all (shuffled) or one drawn at random."""
    slot, _ = _slot(rank, workers, skip)
    rng = np.random.default_rng([seed, epoch, slot, 0xCA9])
    for raw in samples:
        if PASS_END in raw:
            yield raw
            continue
        captions = json.loads(raw[CAPTIONS])
        if mode == "all":
            chosen = [captions[int(i)] for i in rng.permutation(len(captions))]
        else:
            chosen = [captions[int(rng.integers(len(captions)))]]
        yield {"raw": raw, "video": raw["__key__"], "captions": chosen}


def _shuffle_pairs(videos: Iterator[Dict[str, Any]], bufsize: int, rank: int, workers: int, skip: int, seed: int,
                   epoch: int) -> Iterator[Dict[str, Any]]:
    """Pairs ``{"raw", "video", "caption"}`` drawn from a seeded buffer of ``bufsize`` videos.

    Each draw picks a random video of the buffer and emits its next caption; a video whose captions are used up
    makes room for the next one. A buffer counted in videos (not pairs) keeps many distinct videos in play when a
    video has 20 captions, so batches rarely need to hold a repeat back, and pairs of one video share its bytes.
    The buffer drains at the end of each pass, so a pass emits each of its pairs exactly once before the next.
    """
    slot, _ = _slot(rank, workers, skip)
    rng = np.random.default_rng([seed, epoch, slot, 0x5F1E])
    bufsize = max(1, bufsize)
    buf: List[Dict[str, Any]] = []
    for video in videos:
        if PASS_END in video:
            while buf:
                yield _draw(buf, rng)
            continue
        buf.append({**video, "next": 0})
        while len(buf) >= bufsize:
            yield _draw(buf, rng)
    while buf:  # only reached by a finite upstream (tests, benchmarks)
        yield _draw(buf, rng)


def _draw(buf: List[Dict[str, Any]], rng: np.random.Generator) -> Dict[str, Any]:
    i = int(rng.integers(len(buf)))
    video = buf[i]
    pair = {"raw": video["raw"], "video": video["video"], "caption": video["captions"][video["next"]]}
    video["next"] += 1
    if video["next"] == len(video["captions"]):
        buf[i] = buf[-1]
        buf.pop()
    return pair


def _batch_unique(pairs: Iterator[Dict[str, Any]], batch_size: int) -> Iterator[List[Dict[str, Any]]]:
    """Batches of ``batch_size`` pairs with distinct videos; a repeated video is held back for a later batch.

    Raises:
        InputError: the held-back pairs keep growing: the stream has too few distinct videos for a batch (fail
            instead of waiting forever).
    """
    limit = 64 * batch_size + 10000
    held: List[Dict[str, Any]] = []
    batch: List[Dict[str, Any]] = []
    videos: set = set()

    def fill_from_held() -> None:
        keep = []
        for pair in held:
            if len(batch) < batch_size and pair["video"] not in videos:
                batch.append(pair)
                videos.add(pair["video"])
            else:
                keep.append(pair)
        held[:] = keep

    for pair in pairs:
        if pair["video"] in videos:
            held.append(pair)
            if len(held) > limit:
                raise InputError(f"cannot fill a batch of {batch_size} distinct videos: {len(held)} pairs held back "
                                 f"(too few videos per data stream): lower --batch-size or --loader-workers")
            continue
        batch.append(pair)
        videos.add(pair["video"])
        while len(batch) == batch_size:
            yield batch
            batch, videos = [], set()
            fill_from_held()


def _skip_batches(batches: Iterator[Any], rank: int, workers: int, skip: int) -> Iterator[Any]:
    """Drop this logical worker's share of the first ``skip`` batches (nothing has been decoded yet)."""
    _, logical = _slot(rank, workers, skip)
    count = worker_skip(logical, max(1, workers), skip)
    for index, batch in enumerate(batches):
        if index >= count:
            yield batch


def _decode_batch(batches: Iterator[List[Dict[str, Any]]],
                  batch_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]]) -> Iterator[Dict[str, Any]]:
    """Decode a batch of pairs into ``{"frames" uint8 [B,T,H,W,3], "masks" uint8 [B,T,H,W], "captions", "keys"}``.

    A sample whose images do not decode is dropped from its batch with a warning (the batch is then smaller).
    """
    for batch in batches:
        frames, masks, captions, keys = [], [], [], []
        for pair in batch:
            raw = pair["raw"]
            try:
                sample = decode_sample(raw)
            except Exception as exn:  # noqa: BLE001 - a corrupt member drops one sample, not the run
                logger.warning("skipping sample %s of shard %s: %s", raw.get("__key__"), raw.get("__url__"),
                               one_line(exn))
                continue
            frames.append(sample["frames"])
            masks.append(sample["masks"])
            captions.append(pair["caption"])
            keys.append(sample["key"])
        if not frames:
            continue
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            raise InputError(f"samples of one batch differ in frame shape {sorted(shapes)} (e.g. in "
                             f"{batch[0]['raw'].get('__url__')}): every train sample needs the same frames and size")
        out = {"frames": np.stack(frames), "masks": np.stack(masks), "captions": captions, "keys": keys}
        if batch_fn is not None:
            out.update(batch_fn(out))
        yield out


slot_pieces = _slot_pieces
piece_samples = wds.pipelinefilter(_piece_samples)


def _drop_keys(samples: Iterator[Dict[str, Any]], exclude: FrozenSet[str]) -> Iterator[Dict[str, Any]]:
    """Raw samples whose key is not in ``exclude`` (videos held out for validation); pass markers go through."""
    for sample in samples:
        if PASS_END in sample or sample.get("__key__") not in exclude:
            yield sample


drop_keys = wds.pipelinefilter(_drop_keys)
expand_captions = wds.pipelinefilter(_expand_captions)
shuffle_pairs = wds.pipelinefilter(_shuffle_pairs)
batch_unique = wds.pipelinefilter(_batch_unique)
skip_batches = wds.pipelinefilter(_skip_batches)
decode_batch = wds.pipelinefilter(_decode_batch)


def build_train_pipeline(info: SplitInfo, *, batch_size: int, captions: str = "all", seed: int = 0, epoch: int = 0,
                         rank: int = 0, world_size: int = 1, workers: int = 0, shuffle_buffer: int = 500,
                         skip: int = 0,
                         batch_fn: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
                         exclude: FrozenSet[str] = frozenset()) -> wds.DataPipeline:
    """The endless training stream of one rank for one epoch (see the module docstring).

    Args:
        info: the split to read (:func:`fda.shards.manifest.load_split`).
        batch_size: pairs per batch on this rank.
        captions: ``"all"`` (every pair once per epoch) or ``"random"`` (one random caption per video visit).
        seed: run seed; with ``epoch``, ``rank`` and the worker it fixes every shuffle.
        epoch: epoch number (0-based).
        rank: this process's rank; ``world_size`` processes read disjoint shards.
        world_size: number of processes.
        workers: DataLoader workers that will run the pipeline (0: the main process).
        shuffle_buffer: videos in the shuffle buffer (capped at the videos a stream sees per pass).
        skip: batches this rank already consumed in this epoch (resume).
        batch_fn: optional picklable ``f(batch) -> dict`` merged into each batch inside the worker (tokenising).
        exclude: sample keys left out of the stream (held out for validation; ``info``'s counts exclude them).

    Returns:
        A ``webdataset.DataPipeline`` (an ``IterableDataset``) yielding decoded batches endlessly: take
        :func:`batches_per_epoch` of them. Use it in a DataLoader with ``batch_size=None`` and ``workers`` workers.

    Raises:
        ConfigError: bad ``captions``/``batch_size``, or a slot with fewer videos than ``batch_size``.
    """
    if captions not in CAPTION_MODES:
        raise ConfigError(f"--captions must be one of {', '.join(CAPTION_MODES)}, got {captions!r}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {batch_size}")
    check_plan(info, batch_size, world_size, workers, seed, epoch, captions)
    n_workers = max(1, workers)
    plan = plan_slots(info.shards, world_size * n_workers, seed, epoch, captions)
    # a buffer larger than a slot's videos would only mix in the next pass
    bufsize = max(1, min(shuffle_buffer, min(slot_videos(plan, info.shards))))
    slot_args = dict(rank=rank, workers=n_workers, skip=skip)
    return wds.DataPipeline(
        # shards: this (rank, worker) slot's share, shuffled per epoch and per pass; endless so ranks stay in step
        functools.partial(slot_pieces, plan, seed=seed, epoch=epoch, **slot_args),
        # tar -> raw samples; broken shards and incomplete samples are skipped with a warning naming them
        piece_samples(),
        # videos held out for validation (--val-from-train) never train
        drop_keys(exclude=frozenset(exclude)),
        # captions to use per video: all of them per epoch, or one random caption per visit
        expand_captions(mode=captions, seed=seed, epoch=epoch, **slot_args),
        # shuffle buffer of videos, drawing one (video, caption) pair at a time; seeded per slot
        shuffle_pairs(bufsize=bufsize, seed=seed, epoch=epoch, **slot_args),
        # batches without a repeated video (a repeat would be a false negative)
        batch_unique(batch_size=batch_size),
        # resume: drop what was consumed, still undecoded
        skip_batches(**slot_args),
        # decode and stack (uint8; normalisation belongs to fda.model.transforms)
        decode_batch(batch_fn=batch_fn),
    )
