"""Runs ``fda preprocess``: plans shard tasks from a dataset, has them done, and writes the manifest.

Videos -> uniformly sampled frames + frame-difference masks -> WebDataset shards. Work is cut into shard tasks (one
split, up to ``samples_per_shard`` videos, in the dataset's order) and run by :mod:`fda.pipeline.executors` (worker
processes take videos, not shards, so one big shard uses every core; ``--engine ray`` runs whole shard tasks on Ray).
The parent writes each shard's videos in order into ``<split>-NNNNNN.tar.partial``, renames it into place and then
records the task's per-video status in ``<split>-NNNNNN.stats.json``, with the fingerprint of its inputs and the
tar's size and sha256 (:mod:`fda.pipeline.resume` decides whether a finished shard still stands, and says why it
redoes one). Since shards are byte-deterministic, a rerun after any interruption (kill -9 included) ends with exactly
the files an uninterrupted run gives. SIGINT/SIGTERM stop the run after the videos in progress, remove the partial
shard and raise :class:`fda.errors.Interrupted`.

Per video, :mod:`fda.pipeline.clips` decodes and samples it and encodes one sample per mask setting; here the
samples are assembled into shards in order (:class:`ShardAssembly`). A run writes one shard set per mask setting from
one decode (:func:`preprocess_shard_sets`; a tau sweep passes several, ``fda preprocess`` one),
each exactly what a run with that setting alone writes.
"""

import dataclasses
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from fda import __version__
from fda.config import MaskConfig, PreprocessConfig
from fda.errors import ConfigError, InputError, Interrupted
from fda.options import fields_with, flat_fields
from fda.pipeline import executors, resume
from fda.pipeline.resume import ShardTask
from fda.pipeline.clips import hooks_from_env, lost_record, process_packed
from fda.pipeline.datasets import Dataset, Layout, VideoItem, load_dataset
from fda.pipeline.mask_rules import MASK_RULES, MaskRule, Rules, mask_record, rule_of
from fda.pipeline.video import check_decoder, find_ffmpeg, ffmpeg_version
from fda.shards.schema import (MANIFEST, SCHEMA_VERSION, file_digest, sample_key, stats_name,
                               write_json_atomic)
from fda.shards.location import recorded
from fda.shards.store import local_dir, publish
from fda.shards.writer import ShardWriter

log = logging.getLogger(__name__)

CLIP_CONTEXT = 77  # the text context of every CLIP model (fda's tiny test models have less: fda eval counts exactly)
TRUNCATION_NOTE = {
    "context_length": CLIP_CONTEXT,
    "counted_by": "words",
    "rule": "a split's captions_truncated counts its captions whose whitespace-separated words + 2 (start and end "
            "tokens) exceed context_length: a lower bound on what the tokenizer cuts, since CLIP's BPE gives at "
            "least one token per word; fda eval reports the exact count for the model's own tokenizer and context",
}


@dataclass
class PreprocessResult:
    """What a run produced (also written to ``manifest.json``)."""

    out: str
    manifest: Dict[str, Any]
    seconds: float
    processed_now: int = 0
    reused_shards: int = 0
    redone: Dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def redone_shards(self) -> int:
        """Finished shards of an earlier run that this run wrote again (changed inputs, a damaged tar, a retry)."""
        return len(self.redone)

    def summary(self) -> str:
        """One line for the terminal."""
        splits = self.manifest["splits"]
        parts = ", ".join(f"{s['videos']} {name}" for name, s in splits.items())
        shards = sum(len(s["shards"]) for s in splits.values())
        failed = len(self.manifest["failures"])
        rate = f", {self.processed_now / self.seconds:.1f} videos/s" if self.processed_now and self.seconds else ""
        reused = f", {self.reused_shards} shards already done" if self.reused_shards else ""
        redone = ""
        if self.redone:
            first, why = next(iter(self.redone.items()))
            redone = f", {self.redone_shards} redone (first: {first}: {why})"
        unlisted = len(self.manifest.get("unlisted") or ())
        unlisted = (f", {unlisted} videos under the root not in {os.path.basename(self.manifest['captions_file'])} "
                    f"(manifest 'unlisted')" if unlisted else "")
        bare = ", without captions (for fda embed/search)" if self.manifest.get("uncaptioned") else ""
        return (f"wrote {parts} videos in {shards} shards to {self.out}{bare} ({failed} failed, "
                f"listed in {os.path.join(self.out, MANIFEST)}){unlisted}{reused}{redone}{rate}")


