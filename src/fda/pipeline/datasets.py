"""Dataset layouts: which videos belong to which split, with which captions, and where their files are.

Six layouts are understood (DATASETS.md §1-3 and docs/DATASETS.md have the official formats;
``activitynet``, ``didemo`` and ``lsmdc`` are read as CLIP4Clip's ``dataloaders/`` read them):

- ``msrvtt``: ``MSRVTT_data.json`` (CLIP4Clip ``sentences`` schema or COCO-style ``annotations``; the
  Frozen-in-Time name ``MSR_VTT.json`` is accepted too), ``MSRVTT_train.9k.csv`` / ``MSRVTT_train.7k.csv``
  (header ``video_id``) and ``MSRVTT_JSFUSION_test.csv`` (``key,vid_key,video_id,sentence``, the 1k-A test set).
  Train captions are every sentence of the video in the json; test captions are the csv sentences, in row order.
  There is no val split (the 9k and 7k lists already hold the official validation videos).
- ``msvd``: ``raw-captions.pkl`` (video id -> list of token lists, joined with spaces) and
  ``train_list.txt`` / ``val_list.txt`` / ``test_list.txt`` (one id per line).
- ``activitynet`` (ActivityNet Captions): ``train_ids.json`` / ``val_ids.json`` (JSON lists of ``v_<id>``) and
  ``train.json`` / ``val_1.json`` (``{"v_<id>": {"duration", "timestamps", "sentences"}}``). One paragraph per
  video: its sentences, stripped, joined with single spaces. ``val_1`` is the test split (CLIP4Clip's "val"); there
  is no val split. A video file is found by stem, with or without the ``v_`` prefix.
- ``didemo``: ``train_list.txt`` / ``val_list.txt`` / ``test_list.txt`` (video file names) and ``train_data.json``
  / ``val_data.json`` / ``test_data.json`` (a list of ``{"video", "times", "description"}``). One paragraph per
  video: its descriptions in file order, joined with single spaces. Items carry ``window_end=30``: the videos were
  annotated on their first 30 s. A file is found by its exact name, else by the name's stem.
- ``lsmdc``: ``LSMDC16_annos_training.csv`` / ``LSMDC16_annos_val.csv`` / ``LSMDC16_challenge_1000_publictect.csv``,
  no header, one caption per line, 6 tab-separated fields ``clip_id, start_aligned, end_aligned, start_extracted,
  end_extracted, sentence``; a clip id may have several lines (several captions). Clips are found by stem,
  preferably in their movie's folder (``<clip_id minus its last _part>/<clip_id>.avi``).
- ``folder``: your own videos plus a captions file, ``captions.csv`` or ``captions.tsv`` (header
  ``video,caption[,split]``, read by the csv module with quoting, strictly: a row with another number of fields
  than the header, an unclosed quote or an unknown column is an error naming the line) or ``captions.jsonl`` (keys
  ``video``, ``caption`` (a string) or ``captions`` (a list), optional ``split``; any other key is an error) at the
  root (only one of them), or any file given by ``captions=``. Video files under the root that the file does not
  list are returned as :attr:`Dataset.unlisted`. Without a captions file every video under the root is an
  uncaptioned item of ``test``: a library to index and search. Several rows per video give several captions; a
  video whose rows name no split goes to ``test``. Rows are grouped by the real path of the file they name (``a.mp4``,
  ``./a.mp4`` and ``/abs/root/a.mp4`` are one video; so are a symlink and its target); exact repeats of a caption
  are dropped and counted. When two different files would get the same id (``x.mp4`` and ``x.mkv`` both give
  ``x``), each of them takes its file name with the extension as its id (``x.mp4``, ``x.mkv``).

Annotation files are looked for at the root, then one folder down (``msrvtt_data/MSRVTT_data.json``). Videos are
found anywhere under the root by file stem, whatever the subfolder; when several files share a stem, ``.mp4`` wins,
then ``.webm``, then the rest alphabetically.

Videos without a file (``path`` None) and videos without captions are returned as items, so the caller can record
them as failures with a reason. Anything wrong with the annotation files themselves raises
:class:`fda.errors.InputError`; a bad argument raises :class:`fda.errors.ConfigError`.
"""

import csv
import io
import json
import logging
import os
import pickle
import stat
import unicodedata
import functools
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from fda.config import SPLITS
from fda.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

# Preference order when several files share a stem: mp4, webm, then the rest alphabetically.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".3gp", ".avi", ".flv", ".m4v", ".mkv", ".mov", ".mpeg", ".mpg", ".ogv",
                    ".ts", ".wmv")  # matched case-insensitively
FOLDER_DEFAULT_SPLIT = "test"

MSRVTT_JSON_NAMES = ("MSRVTT_data.json", "MSR_VTT.json")
MSRVTT_TRAIN_CSV = {"9k": "MSRVTT_train.9k.csv", "7k": "MSRVTT_train.7k.csv"}
MSRVTT_TEST_CSV = "MSRVTT_JSFUSION_test.csv"
MSVD_CAPTIONS = "raw-captions.pkl"
MSVD_LISTS = {"train": "train_list.txt", "val": "val_list.txt", "test": "test_list.txt"}
FOLDER_CAPTIONS = ("captions.csv", "captions.tsv", "captions.jsonl")
FOLDER_COLUMNS = ("video", "caption", "split")  # a CSV/TSV header: video required, the others optional, any order
FOLDER_DELIMITERS = {".csv": ",", ".tsv": "\t"}
JSONL_CAPTION_KEYS = ("caption", "captions")  # a string, or a list of strings, under either key
JSONL_KEYS = ("video", "split", *JSONL_CAPTION_KEYS)
ANET_IDS = {"train": "train_ids.json", "test": "val_ids.json"}
ANET_CAPTIONS = {"train": "train.json", "test": "val_1.json"}  # val_1 is the field's test split
DIDEMO_LISTS = MSVD_LISTS  # the same three names as MSVD: the *_data.json files tell the layouts apart
DIDEMO_DATA = {"train": "train_data.json", "val": "val_data.json", "test": "test_data.json"}
DIDEMO_SECONDS = 30.0  # DiDeMo videos were annotated on their first 30 s (LisaAnne/LocalizingMoments README)
LSMDC_CSV = {"train": "LSMDC16_annos_training.csv", "val": "LSMDC16_annos_val.csv",
             "test": "LSMDC16_challenge_1000_publictect.csv"}
