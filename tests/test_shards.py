"""fda.shards: the manifest loader's errors, the sample reader (handler, meta-only), MaskConfig in the sample json."""

import io
import json
import os
import tarfile
from typing import List

import numpy as np
import pytest
import webdataset as wds

from fda.config import MaskConfig, PreprocessConfig
from fda.errors import InputError
from fda.shards.manifest import filled_splits, load_manifest, load_split
from fda.shards.reader import decode_sample, iter_samples, unreadable_shard
from fda.options import flat_fields
from fda.shards.schema import MANIFEST, mask_from_json, mask_json, shard_name, shown_mask, write_json_atomic
from fda.shards.writer import ShardWriter, encode_frame, encode_mask, pack_sample, sample_members

FRAMES, SIZE = 3, 16


def _members(key: str, mask: MaskConfig = PreprocessConfig(".").mask, jpeg: bytes = b""):
    rng = np.random.default_rng(len(key))
    frames = rng.integers(0, 255, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    jpegs = [jpeg or encode_frame(f, 90) for f in frames]
    masks = [encode_mask(np.eye(SIZE, dtype=np.uint8)) for _ in range(FRAMES)]
    meta = {"video_id": key, "indices": list(range(FRAMES)), "mask": {**mask_json(mask), "coverage": [0.1] * FRAMES}}
    return sample_members(key, meta, [f"caption of {key}"], jpegs, masks)


def _shard_set(root: str, keys: List[str], split: str = "train") -> str:
    """A one-shard split in the layout fda preprocess writes (manifest counts included)."""
    os.makedirs(root, exist_ok=True)
    with ShardWriter(os.path.join(root, shard_name(split, 0))) as writer:
        for key in keys:
            writer.write(_members(key))
    write_json_atomic(os.path.join(root, MANIFEST), {"splits": {split: {"frames": FRAMES, "size": SIZE, "shards": [
        {"name": shard_name(split, 0), "samples": len(keys), "captions": len(keys)}]}}, "config": {}})
    return root


# ---------------------------------------------------------------------------------------------------------------
# The manifest

def test_load_split_errors(tmp_path):
    shards = _shard_set(str(tmp_path / "set"), ["a", "b"])
    with pytest.raises(InputError, match="does not exist"):
        load_split(str(tmp_path / "nope"), "train")
    with pytest.raises(InputError, match="no manifest.json"):
        load_split(str(tmp_path), "train")
    with pytest.raises(InputError, match="no 'val' split"):
        load_split(shards, "val")
    empty = tmp_path / "empty"
    empty.mkdir()
    write_json_atomic(str(empty / MANIFEST), {"splits": {"train": {"shards": [{"name": "x.tar", "samples": 0}]}}})
    with pytest.raises(InputError, match="no samples"):
        load_split(str(empty), "train")


def test_load_split_describes_the_split_and_names_a_missing_shard(tmp_path):
    shards = _shard_set(str(tmp_path / "set"), ["a", "b", "c"])
    info = load_split(shards, "train")
    assert (info.frames, info.size, info.videos, info.captions) == (FRAMES, SIZE, 3, 3)
    assert info.urls == [os.path.join(shards, "train-000000.tar")]
    assert filled_splits(load_manifest(shards)) == ["train"]
    os.remove(info.urls[0])
    with pytest.raises(InputError, match=r"^1 shard\(s\) of split 'train' listed in the manifest are missing"):
        load_split(shards, "train")
    with pytest.raises(InputError, match=r"has no manifest.json: not a finished shard set"):
        load_manifest(str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# The reader

def test_reader_groups_samples_as_webdataset_does(tmp_path):
    shards = _shard_set(str(tmp_path / "set"), ["a", "b"])
    url = os.path.join(shards, "train-000000.tar")
    ours = list(iter_samples([url]))
    theirs = list(wds.DataPipeline(wds.SimpleShardList([url]), wds.tarfile_to_samples()))
    assert ours == theirs and [s["__key__"] for s in ours] == ["a", "b"]
    decoded = list(iter_samples([url], decode=True))
    assert [d["key"] for d in decoded] == ["a", "b"] and decoded[0]["frames"].shape == (FRAMES, SIZE, SIZE, 3)


def test_meta_only_reads_no_image_members(tmp_path):
    shards = _shard_set(str(tmp_path / "set"), ["a", "b"])
    samples = list(iter_samples([os.path.join(shards, "train-000000.tar")], meta_only=True))
    assert [set(s) for s in samples] == [{"__key__", "__url__", "json"}] * 2
    assert [json.loads(s["json"])["video_id"] for s in samples] == ["a", "b"]


def test_a_corrupt_member_goes_to_the_handler(tmp_path):
    path = str(tmp_path / "train-000000.tar")
    with ShardWriter(path) as writer:
        writer.write(_members("good"))
        writer.write(_members("bad", jpeg=b"not a jpeg"))
        writer.write(_members("last"))
    with pytest.raises(InputError, match="sample bad: member f00.jpg is not a readable image"):
        list(iter_samples([path], decode=True))
    seen: List[Exception] = []

    def skip(exn: Exception) -> bool:
        seen.append(exn)
        return True

    assert [s["key"] for s in iter_samples([path], decode=True, handler=skip)] == ["good", "last"]
    assert len(seen) == 1 and "sample bad" in str(seen[0])


def test_a_truncated_shard_is_one_line_naming_it(tmp_path):
    shards = _shard_set(str(tmp_path / "set"), ["a", "b", "c"])
    url = os.path.join(shards, "train-000000.tar")
    data = open(url, "rb").read()
    with open(url, "wb") as f:
        f.write(data[:len(data) // 2 + 100])
    with pytest.raises(Exception):
        list(iter_samples([url]))
    with pytest.raises(InputError, match=r"^shard .*train-000000\.tar is corrupt or unreadable \(") as err:
        list(iter_samples([url], handler=unreadable_shard))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# Mask parameters

@pytest.mark.parametrize("options", [{}, {"camera_motion": "compensate", "normalize_brightness": True},
                                     {"tau": 0.0, "kernel": 0, "min_area": 0, "empty_mask": "zero",
                                      "diff_mode": "sampled", "normalize_brightness": True}])
def test_mask_params_round_trip_through_a_sample_json(tmp_path, options):
    params = PreprocessConfig(".", mask=MaskConfig(**options)).mask
    path = str(tmp_path / "train-000000.tar")
    with ShardWriter(path) as writer:
        writer.write(_members("clip", params))
    (sample,) = iter_samples([path], decode=True)
    assert mask_from_json(sample["meta"]["mask"]) == params
    shown = {k: getattr(params, k) for k in ("tau", "kernel", "min_area", "empty_mask", "diff_mode")}
    shown.update({k: v for k, v in options.items() if k in ("camera_motion", "normalize_brightness")})
    assert shown_mask(sample["meta"]["mask"]) == shown  # reports show how the masks were made, robust options too
    # the same from a manifest's config
    assert shown_mask(flat_fields(PreprocessConfig(".", mask=MaskConfig(**options)))) == shown


def test_mask_record_writes_the_robust_options_only_when_on():
    plain = PreprocessConfig(".").mask
    assert list(mask_json(plain)) == ["tau", "kernel", "min_area", "empty_mask", "diff_mode", "rule"]
    robust = PreprocessConfig(".", mask=MaskConfig(camera_motion="compensate", normalize_brightness=True)).mask
    assert list(mask_json(robust))[-2:] == ["camera_motion", "normalize_brightness"] and robust.robust
    assert not plain.robust
    with pytest.raises(InputError, match="mask record without tau"):
        mask_from_json({"kernel": 3, "min_area": 16, "empty_mask": "full", "diff_mode": "adjacent"})


def test_decode_sample_of_what_the_encoders_wrote(tmp_path):
    members = dict(_members("k"))
    raw = {"__key__": "k", **{name.split(".", 1)[1]: data for name, data in members.items()}}
    sample = decode_sample(raw)
    assert sample["masks"].shape == (FRAMES, SIZE, SIZE) and set(np.unique(sample["masks"])) == {0, 255}
    assert sample["captions"] == ["caption of k"]


@pytest.mark.parametrize("sizes", [[], [0], [1, 511, 512, 513], [10_000, 3, 20_480]])
def test_packed_samples_make_the_tar_that_tarfile_writes(tmp_path, sizes):
    # Workers pack samples (pack_sample) and the shard's writer appends them; the file must equal what tarfile
    # writes for the same members (headers, padding, end-of-archive blocks, record size) byte for byte.
    rng = np.random.default_rng(len(sizes))
    samples = [[(f"k{s}.json", b"{}"), (f"k{s}.f00.jpg", rng.integers(0, 256, n, dtype=np.uint8).tobytes())]
               for s, n in enumerate(sizes)]
    with ShardWriter(str(tmp_path / "a.tar")) as writer:
        for i, members in enumerate(samples):
            if i % 2:
                writer.write(members)
            else:
                writer.write_packed(pack_sample(members))
    ref = io.BytesIO()
    with tarfile.open(fileobj=ref, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for members in samples:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o444, "fda", "fda"
                tar.addfile(info, io.BytesIO(data))
    assert (tmp_path / "a.tar").read_bytes() == ref.getvalue()
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert [m.size for m in tar.getmembers()] == [n for s in samples for n in (2, len(s[1][1]))]


def test_sample_keys_fit_a_ustar_member_name_and_stay_as_they_were(tmp_path):
    from fda.shards.schema import MAX_KEY, sample_key

    assert sample_key("video0") == "video0" and sample_key("-4wsuPCjDBc_5_15") == "-4wsuPCjDBc_5_15"
    # an id that was given a digest before keeps exactly that key (shards of earlier runs stay byte-identical)
    assert sample_key("holiday clip.2019 part one") == "holiday_clip_2019_part_one_" + sample_key(
        "holiday clip.2019 part one")[-10:]
    long_ids = ["a" * 87, "b" * 300, "very long name " * 12, "x.y" * 40]
    keys = [sample_key(v) for v in long_ids]
    assert all(len(k) <= MAX_KEY for k in keys) and len(set(keys)) == len(keys)
    assert sample_key("a" * MAX_KEY) == "a" * MAX_KEY  # safe ids up to the limit are kept
    with ShardWriter(str(tmp_path / "k.tar")) as writer:  # every member name of such a sample fits the header
        for key in keys:
            writer.write(_members(key))
    assert len(list(iter_samples([str(tmp_path / "k.tar")]))) == len(keys)
