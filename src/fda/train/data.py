"""The trainer's data stream: endless tokenised batches for this rank from a split's training pipeline.

The pipeline itself (shard deal, shuffles, decoding) is :func:`fda.shards.loader.build_train_pipeline`; this module
wraps it in a torch ``DataLoader``, one per epoch, positioned at ``(epoch, batch)`` so a resumed run continues where
it stopped.
"""

import functools
import itertools
import signal
from typing import Any, Callable, Dict, FrozenSet, Iterator, List

import torch

from fda.config import TrainConfig
from fda.errors import FdaError
from fda.shards.loader import build_train_pipeline
from fda.shards.manifest import SplitInfo
from fda.train.dist import Dist


def tokenize_batch(tokenizer: Callable[[List[str]], torch.Tensor], batch: Dict[str, Any]) -> Dict[str, Any]:
    """``batch_fn`` for the loader: tokenise the captions inside the worker."""
    return {"tokens": tokenizer(batch["captions"])}


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding is PIL work; torch threads in workers only oversubscribe the cores
    # Ctrl-C reaches the whole process group: the main process stops at a step boundary and shuts its workers down;
    # a worker dying on the signal first would turn that into a DataLoader error. SIGTERM keeps its default: it is
    # how a worker is ended (multiprocessing's terminate at exit); ignoring it could leave the process unable to exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _loader_error(err: Exception) -> Exception:
    """A DataLoader re-raises a worker's FdaError with the worker traceback as message: keep the original line."""
    if isinstance(err, FdaError):
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        last = lines[-1] if lines else str(err)
        if ": " in last and last.split(": ", 1)[0].endswith(type(err).__name__):
            last = last.split(": ", 1)[1]
        clean = type(err)(last)
        return clean
    return err


def data_stream(info: SplitInfo, cfg: TrainConfig, dist: Dist, tokenizer: Any, *, start_epoch: int, start_batch: int,
                batches_epoch: int, pin_memory: bool = False,
                exclude: FrozenSet[str] = frozenset()) -> Iterator[Dict[str, Any]]:
    """Endless batches for this rank: ``batches_epoch`` per epoch, from ``(start_epoch, start_batch)`` on.

    Each epoch gets its own pipeline and DataLoader (the epoch seeds the shard deal and every shuffle), so a
    position is just ``(epoch, batch)``. ``exclude``: sample keys held out for validation.
    """
    from torch.utils.data import DataLoader

    batch_fn = functools.partial(tokenize_batch, tokenizer)
    for epoch in itertools.count(start_epoch):
        skip = start_batch if epoch == start_epoch else 0
        pipeline = build_train_pipeline(info, batch_size=cfg.batch_size, captions=cfg.captions, seed=cfg.seed,
                                        epoch=epoch, rank=dist.rank, world_size=dist.world_size, workers=cfg.workers,
                                        shuffle_buffer=cfg.shuffle_buffer, skip=skip, batch_fn=batch_fn,
                                        exclude=exclude)
        loader = DataLoader(pipeline, batch_size=None, num_workers=cfg.workers, pin_memory=pin_memory,
                            worker_init_fn=_worker_init if cfg.workers else None)
        iterator = iter(loader)
        try:
            for _ in range(batches_epoch - skip):
                try:
                    batch = next(iterator)
                except FdaError as err:
                    raise _loader_error(err) from None
                yield batch
        finally:
            # Stop this epoch's workers now: after an error the traceback still references the iterator, and its
            # workers would otherwise wait on their queues until the interpreter exits.
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            del iterator
