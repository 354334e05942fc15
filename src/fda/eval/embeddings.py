"""Embedding export (``fda embed``) and search (``fda search``).

An embedding folder::

    EMB_DIR/
      embeddings.json           model identity (to encode text queries the same way), shards digest, chunk list
      videos-000000.npy         float16 [n, D], unit-length rows
      videos-000000.json        {"ids": [video ids], "splits": [...]}
      captions-000000.npy       float16 [n, D]
      captions-000000.json      {"ids": ["<video id>#<j>"], "video_ids": [...], "texts": [...]}
      videos.hnsw.faiss         optional faiss HNSW index of the videos (--index hnsw)

Chunks are written as they fill (``--chunk-size`` rows), so a collection far larger than memory works; search
memory-maps one chunk at a time. Search is exact and flat by default: one matrix-vector product per chunk and a
running top-k. An HNSW index (faiss, the optional extra ``fda[faiss]``) only pays off above about a million videos,
where one flat scan reads gigabytes per query; it is approximate, and ``--exact`` bypasses it.
"""

import logging
import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from fda import __version__
from fda.config import SEARCH_TARGETS, EmbedConfig, SearchConfig
from fda.errors import EnvError, InputError
from fda.files import make_out_dir
from fda.options import flat_fields
from fda.shards.schema import read_json, write_json_atomic

logger = logging.getLogger(__name__)

EMB_MANIFEST = "embeddings.json"
FAISS_FILE = "videos.hnsw.faiss"
HNSW_M = 32


# --------------------------------------------------------------------------------------------------------------
# Writing


class ChunkWriter:
    """Append rows of one kind (``videos`` or ``captions``) and write them in float16 chunks of ``chunk_size``."""

    def __init__(self, out_dir: str, kind: str, chunk_size: int) -> None:
        self.out_dir, self.kind, self.chunk_size = out_dir, kind, chunk_size
        self.chunks: List[Dict[str, Any]] = []
        self._vectors: List[np.ndarray] = []
        self._meta: Dict[str, List[Any]] = {}
        self._rows = 0
        self.total = 0

    def add(self, vectors: np.ndarray, **meta: Sequence[Any]) -> None:
        """Append ``vectors [n, D]`` with per-row metadata lists (``ids=...``, ...)."""
        start = 0
        while start < len(vectors):
            take = min(self.chunk_size - self._rows, len(vectors) - start)
            self._vectors.append(vectors[start:start + take])
            for key, values in meta.items():
                self._meta.setdefault(key, []).extend(values[start:start + take])
            self._rows += take
            start += take
            if self._rows == self.chunk_size:
                self.flush()

    def flush(self) -> None:
        """Write the pending rows as one chunk."""
        if not self._rows:
            return
        name = f"{self.kind}-{len(self.chunks):06d}"
        vectors = np.concatenate(self._vectors).astype(np.float16)
        np.save(os.path.join(self.out_dir, name + ".npy"), vectors)
        write_json_atomic(os.path.join(self.out_dir, name + ".json"), self._meta)
        self.chunks.append({"name": name, "rows": int(len(vectors))})
        self.total += len(vectors)
        self._vectors, self._meta, self._rows = [], {}, 0


@dataclass
class EmbedResult:
    """What ``fda embed`` wrote."""

    out: str
    videos: int
    captions: int
    index: Optional[str]

    def summary(self) -> str:
        """One line for the terminal."""
        extra = f", index {self.index}" if self.index else ""
        return f"wrote {self.videos} video and {self.captions} caption embeddings to {self.out}{extra}"


def _prepare_out(out: str, overwrite: bool) -> None:
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise InputError(f"--out {out!r} is not empty: pass --overwrite to replace it, or another folder")
        if not os.path.isfile(os.path.join(out, EMB_MANIFEST)) and any(
                not f.startswith(SEARCH_TARGETS) for f in os.listdir(out)):
            raise InputError(f"--out {out!r} holds files that fda embed did not write: refusing to delete them")
        shutil.rmtree(out)
    make_out_dir(out)


