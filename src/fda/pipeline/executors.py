"""Where ``fda preprocess`` runs its work: a local process pool (videos as the unit of work) or Ray (shard tasks).

Both take the work as a :class:`Work` (what one video, one shard and a lost video are), so this module knows nothing
of frames or masks. The pool replaces a worker whose video outlives ``--video-timeout`` or whose decoder crashes;
SIGINT/SIGTERM (:class:`Stop`) stop taking videos.
"""

import collections
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2

from fda.errors import ConfigError

log = logging.getLogger("fda.pipeline.preprocess")  # the run's messages, under the command's logger


@dataclass(frozen=True)
class Work:
    """What the executors run (top-level functions: a pool pickles them by name).

    Attributes:
        process: ``(item, cfg, masks, job=None, hooks=None, rules=...) -> (packed samples or None, record)``: one
            video (``rules``: the sets' rule table, ``sets.rules``).
        assembly: ``(task, sets) -> shard``: a shard's in-order writer (``add``, ``complete``, ``finish``,
            ``abort``).
        shard_task: ``(task, sets) -> stats per shard set``: one whole shard in one process (Ray).
        lost: ``(item, cfg, why) -> record``: the record of a video whose worker ``timed out`` or ``died``.
        hooks: ``() -> hooks``: the test hooks read here and handed to the workers with each video.
    """

    process: Callable[..., Tuple[Optional[List[bytes]], Dict[str, Any]]]
    assembly: Callable[[Any, Any], Any]
    shard_task: Callable[[Any, Any], List[Dict[str, Any]]]
    lost: Callable[[Any, Any, str], Dict[str, Any]]
    hooks: Callable[[], Tuple[Optional[str], ...]]


def report_start(job: Optional[int]) -> None:
    """In a pool worker: tell the parent that job ``job`` started here, and when (it replaces an overdue worker)."""
    if job is not None and _STARTED is not None:
        _STARTED.put((job, os.getpid(), time.monotonic()))


_STARTED: Any = None  # in a pool worker: the queue that tells the parent which video it started, and when


def init_worker(started: Any = None) -> None:
    """Per worker process: one OpenCV thread; Ctrl-C goes to the parent only, which ends the workers itself."""
    global _STARTED
    _STARTED = started
    cv2.setNumThreads(1)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker must not inherit the parent's handler
    if started is not None:
        started.put((READY, os.getpid(), time.monotonic()))


READY = -1
"""The job number with which a pool worker reports that it is set up (its signal handlers are its own)."""