LSMDC_FIELDS = ("clip_id", "start_aligned", "end_aligned", "start_extracted", "end_extracted", "sentence")


@dataclass(frozen=True)
class VideoItem:
    """One video of one split.

    Attributes:
        video_id: the name the dataset gives the video (``video0``, ``-4wsuPCjDBc_5_15``, a file stem).
        split: ``train``, ``val`` or ``test``.
        path: real path (symlinks resolved) of the video file; ``None`` when no file was found.
        captions: every caption, in the dataset's order; empty when the dataset gives none.
        source: the file's path relative to the dataset root (``/`` separators), or the expected name when the
            file is missing; meant for records and error messages.
        window_end: seconds: the dataset annotated only the frames presented before this time (DiDeMo: 30), so
            sampling may keep to them; ``None``: the whole clip.
    """

    video_id: str
    split: str
    path: Optional[str]
    captions: Tuple[str, ...]
    source: str
    window_end: Optional[float] = None


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset.

    Attributes:
        layout: one of :data:`fda.config.LAYOUTS`.
        root: real path of the dataset root.
        items: per split (in ``train``, ``val``, ``test`` order), the videos in the split file's order
            (MSR-VTT test: the JSFUSION csv row order).
        annotations: real paths of the annotation files read (split lists, captions), in reading order.
        duplicate_captions: exact repeats of a video's caption dropped from a folder captions file.
        unlisted: video files under the root (relative paths) that a folder's captions file does not list: they are
            not preprocessed, and the manifest lists them.
        captions_file: a folder's captions file, or None (another layout, or a folder indexed without one).
    """

    layout: str
    root: str
    items: Dict[str, List[VideoItem]]
    annotations: Tuple[str, ...] = ()
    duplicate_captions: int = 0
    unlisted: Tuple[str, ...] = ()
    captions_file: Optional[str] = None

    @property
    def captioned(self) -> bool:
        """Whether any video has a caption (a folder without captions is an uncaptioned library: index only)."""
        return any(it.captions for lst in self.items.values() for it in lst)


# --------------------------------------------------------------------------------------------------------------
# Finding files


def _nfc(text: str) -> str:
    # macOS file systems hand back NFD names; annotation files are usually NFC.
    return unicodedata.normalize("NFC", text)


def _subdirs(root: str) -> List[str]:
    try:
        with os.scandir(root) as entries:
            return sorted(e.path for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def not_regular(path: str) -> Optional[str]:
    """What ``path`` is when it exists but is not a regular file (``"a FIFO"``, ``"a folder"``), else ``None``."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _find_annotation(root: str, name: str) -> Optional[str]:
    """``root/name`` or, failing that, ``root/<sub>/name`` (first subfolder in sorted order)."""
    direct = os.path.join(root, name)
    if os.path.isfile(direct):
        return direct
    kind = not_regular(direct)
    if kind is not None and kind != "a folder":
        raise InputError(f"{direct} is {kind}, not a regular file: replace it with the file itself")
    found = [os.path.join(sub, name) for sub in _subdirs(root) if os.path.isfile(os.path.join(sub, name))]
    if len(found) > 1:
        logger.warning("%s found in %d folders under %s; using %s", name, len(found), root, found[0])
    return found[0] if found else None


def _preference(rel: str) -> Tuple[int, str, int, str]:
    """Sort key among files sharing a stem: mp4, webm, other extensions alphabetically; then shallowest path."""
    ext = os.path.splitext(rel)[1].lower()
    rank = VIDEO_EXTENSIONS.index(ext) if ext in VIDEO_EXTENSIONS[:2] else len(VIDEO_EXTENSIONS)
    return rank, ext, rel.count("/"), rel


class _VideoIndex:
    """Every video file under a root, by stem (one walk of the tree)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._by_stem: Dict[str, List[str]] = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTENSIONS and not name.startswith("."):
                    rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
                    self._by_stem.setdefault(_nfc(stem), []).append(rel)
        logger.debug("found %d video stems under %s", len(self._by_stem), root)

    def __len__(self) -> int:
        return len(self._by_stem)

    def files(self) -> List[str]:
        """Relative paths of every video file under the root, sorted."""
        return sorted(rel for rels in self._by_stem.values() for rel in rels)

    def candidates(self, stem: str) -> List[str]:
        """Relative paths of every file named ``stem`` (any extension, any folder)."""
        return list(self._by_stem.get(_nfc(stem), []))

    def lookup(self, stem: str, subdir: Optional[str] = None) -> Optional[str]:
        """Relative path of the preferred file named ``stem`` (optionally only inside ``subdir``), or None."""
        candidates = self._by_stem.get(_nfc(stem), [])
        if subdir is not None:
            candidates = [c for c in candidates if os.path.dirname(c) == subdir]
        if not candidates:
            return None
        best = min(candidates, key=_preference)
        if len(candidates) > 1:
            logger.debug("video %r has %d files; using %s", stem, len(candidates), best)
        return best

    def named(self, name: str) -> Optional[str]:
        """Relative path of the file called exactly ``name`` (shallowest first), else of the preferred file whose
        stem is ``name``'s stem (a video re-encoded to another container keeps its stem), or None."""
        stem, ext = os.path.splitext(name)
        exact = [c for c in self._by_stem.get(_nfc(stem), []) if _nfc(c.rsplit("/", 1)[-1]) == _nfc(name)]
        if exact and ext.lower() in VIDEO_EXTENSIONS:
            return min(exact, key=lambda c: (c.count("/"), c))
        return self.lookup(stem if ext.lower() in VIDEO_EXTENSIONS else name)

    def item(self, video_id: str, split: str, captions: Sequence[str], expected: str, *,
             rel: Optional[str] = None, window_end: Optional[float] = None) -> VideoItem:
        if rel is None:
            rel = self.lookup(video_id)
        path = os.path.realpath(os.path.join(self.root, *rel.split("/"))) if rel is not None else None
        return VideoItem(video_id, split, path, tuple(captions), rel if rel is not None else expected, window_end)


# --------------------------------------------------------------------------------------------------------------
# Reading annotation files


def _read_text(path: str) -> str:
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as fh:
            return fh.read()
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): re-save it as UTF-8") \
            from None
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None


