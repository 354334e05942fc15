"""Writing a generated set in the MSR-VTT layout, and the files every generated set shares.

A set is ``videos/all/video{i}.mp4``, ``MSRVTT_data.json`` in the CLIP4Clip ``sentences`` schema,
``MSRVTT_train.9k.csv``, ``MSRVTT_train.7k.csv`` (a prefix of the 9k list, as in MSR-VTT), ``MSRVTT_JSFUSION_test.csv``,
plus :data:`META_FILE` with every clip's ground truth, so ``fda preprocess`` reads it like the real thing.
"""

import csv
import io
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from fda.errors import ConfigError, InputError
from fda.files import make_out_dir
from fda.lab.scenes.encoding import check_size

logger = logging.getLogger(__name__)

META_FILE = "fda_synthetic.json"


def _prepare_root(root: str) -> None:
    """Create ``root``; refuse a non-empty folder that is not an earlier synthetic set (whose videos are removed)."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise InputError(f"{root} exists and is not a folder: choose another output folder")
    make_out_dir(root, "OUT_DIR")
    meta = os.path.join(root, META_FILE)
    if os.path.isfile(meta):
        try:
            with open(meta, "r", encoding="utf-8") as fh:
                old = json.load(fh)
            for rel in old.get("files", []):
                old_path = os.path.join(root, rel)
                if os.path.isfile(old_path):
                    os.remove(old_path)
        except (OSError, ValueError) as err:
            raise InputError(f"{meta} is unreadable ({err}): delete {root} and generate again") from None
    elif os.listdir(root):
        raise InputError(f"{root} is not empty and holds no {META_FILE}: choose a new output folder")


def write_msrvtt_set(root: str, n_videos: int, captions: Sequence[List[str]], n_train: int, *,
                     render: Callable[[str, int], int], clips: Sequence[Dict[str, Any]], kind: str, seed: int,
                     size: Tuple[int, int], fps: int, seconds: float, test_pick: Sequence[int],
                     extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Render every clip and write the MSR-VTT annotation files plus :data:`META_FILE`; returns the summary dict.

    Args:
        root: output folder (created; must be empty or an earlier synthetic set).
        n_videos: clips (``video0`` ...); the first ``n_train`` are the training split, the rest the test split.
        captions: every clip's captions.
        n_train: training clips.
        render: ``render(path, i)`` encodes clip ``i`` to ``path`` and returns its frame count.
        clips: per clip, what it shows (ground truth); written to :data:`META_FILE` with its id and split.
        kind: the set's kind (recorded).
        seed: data-set seed (recorded).
        size: ``(width, height)``.
        fps: frame rate (recorded).
        seconds: clip length (recorded).
        test_pick: per test clip, which caption goes to the JSFUSION list.
        extra: more fields for the summary (recorded in :data:`META_FILE` and returned).
    """
    w, h = check_size(size)
    _prepare_root(root)
    ids = [f"video{i}" for i in range(n_videos)]
    rels = [f"videos/all/{v}.mp4" for v in ids]

    def one(i: int) -> int:
        return render(os.path.join(root, *rels[i].split("/")), i)

    counts = encode_all(one, n_videos)

    train_ids, test_ids = ids[:n_train], ids[n_train:]
    videos = [{"category": 0, "url": f"synthetic://{kind}/{seed}/{v}", "video_id": v, "start time": 0.0,
               "end time": float(seconds), "split": "train" if i < n_train else "test", "id": i}
              for i, v in enumerate(ids)]
    sentences = [{"caption": cap, "video_id": v, "sen_id": 0} for v, caps in zip(ids, captions) for cap in caps]
    for sen_id, sentence in enumerate(sentences):
        sentence["sen_id"] = sen_id
    info = {"contributor": "fda generate", "description": f"synthetic {kind} set", "seed": seed}
    write_text(root, "MSRVTT_data.json", json.dumps({"info": info, "videos": videos, "sentences": sentences}))
    write_csv(root, "MSRVTT_train.9k.csv", ["video_id"], [[v] for v in train_ids])
    n7 = max(1, (len(train_ids) * 7010 + 8999) // 9000)  # the 7k list is a prefix of the 9k one, as in MSR-VTT
    write_csv(root, "MSRVTT_train.7k.csv", ["video_id"], [[v] for v in train_ids[:n7]])
    write_csv(root, "MSRVTT_JSFUSION_test.csv", ["key", "vid_key", "video_id", "sentence"],
              [[f"ret{j}", f"msr{v[5:]}", v, captions[n_train + j][test_pick[j]]] for j, v in enumerate(test_ids)])
    records = [{"video_id": v, "split": "train" if i < n_train else "test", "captions": list(captions[i]),
                "frames": counts[i], **clips[i]} for i, v in enumerate(ids)]
    summary = {"root": os.path.abspath(root), "kind": kind, "seed": seed, "size": [w, h], "fps": fps,
               "seconds": seconds, "train": len(train_ids), "test": len(test_ids), "videos": len(ids),
               "frames_per_video": counts[0] if counts else 0, "captions": len(sentences), "files": rels,
               **(extra or {})}
    write_text(root, META_FILE, json.dumps({**summary, "clips": records}, indent=1))
    logger.info("wrote %d synthetic %s videos (%d train, %d test) to %s", len(ids), kind, len(train_ids),
                len(test_ids), root)
    return summary


def encode_all(render: Callable[[int], int], n: int) -> List[int]:
    """``[render(0), ..., render(n - 1)]`` (each encodes one clip and returns its frame count), a few at a time.

    ffmpeg runs in its own process, so threads give real parallelism here.
    """
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return list(pool.map(render, range(n)))


def write_csv(root: str, name: str, header: List[str], rows: Iterable[List[str]]) -> None:
    """Write ``root/name`` as a CSV file with ``header`` (``\\n`` line ends), atomically (:func:`write_text`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(root, name, buf.getvalue())


def write_text(root: str, name: str, text: str) -> None:
    """Write ``root/name`` (UTF-8, line ends as given); the file appears only when complete."""
    path = os.path.join(root, name)
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def check_counts(n_train: int, n_test: int, captions_per_video: int = 1) -> None:
    """Video counts of a generated set (>= 1 each) and its captions per video.

    Raises:
        ConfigError: a count out of range.
    """
    if not (isinstance(n_train, int) and n_train >= 1):
        raise ConfigError(f"--train must be an integer >= 1, got {n_train!r}")
    if not (isinstance(n_test, int) and n_test >= 1):
        raise ConfigError(f"--test must be an integer >= 1, got {n_test!r}")
    if not (isinstance(captions_per_video, int) and captions_per_video >= 1):
        raise ConfigError(f"captions_per_video must be an integer >= 1, got {captions_per_video!r}")


def summarize(summary: Dict[str, Any]) -> str:
    """One line for the console."""
    w, h = summary["size"]
    return (f"wrote {summary['videos']} {summary['kind']} videos ({summary['train']} train, {summary['test']} test, "
            f"{summary['frames_per_video']} frames at {w}x{h}, {summary['captions']} captions) to {summary['root']}")