class Stop:
    """Set by SIGINT/SIGTERM: the run stops taking videos; a second signal interrupts the current video too."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self.pid = os.getpid()

    def __bool__(self) -> bool:
        return self.signum is not None

    def handle(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:
            # A worker forked while the handler was in place (the pool replacing a timed-out one) and signalled
            # before its initializer restored the default: the pool is ending it, so end as the default would.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s: stopping; finished shards are kept, the one in progress is dropped (send it again to "
                    "stop even the video being decoded)",
                    signal.Signals(signum).name)

    @contextlib.contextmanager
    def installed(self) -> Iterator["Stop"]:
        """Catch SIGINT and SIGTERM while the block runs (main thread only; elsewhere the defaults stay)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {sig: signal.signal(sig, self.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)


def run_local(todo: Sequence[Any], sets: Any, progress: Any, stop: Stop, finished: List[List[Dict[str, Any]]], *,
              work: Work) -> None:
    """Process every video of ``todo`` (shard tasks) on ``sets.cfg.num_workers`` processes (videos, not shards, are
    the unit of work) and commit each shard as soon as its videos are in; finished shards' stats go to ``finished``
    as they complete."""
    jobs = [(t, position, item) for t, task in enumerate(todo) for position, item in enumerate(task.items)]
    shards: Dict[int, Any] = {}

    def deliver(t: int, position: int, samples: Optional[List[bytes]], record: Dict[str, Any]) -> None:
        shard = shards.setdefault(t, work.assembly(todo[t], sets))
        shard.add(position, samples, record)
        progress.advance([record["status"] == "ok"])
        if shard.complete:
            finished.append(shards.pop(t).finish())

    workers = min(sets.cfg.num_workers, len(jobs))
    try:
        if workers <= 1:
            init_worker_inline()
            for t, position, item in jobs:
                if stop:
                    return
                deliver(t, position, *work.process(item, sets.cfg, sets.masks, rules=sets.rules))
            return
        import multiprocessing as mp

        # Results wait in order for their shard; bound what is in flight or waiting (a slow video at the head of a
        # shard must not let thousands of finished ones pile up in memory).
        window = 16 * workers
        context = pool_context(mp)
        started = context.SimpleQueue()
        running: Dict[int, Tuple[int, float]] = {}  # job number -> (worker pid, start time)
        limit = sets.cfg.video_timeout
        set_up = replaced = 0  # workers that reported READY; workers killed or dead (the pool replaces each)
        hooks = work.hooks()

        def drain() -> None:
            nonlocal set_up
            while not started.empty():
                number, pid, when = started.get()
                if number == READY:
                    set_up += 1
                else:
                    running[number] = (pid, when)

        with opencv_pool_stopped(), context.Pool(workers, initializer=init_worker, initargs=(started,)) as pool:
            pending: Deque[Tuple[int, int, Any, int]] = collections.deque()
            queued = iter(enumerate(jobs))
            more = True
            while True:
                waiting = sum(len(s.waiting) for s in shards.values())
                while more and not stop and len(pending) + waiting < window:
                    job = next(queued, None)
                    if job is None:
                        more = False
                        break
                    number, (t, position, item) = job
                    pending.append((t, position, pool.apply_async(work.process,
                                                                  (item, sets.cfg, sets.masks, number, hooks),
                                                                  {"rules": sets.rules}),
                                    number))
                if stop or not pending:
                    break
                drain()
                ready = [entry for entry in pending if entry[2].ready()]
                lost = dict((entry[3], why) for entry, why in lost_jobs(pending, running, limit, ready))
                replaced += len(lost)
                ready += [entry for entry in pending if entry[3] in lost]
                if not ready:
                    pending[0][2].wait(0.1)
                    continue
                for entry in ready:
                    pending.remove(entry)
                    running.pop(entry[3], None)
                    if entry[3] not in lost:
                        deliver(entry[0], entry[1], *entry[2].get())
                    else:  # its worker was killed, or died: the pool starts another in its place
                        item = todo[entry[0]].items[entry[1]]
                        deliver(entry[0], entry[1], None, work.lost(item, sets.cfg, lost[entry[3]]))
            # Leaving the block terminates the workers at once. A worker the pool is still starting in place of a
            # killed one would miss that SIGTERM (Python drops signals that arrive while a child process is being
            # set up), and the pool would wait for it forever: let every replacement finish setting up first.
            deadline = time.monotonic() + 30
            while not stop and set_up < workers + replaced and time.monotonic() < deadline:
                drain()
                time.sleep(0.05)
    finally:
        for shard in shards.values():
            shard.abort()


def lost_jobs(pending: Sequence[Tuple[int, int, Any, int]], running: Dict[int, Tuple[int, float]], limit: float,
              ready: Sequence[Tuple[int, int, Any, int]]) -> List[Tuple[Tuple[int, int, Any, int], str]]:
    """Pending jobs that will never deliver a result, with the status to record: ``died`` (their worker is gone: a
    crash in the decoder) or ``timed out`` (their worker has been on them longer than ``limit`` seconds, 0: no limit;
    it is killed). The pool starts a new worker in place of each."""
    now = time.monotonic()
    lost = []
    for entry in pending:
        if entry in ready or entry[3] not in running:
            continue
        pid, when = running[entry[3]]
        overdue = bool(limit) and now - when > limit
        if (overdue or not alive(pid)) and not entry[2].wait(0.2):  # a result on its way: not lost
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass  # it ended meanwhile; the pool replaces it all the same
                lost.append((entry, "timed out"))
            else:
                lost.append((entry, "died"))
    return lost


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # gone (the pool reaps a dead worker within a tenth of a second)
    except OSError:
        return True
    return True


@contextlib.contextmanager
def opencv_pool_stopped() -> Iterator[None]:
    """Stop OpenCV's thread pool while worker processes are forked, then restore its size.

    A child forked while the parent's pool has threads inherits a pool without them, and its own
    ``cv2.setNumThreads`` then waits for them forever (seen after the parent warped frames with OpenCV).
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def init_worker_inline() -> None:
    cv2.setNumThreads(1)


def pool_context(mp: Any) -> Any:
    """``fork`` (fast) unless torch is loaded here: a forked child of a process whose torch/OpenMP thread pool has
    run can deadlock (seen when fda demo or a sweep preprocess after importing the trainer), so then the workers
    come from a fork server, which starts clean (and re-imports the caller's main module, about a second)."""
    methods = mp.get_all_start_methods()
    if "fork" in methods and "torch" not in sys.modules:
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def run_ray(todo: Sequence[Any], sets: Any, progress: Any, stop: Stop, finished: List[List[Dict[str, Any]]], *,
            work: Work) -> None:
    """Shard tasks on Ray (each task writes its own shard; an interrupted task leaves only a partial file)."""
    cfg = sets.cfg
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'fda[ray]' (or pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, num_cpus=None if cfg.ray_address else cfg.num_workers)
    try:
        remote = ray.remote(num_cpus=1)(_ray_task)
        refs = [remote.remote(work.shard_task, task, sets) for task in todo]
        while refs and not stop:
            done, refs = ray.wait(refs, num_returns=1, timeout=0.2)
            for ref in done:
                stats = ray.get(ref)
                progress.advance([v["status"] == "ok" for v in stats[0]["videos"]])
                finished.append(stats)
        for ref in refs:
            ray.cancel(ref, force=True)
    finally:
        if started_here:
            ray.shutdown()


def _ray_task(shard_task: Callable[[Any, Any], List[Dict[str, Any]]], task: Any, sets: Any) -> List[Dict[str, Any]]:
    init_worker_inline()
    return shard_task(task, sets)