def _read_csv(path: str, required: Sequence[str]) -> List[Tuple[int, Dict[str, str]]]:
    """Rows of a headed CSV as ``(line number, row)``; raises InputError when a required column is missing."""
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise InputError(f"{path}: header must have columns {','.join(required)}, got "
                             f"{','.join(header) or 'an empty file'}: fix the header line")
        reader.fieldnames = header
        rows = []
        for row in reader:
            if all(not (v or "").strip() for k, v in row.items() if k is not None):
                continue  # blank line
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items() if k is not None}))
        return rows
    except csv.Error as err:
        raise InputError(f"{path}: malformed CSV near line {reader.line_num}: {err}") from None


def _read_list(path: str) -> List[str]:
    ids = [line.strip() for line in _read_text(path).splitlines()]
    return _dedupe([i for i in ids if i], path)


def _dedupe(ids: Iterable[str], path: str) -> List[str]:
    seen: Dict[str, None] = {}
    dupes = 0
    for vid in ids:
        if vid in seen:
            dupes += 1
        else:
            seen[vid] = None
    if dupes:
        logger.warning("%s lists %d video ids more than once; keeping the first of each", path, dupes)
    return list(seen)


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers only: a caption file has no business running code."""

    _ALLOWED = {("builtins", "dict"), ("builtins", "list"), ("builtins", "str"), ("builtins", "tuple"),
                ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _annotation(root: str, name: str, what: str, files: List[str]) -> str:
    """The annotation file ``name`` (:func:`_find_annotation`), added to ``files`` (the inputs a rerun compares).

    Raises:
        InputError: it is not there; the message says what it should hold (``what``).
    """
    path = _need(_find_annotation(root, name), name, root, what)
    files.append(path)
    return path


def _need(path: Optional[str], name: str, root: str, what: str) -> str:
    if path is None:
        raise InputError(f"{name} not found in {root} or one folder down: add it ({what}) or choose other splits "
                         f"with --split")
    return path


# --------------------------------------------------------------------------------------------------------------
# Layout detection


def _found(root: str, names: Iterable[str]) -> List[str]:
    return [n for n in names if _find_annotation(root, n)]


def _msrvtt_markers(root: str) -> List[str]:
    return _found(root, (*MSRVTT_JSON_NAMES, *MSRVTT_TRAIN_CSV.values(), MSRVTT_TEST_CSV))


def _msvd_markers(root: str) -> List[str]:
    """``AllVideoDescriptions.txt`` (with the lists found), or the train and test lists alone when no DiDeMo json
    claims them (DiDeMo's release has lists of the same names)."""
    lists = _found(root, MSVD_LISTS.values())
    if _find_annotation(root, MSVD_CAPTIONS):
        return [MSVD_CAPTIONS, *lists]
    if {"train_list.txt", "test_list.txt"} <= set(lists) and not _found(root, DIDEMO_DATA.values()):
        return lists
    return []


def _didemo_markers(root: str) -> List[str]:
    didemo = _found(root, DIDEMO_DATA.values())
    if not didemo:
        return []
    return didemo + ([] if _find_annotation(root, MSVD_CAPTIONS) else _found(root, MSVD_LISTS.values()))


def _activitynet_markers(root: str) -> List[str]:
    return _found(root, (*ANET_IDS.values(), ANET_CAPTIONS["test"]))


def _lsmdc_markers(root: str) -> List[str]:
    return _found(root, LSMDC_CSV.values())


def _folder_markers(root: str) -> List[str]:
    return [n for n in FOLDER_CAPTIONS if os.path.lexists(os.path.join(root, n))
            and not os.path.isdir(os.path.join(root, n))]


def _markers(root: str, layouts: Mapping[str, "Layout"]) -> Dict[str, List[str]]:
    """The annotation files of each layout found at ``root``, in table order (layouts without any left out)."""
    found = {name: entry.markers(root) for name, entry in layouts.items()}
    return {name: names for name, names in found.items() if names}


def detect_layout(root: str, layouts: Optional[Mapping[str, "Layout"]] = None) -> str:
    """The layout of a dataset root, from the annotation files it holds.

    Args:
        root: dataset root folder.
        layouts: the layout table (default: :data:`LAYOUT_TABLE`).

    Returns:
        One of :data:`fda.config.LAYOUTS`.

    Raises:
        InputError: ``root`` is not a folder, or holds neither a known annotation file nor a video (a folder of
            videos without one is ``folder``: an uncaptioned library).
        ConfigError: the files of more than one layout are present (pass ``--layout``).
    """
    if not os.path.isdir(root):
        raise InputError(f"dataset root {root!r} is not a folder: check the path")
    layouts = LAYOUT_TABLE if layouts is None else layouts
    found = _markers(root, layouts)
    if len(found) == 1:
        layout = next(iter(found))
        logger.debug("detected layout %s in %s from %s", layout, root, ", ".join(found[layout]))
        return layout
    if not found and len(_VideoIndex(root)):
        logger.debug("no annotation file in %s but video files: an uncaptioned folder", root)
        return "folder"
    if not found:
        hints = ", ".join(f"{entry.hint} ({name})" for name, entry in layouts.items())
        raise InputError(f"cannot tell the layout of {root}: found none of {hints} at the root or one folder down: "
                         f"add them, or pass --layout and --captions")
    names = "; ".join(f"{k}: {', '.join(v)}" for k, v in found.items())
    raise ConfigError(f"{root} holds the files of several layouts ({names}): pass --layout "
                      f"{'|'.join(found)}")


# --------------------------------------------------------------------------------------------------------------
# Loading


def _check_splits(splits: Optional[Sequence[str]], available: Sequence[str], layout: str) -> List[str]:
    if splits is None:
        return list(available)
    if isinstance(splits, str):
        splits = [s for s in splits.split(",") if s.strip()]
    wanted = []
    for split in splits:
        split = split.strip()
        if split not in SPLITS:
            raise ConfigError(f"--split must be a comma list of {', '.join(SPLITS)}, got {split!r}")
        if split not in available:
            raise ConfigError(f"the {layout} dataset has no {split!r} split (it has {', '.join(available) or 'none'}):"
                              f" pass --split {','.join(available)}")
        if split not in wanted:
            wanted.append(split)
    return [s for s in SPLITS if s in wanted]


def load_dataset(root: str, layout: Optional[str] = None, *, msrvtt_train: str = "9k",
                 captions: Optional[str] = None, splits: Optional[Sequence[str]] = None,
                 layouts: Optional[Mapping[str, "Layout"]] = None) -> Dataset:
    """Read a dataset's split lists and captions and locate its video files.

    Args:
        root: dataset root folder.
        layout: one of :data:`fda.config.LAYOUTS`; detected when ``None`` (``folder`` when ``captions`` is given).
        msrvtt_train: MSR-VTT training list, ``9k`` or ``7k``.
        captions: captions file of a ``folder`` dataset (CSV or JSONL); a relative path is tried against the
            current directory, then ``root``. Default: ``captions.csv`` or ``captions.jsonl`` at the root.
        splits: splits to load (default: every split the dataset has); only their files are read.
        layouts: the layout table (default: :data:`LAYOUT_TABLE`).

    Returns:
        The dataset; items with no video file have ``path`` None, items with no caption have empty ``captions``.

    Raises:
        ConfigError: unknown layout or split, a split the dataset lacks, ``captions`` with a non-folder layout.
        InputError: the root or an annotation file is missing, unreadable or malformed.
    """
    if layout is None and captions is not None:
        layout = "folder"
    layouts = LAYOUT_TABLE if layouts is None else layouts
    if layout is not None and layout not in layouts:
        raise ConfigError(f"--layout must be one of {', '.join(layouts)}, got {layout!r}")
    if msrvtt_train not in MSRVTT_TRAIN_CSV:
        raise ConfigError(f"--msrvtt-train must be one of 9k, 7k, got {msrvtt_train!r}")
    if captions is not None and layout != "folder":
        raise ConfigError(f"--captions applies to --layout folder only, got --layout {layout}: drop --captions")
    if not os.path.isdir(root):
        raise InputError(f"dataset root {root!r} is not a folder: check the path")
    root = os.path.realpath(root)
    if layout is None:
        layout = detect_layout(root, layouts)
    files: List[str] = []
    entry = layouts[layout]
    wanted = _check_splits(splits, entry.splits, layout)  # what a layout cannot have is refused for every loader
    loaded = entry.load(root, LoadRequest(splits, msrvtt_train, captions), files)
    items = {split: lst for split, lst in loaded.items.items() if split in wanted}  # only the splits asked for
    for split, lst in items.items():
        missing = sum(1 for it in lst if it.path is None)
        uncaptioned = sum(1 for it in lst if not it.captions)
        official = entry.official_count(split, msrvtt_train)
        note = f" (the official split has {official})" if official is not None and len(lst) != official else ""
        logger.info("%s %s: %d videos%s, %d without a file, %d without captions", layout, split, len(lst), note,
                    missing, uncaptioned)
    return Dataset(layout=layout, root=root, items=items,
                   annotations=tuple(dict.fromkeys(os.path.realpath(f) for f in files)),
                   duplicate_captions=loaded.duplicates, unlisted=loaded.unlisted, captions_file=loaded.captions_file)


def _load_msrvtt(root: str, which: str, splits: Optional[Sequence[str]], files: List[str]
                 ) -> Dict[str, List[VideoItem]]:
    wanted = _check_splits(splits, ("train", "test"), "msrvtt")
    index = _VideoIndex(root)
    items: Dict[str, List[VideoItem]] = {}
    if "train" in wanted:
        name = MSRVTT_TRAIN_CSV[which]
        csv_path = _annotation(root, name, "a video_id column", files)
        ids = _dedupe((row["video_id"] for _, row in _read_csv(csv_path, ("video_id",)) if row["video_id"]),
                      csv_path)
        json_path = None
        for json_name in MSRVTT_JSON_NAMES:
            json_path = _find_annotation(root, json_name)
            if json_path:
                break
        json_path = _need(json_path, MSRVTT_JSON_NAMES[0], root, "the train captions")
        files.append(json_path)
        sentences = _msrvtt_sentences(json_path)
        items["train"] = [index.item(v, "train", sentences.get(v, ()), f"{v}.mp4") for v in ids]
    if "test" in wanted:
        csv_path = _annotation(root, MSRVTT_TEST_CSV, "columns key,vid_key,video_id,sentence", files)
        order: Dict[str, List[str]] = {}
        for line, row in _read_csv(csv_path, ("video_id", "sentence")):
            vid = row["video_id"]
            if not vid:
                raise InputError(f"{csv_path} line {line}: empty video_id: fix or delete the row")
            if vid in order:
                logger.warning("%s line %d: %s appears again; its sentence becomes an extra caption (the 1k-A "
                               "protocol has one row per video)", csv_path, line, vid)
            order.setdefault(vid, [])
            if row["sentence"]:
                order[vid].append(row["sentence"])
        items["test"] = [index.item(v, "test", caps, f"{v}.mp4") for v, caps in order.items()]
    return items


def _msrvtt_sentences(path: str) -> Dict[str, List[str]]:
    """video_id -> captions in file order, from either MSR-VTT json schema."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON (line {err.lineno}: {err.msg}): re-download or fix it") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with 'sentences' or 'annotations', got "
                         f"{type(data).__name__}")
    if "sentences" in data:
        entries, vid_key, key = data["sentences"], "video_id", "sentences"
    elif "annotations" in data:
        entries, vid_key, key = data["annotations"], "image_id", "annotations"
    else:
        raise InputError(f"{path}: found neither 'sentences' (CLIP4Clip) nor 'annotations' (COCO-style) at the top "
                         f"level (keys: {', '.join(sorted(map(str, data)))[:120]}): use an MSR-VTT annotation file")
    if not isinstance(entries, list):
        raise InputError(f"{path}: '{key}' must be a list, got {type(entries).__name__}")
    out: Dict[str, List[str]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or vid_key not in entry or "caption" not in entry:
            raise InputError(f"{path}: {key}[{i}] must be an object with '{vid_key}' and 'caption', got "
                             f"{str(entry)[:80]}")
        caption = entry["caption"]
        if not isinstance(caption, str):
            raise InputError(f"{path}: {key}[{i}].caption must be a string, got {type(caption).__name__}")
        caption = caption.strip()
        if caption:
            out.setdefault(str(entry[vid_key]), []).append(caption)
    return out


def _load_msvd(root: str, splits: Optional[Sequence[str]], files: List[str]) -> Dict[str, List[VideoItem]]:
    wanted = _check_splits(splits, tuple(MSVD_LISTS), "msvd")
    pkl = _annotation(root, MSVD_CAPTIONS, "video id -> token lists", files)
    captions = _msvd_captions(pkl)
    index = _VideoIndex(root)
    items: Dict[str, List[VideoItem]] = {}
    for split in wanted:
        name = MSVD_LISTS[split]
        list_path = _annotation(root, name, "one video id per line", files)
        ids = _read_list(list_path)
        items[split] = [index.item(v, split, captions.get(v, ()), f"{v}.avi") for v in ids]
    return items


def _msvd_captions(path: str) -> Dict[str, List[str]]:
    """video id -> captions, each token list joined with single spaces."""
    try:
        with open(path, "rb") as fh:
            data = _SafeUnpickler(fh).load()
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise InputError(f"{path} is not a readable caption pickle ({type(err).__name__}: {err}): use CLIP4Clip's "
                         f"raw-captions.pkl") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a dict of video id -> token lists, got {type(data).__name__}")
    out: Dict[str, List[str]] = {}
    for vid, caps in data.items():
        if not isinstance(caps, (list, tuple)):
            raise InputError(f"{path}: captions of {vid!r} must be a list of token lists, got {type(caps).__name__}")
        texts = []
        for cap in caps:
            if isinstance(cap, str):
                text = cap
            elif isinstance(cap, (list, tuple)) and all(isinstance(t, str) for t in cap):
                text = " ".join(cap)
            else:
                raise InputError(f"{path}: a caption of {vid!r} is neither a token list nor a string: "
                                 f"{str(cap)[:80]}")
            text = " ".join(text.split())
            if text:
                texts.append(text)
        out[str(vid)] = texts
    return out


def _read_json(path: str) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON (line {err.lineno}: {err.msg}): re-download or fix it") from None


def paragraph(sentences: Iterable[str]) -> str:
    """One paragraph from a video's sentences: each stripped, empty ones dropped, joined with single spaces.

    CLIP4Clip joins the raw sentences with ``" "``; ActivityNet's sentences carry leading and trailing spaces, so
    its paragraphs hold double spaces. The tokenizer splits on any whitespace, so both give the same tokens.
    """
    return " ".join(" ".join(s.split()) for s in sentences if s and s.strip())


def _load_activitynet(root: str, splits: Optional[Sequence[str]], files: List[str]) -> Dict[str, List[VideoItem]]:
    wanted = _check_splits(splits, tuple(ANET_IDS), "activitynet")
    index = _VideoIndex(root)
    items: Dict[str, List[VideoItem]] = {}
    for split in wanted:
        ids_path = _annotation(root, ANET_IDS[split], 'a JSON list of "v_<id>"', files)
        ids = _read_json(ids_path)
        if not isinstance(ids, list) or not all(isinstance(v, str) for v in ids):
            raise InputError(f"{ids_path}: expected a JSON list of video ids (\"v_<id>\"), got "
                             f"{str(ids)[:80]}")
        ids = _dedupe((v.strip() for v in ids if v.strip()), ids_path)
        cap_path = _annotation(root, ANET_CAPTIONS[split], '{"v_<id>": {"duration", "timestamps", "sentences"}}', files)
        data = _read_json(cap_path)
        if not isinstance(data, dict):
            raise InputError(f"{cap_path}: expected a JSON object of \"v_<id>\" -> {{\"duration\", \"timestamps\", "
                             f"\"sentences\"}}, got {type(data).__name__}")
        out = []
        for vid in ids:
            entry = data.get(vid)
            captions: Tuple[str, ...] = ()
            if entry is not None:
                sentences = entry.get("sentences") if isinstance(entry, dict) else None
                if not isinstance(sentences, list) or not all(isinstance(t, str) for t in sentences):
                    raise InputError(f"{cap_path}: {vid}.sentences must be a list of strings, got "
                                     f"{str(sentences)[:80]}")
                text = paragraph(sentences)
                captions = (text,) if text else ()
            other = vid[2:] if vid.startswith("v_") else "v_" + vid  # CLIP4Clip names files without the prefix
            rel = index.lookup(vid) or index.lookup(other)
            out.append(index.item(vid, split, captions, f"{vid}.mp4", rel=rel))
        items[split] = out
    return items


def _load_didemo(root: str, splits: Optional[Sequence[str]], files: List[str]) -> Dict[str, List[VideoItem]]:
    wanted = _check_splits(splits, tuple(DIDEMO_DATA), "didemo")
    index = _VideoIndex(root)
    items: Dict[str, List[VideoItem]] = {}
    for split in wanted:
        list_path = _annotation(root, DIDEMO_LISTS[split], "one video file name per line", files)
        names = _read_list(list_path)
        data_path = _annotation(root, DIDEMO_DATA[split], 'a JSON list of {"video", "times", "description"}', files)
        data = _read_json(data_path)
        if not isinstance(data, list):
            raise InputError(f"{data_path}: expected a JSON list of {{\"video\", \"times\", \"description\"}}, got "
                             f"{type(data).__name__}")
        descriptions: Dict[str, List[str]] = {}
        for i, entry in enumerate(data):
            if not isinstance(entry, dict) or not isinstance(entry.get("video"), str) \
                    or not isinstance(entry.get("description"), str):
                raise InputError(f"{data_path}: entry {i} must be an object with string 'video' and 'description', "
                                 f"got {str(entry)[:80]}")
            descriptions.setdefault(entry["video"].strip(), []).append(entry["description"])
        out = []
        for name in names:
            text = paragraph(descriptions.get(name, ()))
            out.append(index.item(name, split, (text,) if text else (), name, rel=index.named(name),
                                  window_end=DIDEMO_SECONDS))
        items[split] = out
    return items


def _lsmdc_rows(path: str) -> Dict[str, List[str]]:
    """clip id -> its sentences in line order, from an LSMDC16 tab-separated file (no header)."""
    clips: Dict[str, List[str]] = {}
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(LSMDC_FIELDS):
            raise InputError(f"{path} line {line_no}: expected {len(LSMDC_FIELDS)} tab-separated fields "
                             f"({', '.join(LSMDC_FIELDS)}), got {len(fields)}: keep the file as LSMDC ships it")
        clip_id, sentence = fields[0].strip(), " ".join(fields[-1].split())
        if not clip_id:
            raise InputError(f"{path} line {line_no}: empty clip id: fix or delete the line")
        caps = clips.setdefault(clip_id, [])
        if sentence:
            caps.append(sentence)
    return clips


def lsmdc_movie(clip_id: str) -> str:
    """The movie folder of an LSMDC clip: its id without the last ``_<start>-<end>`` part
    (``0001_American_Beauty_00.00.51.926-00.00.54.129`` -> ``0001_American_Beauty``)."""
    return clip_id.rsplit("_", 1)[0] if "_" in clip_id else clip_id


def _load_lsmdc(root: str, splits: Optional[Sequence[str]], files: List[str]) -> Dict[str, List[VideoItem]]:
    wanted = _check_splits(splits, tuple(LSMDC_CSV), "lsmdc")
    index = _VideoIndex(root)
    items: Dict[str, List[VideoItem]] = {}
    for split in wanted:
        path = _annotation(root, LSMDC_CSV[split], "tab-separated clip_id, 4 times, sentence", files)
        out = []
        for clip_id, sentences in _lsmdc_rows(path).items():
            movie = lsmdc_movie(clip_id)
            in_movie = [c for c in index.candidates(clip_id) if c.rsplit("/", 2)[-2:-1] == [movie]]
            rel = min(in_movie, key=_preference) if in_movie else index.lookup(clip_id)
            out.append(index.item(clip_id, split, sentences, f"{movie}/{clip_id}.avi", rel=rel))
        items[split] = out
    return items


def _regular_file(path: str, what: str, fix: str) -> str:
    """``path`` when it is a regular file; raises InputError naming what it is otherwise."""
    kind = not_regular(path)
    if kind is not None:
        raise InputError(f"{what} {path} is {kind}, not a regular file: {fix}")
    return path


def _find_captions_file(root: str, captions: Optional[str]) -> Optional[str]:
    """The captions file to read: ``captions`` (as given, else inside ``root``), else the one of
    :data:`FOLDER_CAPTIONS` at the root, else None (an uncaptioned library)."""
    if captions is None:
        present = [os.path.join(root, name) for name in FOLDER_CAPTIONS if os.path.lexists(os.path.join(root, name))]
        if len(present) > 1:
            names = " and ".join(os.path.basename(p) for p in present)
            raise ConfigError(f"{root} holds both {names}: pass --captions with the one to read (e.g. --captions "
                              f"{os.path.basename(present[0])}), or delete the other")
        if present:
            return _regular_file(present[0], "captions file", "replace it with the file itself")
        return None
    for path in (captions, os.path.join(root, captions)):
        if os.path.exists(path):
            return os.path.abspath(_regular_file(path, "captions file", "pass the file itself to --captions"))
    raise InputError(f"captions file {captions!r} not found (tried it as given and inside {root}): fix --captions")


Row = Tuple[int, str, Optional[str], Optional[str]]
"""``(line, video, caption or None, split or None)``: one row of a folder's captions file."""


def _folder_rows(path: str) -> List[Row]:
    """Every row of a captions CSV, TSV or JSONL file, read strictly (a malformed row is an error, never a guess).

    Raises:
        InputError: a wrong header, a row with the wrong number of fields, an unclosed quote, a caption across
            lines, invalid JSON or an unknown key; the message names the file and line.
        ConfigError: another extension than .csv, .tsv, .jsonl.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext in FOLDER_DELIMITERS:
        return _delimited_rows(path, FOLDER_DELIMITERS[ext])
    if ext in (".jsonl", ".ndjson"):
        return _jsonl_rows(path)
    raise ConfigError(f"--captions must be a .csv, .tsv or .jsonl file, got {path}")


def _delimited_rows(path: str, delimiter: str) -> List[Row]:
    """Rows of a headed CSV (``,``) or TSV (tab) captions file, through the csv module with quoting, strictly."""
    sep = "comma" if delimiter == "," else "tab"
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter, strict=True)
    rows: List[Row] = []
    header: List[str] = []
    line = 1  # where the record being read starts
    try:
        for fields in reader:
            start, line = line, reader.line_num + 1
            if not any(f.strip() for f in fields):
                continue  # blank line
            spans = next((f for f in fields if "\n" in f or "\r" in f), None)
            if spans is not None:
                raise InputError(f"{path} line {start}: a quoted field runs over lines {start}-{reader.line_num} "
                                 f"({spans[:40]!r}...): close its quote (a caption is one line)")
            if not header:
                header = _folder_header(path, [f.strip() for f in fields], sep)
                continue
            if len(fields) != len(header):
                hint = ""
                if len(fields) > len(header) and "caption" in header:
                    hint = (f": a {sep} inside a caption needs the caption in double quotes "
                            f'(a.mp4{delimiter}"a man{delimiter} riding a bike")' if delimiter == "," else
                            ": a tab inside a caption needs the caption in double quotes")
                raise InputError(f"{path} line {start}: {len(fields)} {sep}-separated fields, but the header has "
                                 f"{len(header)} ({','.join(header)}){hint or ': fix the row'}")
            row = dict(zip(header, (f.strip() for f in fields)))
            rows.append((start, row["video"], row.get("caption") or None, row.get("split") or None))
    except csv.Error as err:
        what = ("an unclosed quote runs to the end of the file" if "end of data" in str(err)
                else f"{err} (a quoted field must end at its closing quote, before the {sep})")
        raise InputError(f"{path} line {line}: {what}: close the quote, or double a quote inside a caption "
                         f'(""like this"")') from None
    if not header:
        raise InputError(f"{path} is empty: write a header line {delimiter.join(FOLDER_COLUMNS[:2])}[{delimiter}split] "
                         f"and one row per caption")
    return rows


def _folder_header(path: str, header: List[str], sep: str) -> List[str]:
    """The column names of a captions file's first line, checked: known names, each once, ``video`` present."""
    unknown = [h for h in header if h not in FOLDER_COLUMNS]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if unknown or repeated or "video" not in header:
        got = f"unknown column {unknown[0]!r}" if unknown else (
            f"column {repeated[0]!r} twice" if repeated else "no 'video' column")
        raise InputError(f"{path} line 1: the header must name {sep}-separated columns from "
                         f"{', '.join(FOLDER_COLUMNS)} (video,caption[,split]), got {got} in "
                         f"{sep.join(header)[:80]!r}: fix the header line")
    return header


def _jsonl_rows(path: str) -> List[Row]:
    """Rows of a JSONL captions file: one object per line, keys :data:`JSONL_KEYS`."""
    rows: List[Row] = []
    for line, text in enumerate(_read_text(path).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"{path} line {line}: not valid JSON ({err.msg} at column {err.colno}): one object "
                             f"per line") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("video"), str):
            raise InputError(f"{path} line {line}: need an object with a string 'video' key, got {text[:80]}")
        unknown = sorted(k for k in obj if k not in JSONL_KEYS)
        if unknown and not any(k in obj for k in JSONL_CAPTION_KEYS):
            raise InputError(f"{path} line {line}: no 'caption' (a string) or 'captions' (a list of strings) "
                             f"key, got keys {', '.join(map(repr, unknown))}: rename the caption key")
        if unknown:
            raise InputError(f"{path} line {line}: unknown key {unknown[0]!r} (keys are video, caption, captions, "
                             f"split): remove or rename it")
        split = obj.get("split")
        if split is not None and not isinstance(split, str):
            raise InputError(f"{path} line {line}: 'split' must be a string, got {str(split)[:40]}")
        caps: List[Any] = []
        for key in JSONL_CAPTION_KEYS:
            if key in obj:
                caps += obj[key] if isinstance(obj[key], list) else [obj[key]]
        if not any(k in obj for k in JSONL_CAPTION_KEYS):
            caps = [None]  # a video listed without a caption
        for cap in caps:
            if cap is not None and not isinstance(cap, str):
                raise InputError(f"{path} line {line}: 'caption' and 'captions' must be a string or a list of "
                                 f"strings, got {str(cap)[:40]}")
            rows.append((line, obj["video"].strip(), (cap or "").strip() or None,
                         split.strip() if isinstance(split, str) and split.strip() else None))
    return rows


