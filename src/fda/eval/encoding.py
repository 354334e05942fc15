"""Encoding a split: read its shards in manifest order and turn videos and captions into unit-length embeddings.

The split is read with :func:`fda.shards.reader.iter_samples` in manifest order with ``reraise_exception``: every
sample must count, so a corrupt or short shard is an :class:`~fda.errors.InputError` naming it. Video ``i`` is the
``i``-th sample written; captions follow in video order and ``text_to_video`` maps them back.
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from webdataset.handlers import reraise_exception

from fda.errors import InputError
from fda.shards.location import is_url
from fda.shards.manifest import SplitInfo, load_manifest, load_split, require_captions
from fda.shards.reader import decode_sample, iter_samples


# --------------------------------------------------------------------------------------------------------------
# Reading a split


def _raw_samples(url: str) -> Iterator[Dict[str, Any]]:
    """Raw samples of one shard, in the order written (no shuffle; errors raised)."""
    return iter_samples([url], handler=reraise_exception)  # tar -> {__key__, member: bytes}; never skip


def iter_split_batches(info: SplitInfo, batch_size: int, *, workers: int = 0) -> Iterator[List[Dict[str, Any]]]:
    """Decoded samples of a split, in manifest order, ``batch_size`` at a time.

    Args:
        info: the split, from :func:`fda.shards.manifest.load_split`.
        batch_size: samples per yielded list.
        workers: decoding threads (0: decode in this thread).

    Yields:
        Lists of :func:`fda.shards.reader.decode_sample` dicts (``frames`` uint8 ``[T, H, W, 3]``, ``masks``
        uint8 ``[T, H, W]``, ``meta``, ``captions``).

    Raises:
        InputError: a shard is unreadable or corrupt, holds another number of samples than the manifest says, or
            a sample has another frame count than the split.
    """
    pool = ThreadPoolExecutor(workers) if workers > 0 else None
    decode = pool.map if pool is not None else map
    batch: List[Dict[str, Any]] = []
    try:
        for shard in info.shards:
            name = os.path.basename(shard.url)
            seen = 0
            raw_iter = _raw_samples(shard.url)
            while True:
                try:
                    raws = [raw for _, raw in zip(range(batch_size), raw_iter)]
                    decoded = list(decode(decode_sample, raws))
                except InputError as err:
                    raise InputError(f"shard {name}: {err}") from None
                except Exception as err:  # noqa: BLE001 - tar, gzip, PIL and OS errors: all mean a corrupt shard
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                    if is_url(shard.url):  # a remote shard that failed after the retries: the fix is elsewhere
                        raise InputError(f"shard {shard.url} could not be read ({type(err).__name__}: {first}): "
                                         f"every eval sample must count, so eval stops; check the server or the "
                                         f"copy and rerun") from None
                    raise InputError(f"shard {name} is corrupt or unreadable ({type(err).__name__}: {first}): every "
                                     f"eval sample must count; rerun fda preprocess for split {info.split}") from None
                for sample in decoded:
                    if info.frames and sample["frames"].shape[0] != info.frames:
                        raise InputError(f"shard {name}: sample {sample['key']} has {sample['frames'].shape[0]} "
                                         f"frames, the manifest says {info.frames}: rerun fda preprocess")
                    batch.append(sample)
                    if len(batch) == batch_size:
                        yield batch
                        batch = []
                seen += len(decoded)
                if len(raws) < batch_size:
                    break
            if seen != shard.samples:
                raise InputError(f"shard {name} holds {seen} samples, the manifest says {shard.samples}: the shard "
                                 f"is truncated or was replaced; rerun fda preprocess for split {info.split}")
        if batch:
            yield batch
    finally:
        if pool is not None:
            pool.shutdown()


def open_split(shards_dir: str, split: str, frames: Optional[int]) -> SplitInfo:
    """:func:`load_split` plus the frame-count check.

    Raises:
        InputError: as :func:`load_split`, or the split holds another number of frames per clip than ``frames``.
    """
    manifest = load_manifest(shards_dir)  # read once (one GET from a URL)
    require_captions(shards_dir, split, "fda eval", manifest)
    info = load_split(shards_dir, split, manifest)
    if frames is not None and info.frames and info.frames != frames:
        option = "--frames-train" if split == "train" else "--frames-test"
        raise InputError(f"shards in {shards_dir!r} hold {info.frames} frames per {split} clip, --frames is {frames}: "
                         f"pass --frames {info.frames} (or leave it out) or rerun fda preprocess with {option} "
                         f"{frames}")
    return info


# --------------------------------------------------------------------------------------------------------------
# Encoding


@dataclass
class SplitFeatures:
    """Encoded split: unit-length features, ids and the caption -> video map.

    Attributes:
        video: ``{use_alpha: float32 [num_videos, D]}``: with the alpha channel (True) and/or without (False).
        text: float32 ``[num_captions, D]``.
        text_to_video: int64 ``[num_captions]``.
        video_ids: ``[num_videos]`` ids, in manifest order.
        captions: ``[num_captions]`` texts, in video order.
    """

    video: Dict[bool, np.ndarray]
    text: np.ndarray
    text_to_video: np.ndarray
    video_ids: List[str]
    captions: List[str]

    @property
    def protocol(self) -> str:
        """``square`` when every video has exactly one caption, else ``multi``."""
        one_each = len(self.captions) == len(self.video_ids) and np.array_equal(
            self.text_to_video, np.arange(len(self.video_ids)))
        return "square" if one_each else "multi"


def _bar(total: int, desc: str, unit: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                disable=None if progress else True)


def iter_video_features(model: Any, info: SplitInfo, *, variants: Sequence[bool] = (True,), batch_size: int = 32,
                        device: Any = "cpu", workers: int = 0,
                        progress: bool = True) -> Iterator[Tuple[Dict[bool, np.ndarray], List[str], List[List[str]]]]:
    """Encode a split's videos batch by batch, once per ``use_alpha`` variant, decoding the shards once.

    Args:
        model: a :class:`fda.model.VideoAlphaCLIP` (its ``use_alpha`` is restored afterwards).
        info: the split.
        variants: ``use_alpha`` values to encode with (True: frame-difference alpha; False: plain CLIP meanP).
        batch_size: clips per forward pass.
        device: where the model runs.
        workers: JPEG/PNG decoding threads.
        progress: show a progress bar (on a TTY).

    Yields:
        ``({use_alpha: float32 [B, D] unit length}, video ids [B], captions per video [B])``.
    """
    from fda.model.transforms import shard_batch_to_inputs

    saved = model.use_alpha
    autocast = torch.autocast("cuda", dtype=torch.float16) if torch.device(device).type == "cuda" else nullcontext()
    try:
        with logging_redirect_tqdm(), _bar(info.videos, f"encode {info.split} videos", "video", progress) as bar:
            for batch in iter_split_batches(info, batch_size, workers=workers):
                frames = np.stack([s["frames"] for s in batch])  # [B, T, H, W, 3] uint8
                masks = np.stack([s["masks"] for s in batch])  # [B, T, H, W] uint8
                images, alphas = shard_batch_to_inputs(frames, masks, model.image_size, device=device)
                feats: Dict[bool, np.ndarray] = {}
                for variant in variants:
                    model.use_alpha = variant
                    with torch.inference_mode(), autocast:
                        out = model.encode_video(images, alphas if variant else None)  # [B, D] unit length
                    feats[variant] = F.normalize(out.float(), dim=-1).cpu().numpy()
                model.use_alpha = saved
                yield (feats, [str(s["meta"].get("video_id", s["key"])) for s in batch],
                       [list(s["captions"]) for s in batch])
                bar.update(len(batch))
    finally:
        model.use_alpha = saved


def encode_videos(model: Any, info: SplitInfo, *, variants: Sequence[bool] = (True,), batch_size: int = 32,
                  device: Any = "cpu", workers: int = 0,
                  progress: bool = True) -> Tuple[Dict[bool, np.ndarray], List[str], List[List[str]]]:
    """Every video of a split (see :func:`iter_video_features`), collected.

    Returns:
        ``({use_alpha: float32 [num_videos, D]}, video ids, captions per video)``.

    Raises:
        InputError: fewer videos than the manifest lists, or any error of :func:`iter_split_batches`.
    """
    out: Dict[bool, List[np.ndarray]] = {v: [] for v in variants}
    ids: List[str] = []
    captions: List[List[str]] = []
    stream = iter_video_features(model, info, variants=variants, batch_size=batch_size, device=device,
                                 workers=workers, progress=progress)
    for feats, batch_ids, batch_captions in stream:
        for v in variants:
            out[v].append(feats[v])
        ids += batch_ids
        captions += batch_captions
    if len(ids) != info.videos:
        raise InputError(f"split {info.split}: read {len(ids)} videos, the manifest says {info.videos}: rerun fda "
                         f"preprocess")
    return {v: np.concatenate(f) for v, f in out.items()}, ids, captions


@torch.inference_mode()
def encode_texts(model: Any, captions: Sequence[str], *, tokenizer: Any = None, batch_size: int = 256,
                 device: Any = "cpu", progress: bool = True) -> np.ndarray:
    """Encode captions to unit-length float32 ``[N, D]``.

    Args:
        model: the model (``encode_text`` returns unnormalised features; they are normalised here).
        captions: the texts.
        tokenizer: ``tokenizer(list[str]) -> int64 [N, L]``; default: the model's.
        batch_size: captions per forward pass.
        device: where the model runs.
        progress: show a progress bar (on a TTY).
    """
    if tokenizer is None:
        from fda.model import get_tokenizer

        tokenizer = get_tokenizer(model.context_length)
    chunks = []
    autocast = torch.autocast("cuda", dtype=torch.float16) if torch.device(device).type == "cuda" else nullcontext()
    with logging_redirect_tqdm(), _bar(len(captions), "encode captions", "caption", progress) as bar:
        for start in range(0, len(captions), batch_size):
            part = list(captions[start:start + batch_size])
            tokens = tokenizer(part).to(device)  # [n, L] int64
            with autocast:
                feats = model.encode_text(tokens)  # [n, D] unnormalised
            chunks.append(F.normalize(feats.float(), dim=-1).cpu().numpy())
            bar.update(len(part))
    dim = int(getattr(model, "embed_dim", 0))
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)


def encode_split(model: Any, info: SplitInfo, *, variants: Sequence[bool] = (True,), batch_size: int = 32,
                 text_batch_size: int = 256, device: Any = "cpu", workers: int = 0, tokenizer: Any = None,
                 progress: bool = True) -> SplitFeatures:
    """Encode a split's videos (per variant) and all its captions, in video order.

    Returns:
        The split's :class:`SplitFeatures`.
    """
    videos, ids, per_video = encode_videos(model, info, variants=variants, batch_size=batch_size, device=device,
                                           workers=workers, progress=progress)
    flat = [c for caps in per_video for c in caps]
    text_to_video = np.repeat(np.arange(len(ids), dtype=np.int64), [len(c) for c in per_video])
    empty = [ids[i] for i, c in enumerate(per_video) if not c]
    if empty:
        raise InputError(f"split {info.split}: video {empty[0]} has no caption ({len(empty)} such): rerun fda "
                         f"preprocess (it skips caption-less videos)")
    text = encode_texts(model, flat, tokenizer=tokenizer, batch_size=text_batch_size, device=device,
                        progress=progress)
    return SplitFeatures(videos, text, text_to_video, ids, flat)