@dataclass(frozen=True)
class ShardSets:
    """The shard sets one run writes from one decode of each video.

    Attributes:
        cfg: the run's config: what is decoded, and how (every set shares it).
        masks: one mask setting per set.
        outputs: per set, ``cfg`` with that set's ``out`` and mask setting: the config ``fda preprocess`` would run
            with to write that set alone (its ``config.json``, stats fingerprints and manifest come from it).
        rules: the entries of the rule table that ``cfg`` and ``masks`` name (a plain dict: it goes to the workers
            with every video, so it pickles, each rule's function by reference).
    """

    cfg: PreprocessConfig
    masks: Tuple[MaskConfig, ...]
    outputs: Tuple[PreprocessConfig, ...]
    rules: Dict[str, MaskRule]

    @classmethod
    def of(cls, cfg: PreprocessConfig, sets: Sequence[Tuple[str, MaskConfig]], rules: Rules = MASK_RULES
           ) -> "ShardSets":
        """Check and resolve ``(out, mask setting)`` pairs (folders made absolute: workers may run elsewhere) and the
        rules they name, from ``rules`` (the rule table).

        Raises:
            ConfigError: no set, two sets in one folder, a mask setting with another ``diff_mode`` than ``cfg``, or a
                ``--mask-rule`` that ``rules`` lacks.
        """
        if not sets:
            raise ConfigError("no shard set to write: pass at least one (out, mask setting)")
        used = {m.mask_rule: rule_of(m, rules) for m in (cfg.mask, *(mask for _, mask in sets))}
        for _, mask in sets:
            if mask.diff_mode != cfg.mask.diff_mode:
                raise ConfigError(f"--diff-mode chooses the frames that are decoded, so shard sets from one decode "
                                  f"share it: {mask.diff_mode!r} differs from {cfg.mask.diff_mode!r}")
            if used[mask.mask_rule].vectors and not used[cfg.mask.mask_rule].vectors:
                raise ConfigError(f"--mask-rule {mask.mask_rule} reads motion vectors from the decode: run the "
                                  f"decode with it (--mask-rule {mask.mask_rule}), not {cfg.mask.mask_rule!r}")
        outs = [recorded(out) for out, _ in sets]
        if len(set(outs)) != len(outs):
            raise ConfigError("every shard set needs its own --out folder")
        cfg = dataclasses.replace(cfg, out=outs[0])
        outputs = tuple(dataclasses.replace(cfg, out=out, mask=mask) for out, (_, mask) in zip(outs, sets))
        return cls(cfg, tuple(mask for _, mask in sets), outputs, used)


class Progress:
    """The run's progress channel: a bar over videos on stderr (off without a TTY) with the failures so far."""

    def __init__(self, total: int) -> None:
        self.bar = tqdm(total=total, unit="video", disable=None, file=sys.stderr, desc="preprocess",
                        dynamic_ncols=True)
        self.failures = 0

    def advance(self, oks: Sequence[bool]) -> None:
        """Count finished videos (``True``: written, ``False``: failed)."""
        self.failures += sum(1 for ok in oks if not ok)
        self.bar.set_postfix(failed=self.failures, refresh=False)
        self.bar.update(len(oks))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------------------------------------------
# Shards, assembled in order from finished videos