def _folder_video_id(value: str) -> str:
    """The ``video`` value with separators normalised and a known video extension removed."""
    value = value.replace("\\", "/")
    while value.startswith("./"):
        value = value[2:]
    stem, ext = os.path.splitext(value)
    return stem if ext.lower() in VIDEO_EXTENSIONS else value


def _folder_value(root: str, value: str) -> str:
    """A row's ``video`` value with ``/`` separators, made relative to ``root`` when it is an absolute path (or climbs
    with ``..``) but really lies inside the root, so aliases of one file derive one id."""
    value = value.replace("\\", "/")
    if os.path.isabs(value) or ".." in value.split("/"):
        real = os.path.realpath(os.path.join(root, value))
        if real.startswith(root.rstrip(os.sep) + os.sep):
            return os.path.relpath(real, root).replace(os.sep, "/")
    return value


def _load_folder(root: str, captions: Optional[str], splits: Optional[Sequence[str]], files: List[str]
                 ) -> Tuple[Dict[str, List[VideoItem]], int, Tuple[str, ...], Optional[str]]:
    """Items per split, the number of exact duplicate caption rows dropped, the video files under the root that the
    captions file does not list, and the captions file read (None: an uncaptioned library)."""
    path = _find_captions_file(root, captions)
    index = _VideoIndex(root)
    if path is None:
        return _uncaptioned_folder(root, index, splits), 0, (), None
    files.append(path)
    rows = _folder_rows(path)
    if not rows:
        raise InputError(f"{path} has no rows: add lines of video,caption[,split]")
    located: Dict[str, Optional[str]] = {}  # value -> relative path of its file (one lookup per distinct value)
    by_file: Dict[str, Dict[str, Any]] = {}  # real path (or "\0" + id when no file) -> the video's rows
    duplicates = 0
    for line, video, caption, split in rows:
        if not video:
            raise InputError(f"{path} line {line}: empty 'video': name a file or stem relative to {root}")
        if split is not None and split not in SPLITS:
            raise InputError(f"{path} line {line}: split must be one of {', '.join(SPLITS)} or empty, got {split!r}")
        value = _folder_value(root, video)
        if value not in located:
            located[value] = _folder_locate(root, index, value, _folder_video_id(value))
        rel = located[value]
        real = os.path.realpath(os.path.join(root, *rel.split("/"))) if rel is not None else None
        entry = by_file.setdefault(real if real is not None else "\0" + _folder_video_id(value),
                                   {"value": value, "rel": rel, "path": real, "captions": [], "split": None,
                                    "line": line})
        if split is not None:
            if entry["split"] not in (None, split):
                same = "" if video == entry["value"] else f" (as {entry['value']!r}: the same file)"
                raise InputError(f"{path} line {line}: {video!r} is in split {split!r} here but {entry['split']!r} "
                                 f"at line {entry['line']}{same}: a video belongs to one split")
            entry["split"] = split
            entry["line"] = line
        if caption is not None:
            if caption in entry["captions"]:
                duplicates += 1
            else:
                entry["captions"].append(caption)
    if duplicates:
        logger.warning("%s: dropped %d exact repeats of a video's caption", path, duplicates)
    ids = _folder_ids(list(by_file.values()))
    available = [s for s in SPLITS if any((e["split"] or FOLDER_DEFAULT_SPLIT) == s for e in by_file.values())]
    wanted = _check_splits(splits, available, "folder")
    items: Dict[str, List[VideoItem]] = {s: [] for s in wanted}
    for vid, entry in zip(ids, by_file.values()):
        split = entry["split"] or FOLDER_DEFAULT_SPLIT
        if split in items:
            items[split].append(VideoItem(vid, split, entry["path"], tuple(entry["captions"]),
                                          entry["rel"] if entry["rel"] is not None else entry["value"]))
    unlisted = tuple(rel for rel in index.files()
                     if os.path.realpath(os.path.join(root, *rel.split("/"))) not in by_file)
    if unlisted:
        logger.warning("%d video files under %s are not in %s, so not preprocessed (first: %s); the manifest lists "
                       "them under 'unlisted'", len(unlisted), root, os.path.basename(path), unlisted[0])
    return items, duplicates, unlisted, path