def run_embed(cfg: EmbedConfig) -> EmbedResult:
    """Run ``fda embed``: encode every video (and caption) of the selected splits into chunked float16 files.

    Raises:
        InputError: no shards, no such split, corrupt shards, an occupied ``--out``.
        ConfigError: bad model options.
        EnvError: ``--index hnsw`` without faiss installed.
    """
    from fda.eval.encoding import encode_texts, iter_video_features
    from fda.eval.source import describe_source, load_model, resolve_shards
    from fda.model.source import resolve
    from fda.model.device import resolve_device
    from fda.shards.location import recorded
    from fda.shards.manifest import filled_splits, load_manifest, load_split, manifest_sha256

    if cfg.index == "hnsw":
        _import_faiss()
    make_out_dir(cfg.out)  # a file or an unwritable place fails here, before the model is loaded
    source = resolve(cfg.source)
    shards = resolve_shards(cfg.shards, source)
    manifest = load_manifest(shards)
    have = filled_splits(manifest, shards)
    splits = list(cfg.splits or [s for s in ("train", "val", "test") if s in have])
    infos = [load_split(shards, s, manifest) for s in splits]
    device = resolve_device(cfg.device)
    model, identity = load_model(source, device, cfg.seed)
    logger.info("embedding with %s: %s splits %s", describe_source(source, identity), shards, ", ".join(splits))
    from fda.model import get_tokenizer

    tokenizer = get_tokenizer(model.context_length)
    _prepare_out(cfg.out, cfg.overwrite)
    videos = ChunkWriter(cfg.out, "videos", cfg.chunk_size)
    captions = ChunkWriter(cfg.out, "captions", cfg.chunk_size)
    pending: Dict[str, List[str]] = {"ids": [], "video_ids": [], "texts": []}

    def encode_pending(force: bool) -> None:
        while pending["texts"] and (force or len(pending["texts"]) >= cfg.text_batch_size):
            n = min(cfg.text_batch_size, len(pending["texts"]))
            vectors = encode_texts(model, pending["texts"][:n], tokenizer=tokenizer, batch_size=n, device=device,
                                   progress=False)
            captions.add(vectors, **{k: v[:n] for k, v in pending.items()})
            for k in pending:
                del pending[k][:n]

    model.eval()
    for info in infos:
        for feats, ids, caps in iter_video_features(model, info, variants=(bool(model.use_alpha),),
                                                    batch_size=cfg.batch_size, device=device, workers=cfg.workers):
            videos.add(feats[bool(model.use_alpha)], ids=ids, splits=[info.split] * len(ids))
            if cfg.captions:
                for vid, texts in zip(ids, caps):
                    pending["ids"] += [f"{vid}#{j}" for j in range(len(texts))]
                    pending["video_ids"] += [vid] * len(texts)
                    pending["texts"] += list(texts)
                encode_pending(False)
    encode_pending(True)
    videos.flush()
    captions.flush()
    index_file = None
    if cfg.index == "hnsw":
        index_file = build_hnsw_index(cfg.out, videos.chunks, model.embed_dim)
    manifest_sha = manifest_sha256(shards)
    doc = {"fda_version": __version__, "dim": int(model.embed_dim), "dtype": "float16", "normalized": True,
           "model": {"name": model.name, "use_alpha": bool(model.use_alpha), **identity}, "source": source,
           "logit_scale": float(model.logit_scale.detach().float().exp().cpu()),
           "shards": {"dir": recorded(shards), "manifest_sha256": manifest_sha, "splits": splits},
           "videos": {"count": videos.total, "chunks": videos.chunks},
           "captions": {"count": captions.total, "chunks": captions.chunks},
           "index": {"kind": "hnsw", "file": index_file, "M": HNSW_M} if index_file else None,
           "options": flat_fields(cfg)}
    write_json_atomic(os.path.join(cfg.out, EMB_MANIFEST), doc)  # last: the folder is complete
    return EmbedResult(cfg.out, videos.total, captions.total, index_file)