class ShardAssembly:
    """One shard task's output, written in the task's video order whatever order the videos finish in.

    A tar goes to its final name only when complete; the stats file is written after the tar, so "stats exists"
    means "shard finished". Nothing is on disk under a final name before :meth:`finish`.
    """

    def __init__(self, task: ShardTask, sets: ShardSets) -> None:
        self.task, self.sets = task, sets
        self.writers: Optional[List[ShardWriter]] = None
        self.waiting: Dict[int, Tuple[Optional[List[bytes]], Dict[str, Any]]] = {}
        self.records: List[Dict[str, Any]] = []
        self.samples = self.captions = 0

    @property
    def complete(self) -> bool:
        """Every video of the task has been written (or recorded as failed)."""
        return len(self.records) == len(self.task.items)

    def add(self, position: int, samples: Optional[List[bytes]], record: Dict[str, Any]) -> None:
        """Take video ``position``'s result (its sample per shard set, packed by :func:`pack_sample`, or None when
        it failed); write every result that is next in order."""
        self.waiting[position] = (samples, record)
        while len(self.records) in self.waiting:
            samples, record = self.waiting.pop(len(self.records))
            if samples is not None:
                if self.writers is None:
                    self.writers = [ShardWriter(os.path.join(local_dir(c.out), self.task.name))
                                    for c in self.sets.outputs]
                for writer, blocks in zip(self.writers, samples):
                    writer.write_packed(blocks)
                self.samples += 1
                self.captions += len(self.task.items[len(self.records)].captions)
            self.records.append(record)

    def abort(self) -> None:
        """Remove the partial tars (an interrupted shard leaves nothing behind)."""
        for writer in self.writers or []:
            writer.abort()

    def finish(self) -> List[Dict[str, Any]]:
        """Commit the tars, then write and return each shard set's stats."""
        out = []
        task = self.task
        for c, cfg in enumerate(self.sets.outputs):
            tar: Optional[Dict[str, Any]] = None
            if self.writers is not None:
                self.writers[c].commit()
                tar = file_digest(self.writers[c].path)
            stats = {"schema_version": SCHEMA_VERSION, "split": task.split, "index": task.index,
                     "name": task.name if self.samples else None, "samples": self.samples,
                     "captions": self.captions, "videos": [dict(r) for r in self.records], "tar": tar,
                     "inputs": task.inputs if task.inputs is None else resume.with_options(task.inputs, cfg)}
            write_json_atomic(os.path.join(local_dir(cfg.out), stats_name(task.split, task.index)), stats)
            # a remote --out: the tar, then its stats (stats there = shard finished there)
            publish(cfg.out, [task.name] if tar else [], keep=False)
            publish(cfg.out, [stats_name(task.split, task.index)])
            out.append(stats)
        return out


def run_shard_task(task: ShardTask, sets: ShardSets) -> List[Dict[str, Any]]:
    """Write one shard and its stats file into each shard set in this process; returns the stats per set."""
    shard = ShardAssembly(task, sets)
    try:
        for position, item in enumerate(task.items):
            shard.add(position, *process_packed(item, sets.cfg, sets.masks, rules=sets.rules))
    except BaseException:
        shard.abort()
        raise
    return shard.finish()


WORK = executors.Work(process=process_packed, assembly=ShardAssembly, shard_task=run_shard_task, lost=lost_record,
                      hooks=hooks_from_env)
"""What the executors run for ``fda preprocess``."""


# ----------------------------------------------------------------------------------------------------------------
# The run