def _uncaptioned_folder(root: str, index: "_VideoIndex", splits: Optional[Sequence[str]]
                        ) -> Dict[str, List[VideoItem]]:
    """Every video under ``root``, without captions, in the test split: a library to index and search."""
    rels = index.files()
    if not rels:
        raise InputError(f"no captions file and no video files under {root}: add videos (and captions.csv, "
                         f"video,caption[,split], to train or evaluate), or pass --captions FILE")
    wanted = _check_splits(splits, (FOLDER_DEFAULT_SPLIT,), "folder (no captions file)")
    entries = [{"value": rel, "rel": rel} for rel in rels]
    logger.warning("no %s in %s: indexing its %d videos without captions (split %s) for fda embed and fda search; "
                   "fda train and fda eval need captions", " or ".join(FOLDER_CAPTIONS), root, len(rels),
                   FOLDER_DEFAULT_SPLIT)
    out = [VideoItem(vid, FOLDER_DEFAULT_SPLIT, os.path.realpath(os.path.join(root, *rel.split("/"))), (), rel)
           for vid, rel in zip(_folder_ids(entries), rels)]
    return {s: out for s in wanted}


def _folder_ids(entries: Sequence[Dict[str, Any]]) -> List[str]:
    """One id per video: the row's value without its video extension, or, where two different files would share
    that id (``x.mp4`` and ``x.mkv``), the file name with its extension."""
    ids = [_folder_video_id(e["value"]) for e in entries]
    counts: Dict[str, int] = {}
    for vid in ids:
        counts[vid] = counts.get(vid, 0) + 1
    out = []
    for vid, entry in zip(ids, entries):
        if counts[vid] > 1:
            full = entry["rel"] if entry["rel"] is not None else entry["value"]
            logger.warning("%s: %d listed files would all be video %r; this one is video %r", full, counts[vid], vid,
                           full)
            vid = full
        out.append(vid)
    return out