# --------------------------------------------------------------------------------------------------------------
# faiss (optional)


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise EnvError("faiss is not installed: pip install 'fda[faiss]' (faiss-cpu), or search with the default "
                       "exact flat scan") from None
    return faiss


def build_hnsw_index(emb_dir: str, chunks: Sequence[Dict[str, Any]], dim: int) -> str:
    """Build a faiss HNSW inner-product index over the video chunks, added chunk by chunk; returns its file name."""
    faiss = _import_faiss()
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    for chunk in chunks:
        vectors = np.load(os.path.join(emb_dir, chunk["name"] + ".npy"), mmap_mode="r")
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, os.path.join(emb_dir, FAISS_FILE))
    return FAISS_FILE


# --------------------------------------------------------------------------------------------------------------
# Reading and searching


@dataclass(frozen=True)
class Hit:
    """One search result: ``id``, cosine ``score``, and for captions the ``text``."""

    id: str
    score: float
    text: Optional[str] = None

    @property
    def cosine(self) -> float:
        """The score as shown: clipped to [-1, 1] and rounded to 3 decimals (rows are stored in float16, about 3
        significant digits, so a unit row can score 1.0001 against itself)."""
        return round(min(1.0, max(-1.0, self.score)), 3)


class EmbeddingStore:
    """Read access to an ``fda embed`` folder, one memory-mapped chunk at a time."""

    def __init__(self, emb_dir: str) -> None:
        """Open ``emb_dir``.

        Raises:
            InputError: the folder has no ``embeddings.json`` (missing, or ``fda embed`` did not finish).
        """
        path = os.path.join(emb_dir, EMB_MANIFEST)
        if not os.path.isfile(path):
            raise InputError(f"{emb_dir!r} has no {EMB_MANIFEST}: run fda embed --out {emb_dir} first")
        self.dir = emb_dir
        self.doc = read_json(path)

    def count(self, kind: str) -> int:
        """Rows of ``kind`` (``videos`` or ``captions``)."""
        return int(self.doc[kind]["count"])

    def chunks(self, kind: str) -> Iterator[Tuple[np.ndarray, Dict[str, List[Any]]]]:
        """``(float16 [n, D] memory map, metadata lists)`` per chunk, in order."""
        for chunk in self.doc[kind]["chunks"]:
            base = os.path.join(self.dir, chunk["name"])
            yield np.load(base + ".npy", mmap_mode="r"), read_json(base + ".json")

    def video_vector(self, video_id: str) -> np.ndarray:
        """The float32 ``[D]`` embedding of ``video_id``.

        Raises:
            InputError: no such video.
        """
        for vectors, meta in self.chunks("videos"):
            if video_id in meta["ids"]:
                return np.asarray(vectors[meta["ids"].index(video_id)], dtype=np.float32)
        raise InputError(f"--video {video_id!r} is not in {self.dir!r} ({self.count('videos')} videos embedded)")


def flat_search(store: EmbeddingStore, kind: str, query: np.ndarray, k: int,
                exclude: Sequence[str] = ()) -> List[Hit]:
    """Exact top-``k`` by inner product over every chunk of ``kind`` (ties: the earlier row first).

    Args:
        store: the embeddings.
        kind: ``videos`` or ``captions``.
        query: float ``[D]``, unit length for cosine scores.
        k: results wanted.
        exclude: ids never returned (the query video itself).
    """
    q = np.asarray(query, dtype=np.float32)
    best_scores = np.zeros(0, np.float32)
    best_rows: List[Tuple[str, Optional[str]]] = []
    best_order = np.zeros(0, np.int64)
    offset = 0
    skip = set(exclude)
    for vectors, meta in store.chunks(kind):
        scores = np.asarray(vectors, dtype=np.float32) @ q  # [n]
        ids = meta["ids"]
        if skip:
            scores[[i for i, v in enumerate(ids) if v in skip]] = -np.inf
        take = np.argsort(-scores, kind="stable")[:k]  # top-k of this chunk, earlier rows first on ties
        texts = meta.get("texts")
        scores_all = np.concatenate([best_scores, scores[take]])
        order_all = np.concatenate([best_order, offset + take])
        rows_all = best_rows + [(ids[i], texts[i] if texts else None) for i in take]
        keep = np.lexsort((order_all, -scores_all))[:k]
        best_scores, best_order = scores_all[keep], order_all[keep]
        best_rows = [rows_all[i] for i in keep]
        offset += len(ids)
    return [Hit(i, float(s), t) for (i, t), s in zip(best_rows, best_scores) if np.isfinite(s)]