def _plan(dataset: Dataset, cfg: PreprocessConfig) -> Tuple[List[ShardTask], Dict[str, int]]:
    tasks: List[ShardTask] = []
    listed: Dict[str, int] = {}
    for split, items in dataset.items.items():
        if cfg.limit is not None:
            items = items[:cfg.limit]
        listed[split] = len(items)
        for start in range(0, len(items), cfg.samples_per_shard):
            chunk = tuple(items[start:start + cfg.samples_per_shard])
            inputs = {"videos": [resume.video_inputs(item) for item in chunk]}
            tasks.append(ShardTask(split, start // cfg.samples_per_shard, chunk, inputs))
    return tasks, listed


def _ffmpeg_record(cfg: PreprocessConfig, decoder_version: str) -> Dict[str, Any]:
    try:
        binary: Optional[str] = ffmpeg_version(find_ffmpeg())
    except Exception:  # noqa: BLE001 - the binary is optional: decoding is in-process
        binary = None
    import av

    libraries = {name: ".".join(str(v) for v in version) for name, version in av.library_versions.items()}
    return {"decoder": cfg.decoder, "decoder_version": decoder_version, "binary": binary, "libraries": libraries}


def build_manifest(cfg: PreprocessConfig, dataset: Dataset, listed: Dict[str, int], all_stats: List[Dict[str, Any]],
                   ffmpeg: Dict[str, Any], extra_failures: List[Dict[str, Any]], rules: Rules = MASK_RULES
                   ) -> Dict[str, Any]:
    """Assemble ``manifest.json`` from every shard's stats (``rules``: the rule table, for the rule's text)."""
    splits: Dict[str, Any] = {}
    failures = list(extra_failures)
    for split in dataset.items:
        stats = sorted((s for s in all_stats if s["split"] == split), key=lambda s: s["index"])
        shards = [{"name": s["name"], "samples": s["samples"], "captions": s["captions"]} for s in stats if s["name"]]
        for s in stats:
            failures += [{"split": split, **{k: v[k] for k in ("video_id", "source", "error")}}
                         for v in s["videos"] if v["status"] != "ok"]
        ok = {v["video_id"] for s in stats for v in s["videos"] if v["status"] == "ok"}
        words = [len(c.split()) for item in dataset.items[split] if item.video_id in ok for c in item.captions]
        splits[split] = {"frames": cfg.frames_for(split), "size": cfg.size, "listed": listed.get(split, 0),
                         "videos": sum(s["samples"] for s in stats), "captions": sum(s["captions"] for s in stats),
                         "failed": sum(1 for f in failures if f["split"] == split), "shards": shards,
                         "captions_truncated": sum(1 for w in words if w + 2 > CLIP_CONTEXT),
                         "caption_words_max": max(words, default=0)}
    return {"schema_version": SCHEMA_VERSION, "fda_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "dataset_root": dataset.root, "layout": dataset.layout,
            "annotations": [{"path": path, **file_digest(path)} for path in dataset.annotations],
            "duplicate_captions_dropped": dataset.duplicate_captions,
            "captions_file": dataset.captions_file, "uncaptioned": not dataset.captioned,
            "unlisted": list(dataset.unlisted),
            "config": _config_record(cfg), "mask": mask_record(cfg.mask, rules), "ffmpeg": ffmpeg,
            "caption_truncation": TRUNCATION_NOTE,
            "splits": splits, "failures": failures}


def _config_record(cfg: PreprocessConfig) -> Dict[str, Any]:
    """The manifest's ``config``: every field, but the mask-rule fields only when the rule is not ``diff`` (issue 22),
    so a default run records what it always did and a run trained on it resumes on a rerun's shards."""
    record = flat_fields(cfg)  # the mask options in place, as before they were one nested config
    if cfg.mask.mask_rule == "diff":
        for name in fields_with(type(cfg), role="sample-unless-diff"):
            del record[name]
    return record


def _key_collisions(dataset: Dataset) -> Tuple[Dataset, List[Dict[str, Any]]]:
    """Drop a video whose shard key another video of its split already took (webdataset would merge the two
    samples), and, in a captioned set, a video without a caption, recording each as a failure. Repeated ids never
    get here: ``load_dataset`` keeps the first of each. (A set where no video has a caption is an uncaptioned
    library: its videos are written without captions, for ``fda embed`` and ``fda search``.)"""
    items: Dict[str, List[VideoItem]] = {}
    dropped: List[Dict[str, Any]] = []
    captioned = dataset.captioned
    where = os.path.basename(dataset.captions_file) if dataset.captions_file else "the annotations"
    for split, split_items in dataset.items.items():
        owner: Dict[str, str] = {}  # sample key -> the video id that took it
        kept = []
        for item in split_items:
            key = sample_key(item.video_id)
            error = None
            if key in owner:
                error = f"its shard key {key} is taken by video {owner[key]!r}"
            elif captioned and not item.captions and item.path is not None:
                error = (f"no caption: add one in {where} (a set where no video has a caption is indexed "
                         "uncaptioned, for fda embed/search)")
            if error is not None:
                dropped.append({"split": split, "video_id": item.video_id, "source": item.source, "error": error})
                continue
            owner[key] = item.video_id
            kept.append(item)
        items[split] = kept
    return dataclasses.replace(dataset, items=items), dropped


def run_preprocess(cfg: PreprocessConfig, *, layouts: Optional[Mapping[str, Layout]] = None,
                   rules: Rules = MASK_RULES) -> PreprocessResult:
    """Run ``fda preprocess``: plan shard tasks, do the missing ones, write the manifest.

    ``layouts`` is the dataset layout table (default: :data:`fda.pipeline.datasets.LAYOUT_TABLE`), ``rules`` the mask
    rule table (default: :data:`fda.pipeline.mask_rules.MASK_RULES`); tests pass copies with a toy entry. Its rule
    functions must be importable by name (module-level): worker processes get them pickled by reference.

    Raises:
        ConfigError: bad options (``--mask-rule`` is checked against ``rules`` before any work), or ``out`` holds
            shards made with another configuration.
        InputError: no dataset found, nothing succeeded, or more failures than ``max_failure_rate``.
        EnvError: the decoder cannot run here.
    """
    return preprocess_shard_sets(cfg, [(cfg.out, cfg.mask)], layouts=layouts, rules=rules)[0]


def preprocess_shard_sets(cfg: PreprocessConfig, sets: Sequence[Tuple[str, MaskConfig]], *,
                          layouts: Optional[Mapping[str, Layout]] = None, rules: Rules = MASK_RULES
                          ) -> List[PreprocessResult]:
    """Write one shard set per ``(out, mask setting)``, decoding every video once as ``cfg`` says.

    Each shard set is exactly what :func:`run_preprocess` writes for ``cfg`` with that ``out`` and mask setting (the
    same tars byte for byte), and resumes the same way: a shard task is redone only where some set lacks its stats.
    A tau sweep passes one set per tau: only the mask step runs once per set.

    Raises:
        ConfigError, InputError, EnvError: as :func:`run_preprocess`; also two sets in one folder, or mask
            settings that differ in ``diff_mode`` (it chooses the decoded frames).
    """
    start = time.perf_counter()
    shard_sets = ShardSets.of(cfg, sets, rules)
    cfg = shard_sets.cfg
    if not os.path.isdir(cfg.dataset_root):
        raise InputError(f"dataset root {cfg.dataset_root!r} is not a folder: pass the folder that holds the videos "
                         "and annotations")
    decoder_version = check_decoder(cfg.decoder)
    dataset = load_dataset(cfg.dataset_root, cfg.layout, msrvtt_train=cfg.msrvtt_train, captions=cfg.captions,
                           splits=cfg.splits, layouts=layouts)
    if cfg.full_duration and dataset.layout != "didemo":
        raise ConfigError(f"--full-duration applies to the didemo layout only, and {cfg.dataset_root} is "
                          f"{dataset.layout}: drop --full-duration")
    dataset, dup_failures = _key_collisions(dataset)
    tasks, listed = _plan(dataset, cfg)
    if sum(listed.values()) + len(dup_failures) == 0:
        raise InputError(f"no videos listed in {cfg.dataset_root} for splits {', '.join(dataset.items) or 'none'}")
    for c in shard_sets.outputs:
        resume.prepare_out(c, dataset)
        stale = resume.remove_stale(local_dir(c.out), tasks)
        if stale:
            log.warning("removed %d files of shards the dataset no longer fills: %s", len(stale),
                        ", ".join(stale[:6]) + (", ..." if len(stale) > 6 else ""))
    done: List[List[Dict[str, Any]]] = []
    todo: List[ShardTask] = []
    redone: Dict[str, str] = {}
    for task in tasks:
        checks = [resume.finished_stats(task, c) for c in shard_sets.outputs]
        if all(stats is not None for stats, _ in checks):
            done.append([stats for stats, _ in checks])  # type: ignore[misc]
        else:
            todo.append(task)
            why = next((w for _, w in checks if w), None)
            if why:
                redone[task.name] = why
    for name, why in list(redone.items())[:10]:
        log.info("%s: redoing it: %s", name, why)
    if len(redone) > 10:
        log.info("... and %d more shards redone, each listed in %s", len(redone) - 10, MANIFEST)
    log.info("%s layout: %s videos; %d shard tasks, %d already done, %d redone%s", dataset.layout,
             ", ".join(f"{n} {s}" for s, n in listed.items()), len(tasks), len(done), len(redone),
             f"; {len(shard_sets.masks)} mask settings (tau {', '.join(f'{m.tau:g}' for m in shard_sets.masks)}) "
             "from one decode"
             if len(shard_sets.masks) > 1 else "")
    new: List[List[Dict[str, Any]]] = []
    stop = executors.Stop()
    run = executors.run_ray if cfg.engine == "ray" and todo else executors.run_local
    try:
        with logging_redirect_tqdm(), Progress(sum(len(t.items) for t in todo)) as progress, stop.installed():
            run(todo, shard_sets, progress, stop, new, work=WORK)
    except KeyboardInterrupt:  # a second Ctrl-C, or one that arrived before the handler was in place
        stop.signum = stop.signum or signal.SIGINT
    if stop:
        name = signal.Signals(stop.signum).name
        ready = len(done) + len(new)
        raise Interrupted(f"stopped by {name}: {ready} of {len(tasks)} shards are finished in {cfg.out} ({len(new)} "
                          f"this run, {sum(len(s[0]['videos']) for s in new)} videos); no partial shard is left; "
                          "rerun the same command to resume", stop.signum)
    ffmpeg = _ffmpeg_record(cfg, decoder_version)
    results = []
    for c, one in enumerate(shard_sets.outputs):
        manifest = build_manifest(one, dataset, listed, [s[c] for s in done + new], ffmpeg, dup_failures,
                                  shard_sets.rules)
        manifest["last_run"] = {"reused_shards": len(done), "written_shards": len(new), "redone": redone}
        write_json_atomic(os.path.join(local_dir(one.out), MANIFEST), manifest)
        publish(one.out, [MANIFEST])  # a remote --out: last, listing only shards whose stats are there
        results.append(PreprocessResult(one.out, manifest, time.perf_counter() - start,
                                        processed_now=sum(len(s[c]["videos"]) for s in new),
                                        reused_shards=len(done), redone=dict(redone)))
    manifest = results[0].manifest
    where = os.path.join(cfg.out, MANIFEST)
    ok = sum(s["videos"] for s in manifest["splits"].values())
    failed = len(manifest["failures"])
    for failure in manifest["failures"][:20]:
        log.warning("skipped %s (%s): %s", failure["video_id"], failure["split"], failure["error"])
    if failed > 20:
        log.warning("... and %d more failures, all listed in %s", failed - 20, where)
    if ok == 0:
        first = manifest["failures"][0]
        raise InputError(f"no video could be preprocessed ({failed} failed; first: {first['video_id']}: "
                         f"{first['error']}); every failure is listed in {where}")
    if failed / (ok + failed) > cfg.max_failure_rate:
        raise InputError(f"{failed} of {ok + failed} videos failed ({100 * failed / (ok + failed):.1f}% > "
                         f"--max-failure-rate {cfg.max_failure_rate}); shards were written for the rest, failures "
                         f"are listed in {where}")
    return results