def _folder_locate(root: str, index: _VideoIndex, value: str, vid: str) -> Optional[str]:
    """Relative path of the file a captions row names: the exact file (whatever its kind, so that a FIFO gets an
    honest reason later), else by stem (in its subfolder if given)."""
    exact = os.path.join(root, value)
    if os.path.exists(exact) and not os.path.isdir(exact):
        return os.path.relpath(exact, root).replace(os.sep, "/")
    subdir, stem = os.path.dirname(vid), os.path.basename(vid)
    return index.lookup(stem, subdir if subdir else None)


# --------------------------------------------------------------------------------------------------------------
# The layout table


@dataclass(frozen=True)
class LoadRequest:
    """What a layout's loader is asked for: the splits (None: all), the MSR-VTT training list, a folder's captions
    file (None: the one at the root)."""

    splits: Optional[Sequence[str]]
    msrvtt_train: str = "9k"
    captions: Optional[str] = None


@dataclass(frozen=True)
class Loaded:
    """What a layout's loader found: items per split; for ``folder`` also the exact duplicate caption rows dropped,
    the video files the captions file does not list, and the captions file read."""

    items: Dict[str, List[VideoItem]]
    duplicates: int = 0
    unlisted: Tuple[str, ...] = ()
    captions_file: Optional[str] = None