def index_search(store: EmbeddingStore, query: np.ndarray, k: int, exclude: Sequence[str] = ()) -> List[Hit]:
    """Approximate top-``k`` videos through the faiss HNSW index (scores are exact inner products of the rows)."""
    faiss = _import_faiss()
    index = faiss.read_index(os.path.join(store.dir, store.doc["index"]["file"]))
    want = k + len(exclude)
    scores, rows = index.search(np.asarray(query, dtype=np.float32)[None, :], want)
    ids: List[str] = []
    for _, meta in store.chunks("videos"):
        ids += meta["ids"]
    hits = [Hit(ids[r], float(s)) for s, r in zip(scores[0], rows[0]) if r >= 0 and ids[r] not in set(exclude)]
    return hits[:k]


def _text_query(store: EmbeddingStore, text: str, device_name: str) -> np.ndarray:
    """Encode ``text`` with the model the embeddings were made with (re-built from the record).

    A checkpoint's text tower alone is used when it is a plain CLIP one (:mod:`fda.model.text`: no open_clip import,
    seconds faster); anything else builds the whole model.
    """
    from fda.eval.source import sha256_file
    from fda.model.device import resolve_device

    source = store.doc["source"]
    recorded = store.doc["model"]
    device = resolve_device(device_name)
    if source.get("checkpoint"):
        if not os.path.isfile(source["checkpoint"]):
            raise InputError(f"the checkpoint these embeddings were made with is gone ({source['checkpoint']}): "
                             f"text queries need it; search with --video ID, or re-run fda embed")
        if sha256_file(source["checkpoint"]) != recorded.get("checkpoint_sha256"):
            raise InputError(f"{source['checkpoint']} changed since fda embed: text queries would not match the "
                             f"stored embeddings; re-run fda embed")
        from fda.model.text import load_text_encoder

        encoder = load_text_encoder(source["checkpoint"], device)
        if encoder is not None:
            return encoder.encode([text])[0]
    from fda.eval.encoding import encode_texts
    from fda.eval.source import load_model

    model, _ = load_model(source, device, int(recorded.get("seed") or 0))
    return encode_texts(model, [text], device=device, progress=False)[0]


def run_search(cfg: SearchConfig) -> List[Hit]:
    """Run ``fda search``: the top ``k`` videos (or captions) for a text query or a video.

    Raises:
        InputError: no embeddings, an unknown video id, no captions embedded.
        EnvError: the index needs faiss and it is not installed.
    """
    store = EmbeddingStore(cfg.emb_dir)
    if store.count(cfg.target) == 0:
        raise InputError(f"{cfg.emb_dir!r} holds no {cfg.target} embeddings (fda embed --no-captions?)")
    if cfg.video is not None:
        query = store.video_vector(cfg.video)
        exclude: Sequence[str] = (cfg.video,) if cfg.target == "videos" else ()
    else:
        query = _text_query(store, str(cfg.query), cfg.device)
        exclude = ()
    if cfg.target == "videos" and store.doc.get("index") and not cfg.exact:
        return index_search(store, query, cfg.k, exclude)
    if cfg.target == "videos" and store.count("videos") > 1_000_000 and not store.doc.get("index"):
        logger.info("flat scan of %d videos; fda embed --index hnsw makes large collections faster",
                    store.count("videos"))
    return flat_search(store, cfg.target, query, cfg.k, exclude)