@dataclass(frozen=True)
class Layout:
    """One dataset layout (a ``--layout`` choice).

    Attributes:
        name: the ``--layout`` value.
        markers: ``root -> annotation file names found`` (empty: not this layout); :func:`detect_layout` reads them.
        hint: the files that mark the layout, for the message when none is found.
        load: ``(root, request, files) -> Loaded``; appends every annotation file it reads to ``files``.
        splits: the splits the layout can have.
        official_counts: published videos per split (``"train-9k"`` for a split that depends on ``--msrvtt-train``);
            a different count is logged, not an error (subsets are legitimate).
    """

    name: str
    markers: Callable[[str], List[str]]
    hint: str
    load: Callable[[str, LoadRequest, List[str]], Loaded]
    splits: Tuple[str, ...]
    official_counts: Mapping[str, int] = field(default_factory=dict)

    def official_count(self, split: str, msrvtt_train: str = "9k") -> Optional[int]:
        """The published size of ``split``, if any."""
        return self.official_counts.get(f"{split}-{msrvtt_train}", self.official_counts.get(split))


def _msrvtt(root: str, request: LoadRequest, files: List[str]) -> Loaded:
    return Loaded(_load_msrvtt(root, request.msrvtt_train, request.splits, files))


def _loader(fn: Callable[[str, Optional[Sequence[str]], List[str]], Dict[str, List[VideoItem]]]
            ) -> Callable[[str, LoadRequest, List[str]], Loaded]:
    """A loader of a layout that reads only its root and splits."""
    return functools.partial(_split_loader, fn)


def _split_loader(fn: Callable[..., Dict[str, List[VideoItem]]], root: str, request: LoadRequest,
                  files: List[str]) -> Loaded:
    return Loaded(fn(root, request.splits, files))


def _folder(root: str, request: LoadRequest, files: List[str]) -> Loaded:
    return Loaded(*_load_folder(root, request.captions, request.splits, files))


# Official split sizes (DATASETS.md); activitynet, didemo and lsmdc as the retrieval papers usually quote them (not
# checked against the released files here): only logged.
LAYOUT_TABLE: Mapping[str, Layout] = MappingProxyType({entry.name: entry for entry in (
    Layout("msrvtt", _msrvtt_markers, "MSRVTT_data.json/MSRVTT_*.csv", _msrvtt, ("train", "test"),
           {"train-9k": 9000, "train-7k": 7010, "test": 1000}),
    Layout("msvd", _msvd_markers, MSVD_CAPTIONS, _loader(_load_msvd), tuple(MSVD_LISTS),
           {"train": 1200, "val": 100, "test": 670}),
    Layout("activitynet", _activitynet_markers, "train_ids.json/val_ids.json/val_1.json",
           _loader(_load_activitynet), tuple(ANET_IDS), {"train": 10009, "test": 4917}),
    Layout("didemo", _didemo_markers, "*_data.json", _loader(_load_didemo), tuple(DIDEMO_DATA),
           {"train": 8395, "val": 1065, "test": 1004}),
    Layout("lsmdc", _lsmdc_markers, "LSMDC16_*.csv", _loader(_load_lsmdc), tuple(LSMDC_CSV),
           {"train": 101079, "val": 7408, "test": 1000}),
    Layout("folder", _folder_markers, "captions.csv/.tsv/.jsonl", _folder, SPLITS),
)})
"""Every ``--layout``, keyed by its name (the keys are :data:`fda.config.LAYOUTS`, in that order)."""
