"""Dataset layouts read from files written here in the exact official formats (DATASETS.md §1-2)."""

import json
import os
import pickle
import unicodedata

import pytest

from fda.errors import ConfigError, InputError
from fda.pipeline.datasets import Dataset, VideoItem, detect_layout, load_dataset


def _touch(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00")  # the loader only locates files; it never opens them


def _write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")


# ---------------------------------------------------------------------------------------------------------------
# MSR-VTT


TRAIN = ["video0", "video1", "video2", "video3"]
TEST = ["video9770", "video7020", "video8001"]  # deliberately not sorted: csv row order must survive


def _msrvtt(root, *, schema: str = "sentences", subdir: str = "", missing=(), extra_json=None):
    ann = root / subdir if subdir else root
    vids = TRAIN + TEST
    sentences = []
    for sen_id in range(3):
        for v in vids:
            if v == "video3":
                continue  # a train video the json has no caption for
            sentences.append({"caption": f"{v} caption {sen_id}", "video_id": v, "sen_id": sen_id})
    if schema == "sentences":
        data = {"info": {"contributor": "x"},
                "videos": [{"category": 9, "url": "https://www.youtube.com/watch?v=9lZi22qLlEo", "video_id": v,
                            "start time": 1.0, "end time": 2.0, "split": "train", "id": i} for i, v in enumerate(vids)],
                "sentences": sentences}
    else:
        data = {"annotations": [{"image_id": s["video_id"], "caption": s["caption"]} for s in sentences],
                "images": [{"id": v} for v in vids]}
    if extra_json is not None:
        data = extra_json
    _write(ann / "MSRVTT_data.json", json.dumps(data))
    _write(ann / "MSRVTT_train.9k.csv", "video_id\n" + "".join(f"{v}\n" for v in TRAIN))
    _write(ann / "MSRVTT_train.7k.csv", "video_id\n" + "".join(f"{v}\n" for v in TRAIN[:2]))
    rows = "".join(f"ret{i},msr{v[5:]},{v},\"a sentence, with a comma, for {v}\"\n" for i, v in enumerate(TEST))
    _write(ann / "MSRVTT_JSFUSION_test.csv", "key,vid_key,video_id,sentence\n" + rows)
    for v in vids:
        if v not in missing:
            _touch(root / "videos" / "all" / f"{v}.mp4")


@pytest.mark.parametrize("schema", ["sentences", "annotations"])
def test_msrvtt_both_json_schemas(tmp_path, schema):
    _msrvtt(tmp_path, schema=schema, missing=("video2",))
    assert detect_layout(str(tmp_path)) == "msrvtt"
    ds = load_dataset(str(tmp_path))
    assert isinstance(ds, Dataset) and ds.layout == "msrvtt" and ds.root == str(tmp_path)
    assert list(ds.items) == ["train", "test"]
    train = ds.items["train"]
    assert [it.video_id for it in train] == TRAIN
    assert train[0] == VideoItem("video0", "train", str(tmp_path / "videos" / "all" / "video0.mp4"),
                                 ("video0 caption 0", "video0 caption 1", "video0 caption 2"), "videos/all/video0.mp4")
    assert train[2].path is None and train[2].source == "video2.mp4" and train[2].captions  # missing file
    assert train[3].captions == () and train[3].path is not None  # no caption in the json
    test = ds.items["test"]
    assert [it.video_id for it in test] == TEST
    assert [it.captions for it in test] == [(f"a sentence, with a comma, for {v}",) for v in TEST]
    assert all(it.split == "test" and os.path.isfile(it.path) for it in test)


def test_msrvtt_7k_and_subfolder(tmp_path):
    _msrvtt(tmp_path, subdir="msrvtt_data")
    assert detect_layout(str(tmp_path)) == "msrvtt"
    ds = load_dataset(str(tmp_path), "msrvtt", msrvtt_train="7k", splits=["train"])
    assert list(ds.items) == ["train"]
    assert [it.video_id for it in ds.items["train"]] == TRAIN[:2]
    assert [it.video_id for it in load_dataset(str(tmp_path)).items["train"]] == TRAIN


def test_msrvtt_test_only_needs_no_json(tmp_path):
    _msrvtt(tmp_path)
    os.remove(tmp_path / "MSRVTT_data.json")
    ds = load_dataset(str(tmp_path), splits=("test",))
    assert [it.video_id for it in ds.items["test"]] == TEST
    with pytest.raises(InputError, match="MSRVTT_data.json not found"):
        load_dataset(str(tmp_path), splits=("train",))


def test_msrvtt_bad_files(tmp_path):
    _msrvtt(tmp_path, extra_json={"info": {}, "videos": []})
    with pytest.raises(InputError, match="neither 'sentences'.*nor 'annotations'"):
        load_dataset(str(tmp_path))
    _write(tmp_path / "MSRVTT_data.json", "{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_dataset(str(tmp_path))
    _msrvtt(tmp_path)
    _write(tmp_path / "MSRVTT_JSFUSION_test.csv", "key,vid,sentence\nret0,msr1,hi\n")
    with pytest.raises(InputError, match="MSRVTT_JSFUSION_test.csv: header must have columns video_id,sentence"):
        load_dataset(str(tmp_path))
    os.remove(tmp_path / "MSRVTT_JSFUSION_test.csv")
    with pytest.raises(InputError, match="MSRVTT_JSFUSION_test.csv not found.*--split") as err:
        load_dataset(str(tmp_path))
    assert "\n" not in str(err.value)


def test_msrvtt_has_no_val(tmp_path):
    _msrvtt(tmp_path)
    with pytest.raises(ConfigError, match="no 'val' split.*train, test"):
        load_dataset(str(tmp_path), splits=["val"])
    with pytest.raises(ConfigError, match="--split must be"):
        load_dataset(str(tmp_path), splits=["dev"])


def test_video_extension_preference(tmp_path):
    _msrvtt(tmp_path)
    _touch(tmp_path / "webm" / "video9770.webm")       # mp4 in videos/all wins over webm
    _touch(tmp_path / "a" / "video0.avi")
    _touch(tmp_path / "b" / "video0.WEBM")             # webm beats avi, extension case does not matter
    os.remove(tmp_path / "videos" / "all" / "video0.mp4")
    _touch(tmp_path / "x" / "video1.mkv")
    _touch(tmp_path / "y" / "video1.avi")               # avi < mkv alphabetically
    os.remove(tmp_path / "videos" / "all" / "video1.mp4")
    _touch(tmp_path / "videos" / "all" / "video2.txt")  # not a video
    os.remove(tmp_path / "videos" / "all" / "video2.mp4")
    ds = load_dataset(str(tmp_path))
    src = {it.video_id: it.source for items in ds.items.values() for it in items}
    assert src["video9770"] == "videos/all/video9770.mp4"
    assert src["video0"] == "b/video0.WEBM"
    assert src["video1"] == "y/video1.avi"
    assert src["video2"] == "video2.mp4"


# ---------------------------------------------------------------------------------------------------------------
# MSVD


def _msvd(root, *, captions=None):
    caps = captions if captions is not None else {
        "-4wsuPCjDBc_5_15": [["a", "squirrel", "is", "eating", "a", "peanut", "in", "it", "s", "shell"],
                             ["a", "squirrel", "eats"]],
        "bQJQGoJF7_k_162_169": [["a", "man", "cooks"]],
        "zzz_1_2": [["someone", "plays"]],
        "val_0_1": [["a", "cat"]],
    }
    (root / "msvd_data").mkdir(parents=True, exist_ok=True)
    with open(root / "msvd_data" / "raw-captions.pkl", "wb") as fh:
        pickle.dump(caps, fh)
    _write(root / "msvd_data" / "train_list.txt", "zzz_1_2\n-4wsuPCjDBc_5_15\n")
    _write(root / "msvd_data" / "val_list.txt", "val_0_1\n")
    _write(root / "msvd_data" / "test_list.txt", "bQJQGoJF7_k_162_169\nno_caption_3_4\n\n")
    for v in ("-4wsuPCjDBc_5_15", "bQJQGoJF7_k_162_169", "val_0_1", "no_caption_3_4"):
        _touch(root / "YouTubeClips" / f"{v}.avi")


def test_msvd(tmp_path):
    _msvd(tmp_path)
    assert detect_layout(str(tmp_path)) == "msvd"
    ds = load_dataset(str(tmp_path))
    assert ds.layout == "msvd" and list(ds.items) == ["train", "val", "test"]
    train = ds.items["train"]
    assert [it.video_id for it in train] == ["zzz_1_2", "-4wsuPCjDBc_5_15"]
    assert train[0].path is None and train[0].source == "zzz_1_2.avi" and train[0].captions == ("someone plays",)
    assert train[1].captions == ("a squirrel is eating a peanut in it s shell", "a squirrel eats")
    assert train[1].source == "YouTubeClips/-4wsuPCjDBc_5_15.avi"
    test = ds.items["test"]
    assert [it.video_id for it in test] == ["bQJQGoJF7_k_162_169", "no_caption_3_4"]
    assert test[1].captions == () and test[1].path is not None
    assert list(load_dataset(str(tmp_path), "msvd", splits=["test", "val"]).items) == ["val", "test"]


def test_msvd_refuses_code_in_pickle(tmp_path):
    _msvd(tmp_path)
    with open(tmp_path / "msvd_data" / "raw-captions.pkl", "wb") as fh:
        pickle.dump({"a": [os.path.join]}, fh)  # a global reference: must not be resolved
    with pytest.raises(InputError, match="raw-captions.pkl is not a readable caption pickle"):
        load_dataset(str(tmp_path))
    _msvd(tmp_path, captions={"a": [[1, 2]]})
    with pytest.raises(InputError, match="neither a token list nor a string"):
        load_dataset(str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# Folder of own videos


ODD = ["-starts-with-dash", "my clip ü", "plain"]


def _folder_videos(root):
    _touch(root / "-starts-with-dash.mp4")
    _touch(root / "sub dir" / "my clip ü.webm")
    _touch(root / "deep" / "er" / "plain.mov")


def test_folder_csv(tmp_path):
    _folder_videos(tmp_path)
    _write(tmp_path / "captions.csv",
           "video,caption,split\n"
           "-starts-with-dash.mp4,a dog runs,train\n"
           "my clip ü,\"a cat, sleeping\",\n"
           "-starts-with-dash.mp4,a dog is running,\n"
           "plain.mov,,val\n"
           "absent.mp4,nothing here,\n")
    assert detect_layout(str(tmp_path)) == "folder"
    ds = load_dataset(str(tmp_path))
    assert ds.layout == "folder" and list(ds.items) == ["train", "val", "test"]
    (dog,) = ds.items["train"]
    assert dog.video_id == "-starts-with-dash" and dog.captions == ("a dog runs", "a dog is running")
    assert dog.path == str(tmp_path / "-starts-with-dash.mp4") and dog.source == "-starts-with-dash.mp4"
    (plain,) = ds.items["val"]
    assert plain.captions == () and plain.source == "deep/er/plain.mov"
    cat, absent = ds.items["test"]  # rows without split go to test
    assert cat.video_id == "my clip ü" and cat.source == "sub dir/my clip ü.webm"
    assert cat.captions == ("a cat, sleeping",)
    assert absent.path is None and absent.source == "absent.mp4" and absent.captions == ("nothing here",)


def test_folder_jsonl_and_explicit_captions(tmp_path):
    _folder_videos(tmp_path)
    lines = [{"video": "my clip ü.webm", "caption": "first"},
             {"video": "plain", "caption": ["a", "b"], "split": "train"},
             {"video": "my clip ü", "caption": "second"}, {"video": "sub dir/my clip ü.webm", "caption": "third"},
             {"video": "deep/er/plain", "caption": "by stem inside a subfolder"},
             {"video": "caf\u00e9", "caption": "NFC name, NFD file"}]
    _touch(tmp_path / unicodedata.normalize("NFD", "caf\u00e9.mp4"))
    _write(tmp_path / "meta" / "caps.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    ds = load_dataset(str(tmp_path), captions=str(tmp_path / "meta" / "caps.jsonl"))
    assert ds.layout == "folder"
    # rows naming one file (by stem, by name, by subfolder path) are one video, with every caption
    (plain,) = ds.items["train"]
    assert (plain.video_id, plain.captions) == ("plain", ("a", "b", "by stem inside a subfolder"))
    assert plain.source == "deep/er/plain.mov"
    test = ds.items["test"]
    assert [(it.video_id, it.captions) for it in test][:1] == [("my clip ü", ("first", "second", "third"))]
    assert test[0].path == os.path.realpath(tmp_path / "sub dir" / "my clip ü.webm")
    assert len(test) == 2 and test[1].path is not None and os.path.isfile(test[1].path)
    # relative to the root works too, and split filtering
    ds = load_dataset(str(tmp_path), "folder", captions="meta/caps.jsonl", splits=["train"])
    assert list(ds.items) == ["train"]
    with pytest.raises(ConfigError, match="no 'val' split.*train, test"):
        load_dataset(str(tmp_path), "folder", captions="meta/caps.jsonl", splits=["val"])


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="cannot tell the layout.*--layout"):
        detect_layout(str(empty))
    with pytest.raises(InputError, match="no captions file and no video files under"):
        load_dataset(str(empty), "folder")
    _folder_videos(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_dataset(str(tmp_path), captions="nope.csv")
    _write(tmp_path / "captions.csv", "file,text\na,b\n")
    with pytest.raises(InputError, match=r"captions.csv line 1: the header must name comma-separated columns from "
                                         r"video, caption, split \(video,caption\[,split\]\), got unknown column "
                                         r"'file'"):
        load_dataset(str(tmp_path))
    _write(tmp_path / "captions.csv", "video,caption,split\na,b,training\n")
    with pytest.raises(InputError, match="line 2: split must be one of train, val, test"):
        load_dataset(str(tmp_path))
    _write(tmp_path / "captions.csv", "video,caption,split\na,b,train\na,c,test\n")
    with pytest.raises(InputError, match="a video belongs to one split"):
        load_dataset(str(tmp_path))
    _write(tmp_path / "captions.jsonl", '{"video": "a", "caption": "x"}\n{oops\n')
    with pytest.raises(InputError, match="captions.jsonl line 2: not valid JSON"):
        load_dataset(str(tmp_path), captions="captions.jsonl")
    _write(tmp_path / "c.txt", "x")
    with pytest.raises(ConfigError, match="--captions must be a .csv, .tsv or .jsonl"):
        load_dataset(str(tmp_path), captions="c.txt")


def test_folder_aliases_of_one_file_are_one_video(tmp_path):
    _touch(tmp_path / "a.mp4")
    _touch(tmp_path / "b.mp4")
    os.symlink(tmp_path / "b.mp4", tmp_path / "link.mp4")
    absolute = str(tmp_path / "a.mp4")
    _write(tmp_path / "captions.csv", f"video,caption,split\na.mp4,one,train\n{absolute},two,\n./a.mp4,one,\n"
                                      f"sub/../a,three,\nb.mp4,bee,test\nlink.mp4,linked,test\n")
    ds = load_dataset(str(tmp_path))
    (a,) = ds.items["train"]
    assert (a.video_id, a.captions, a.path) == ("a", ("one", "two", "three"), os.path.realpath(absolute))
    (b,) = ds.items["test"]
    assert b.video_id == "b" and b.captions == ("bee", "linked")
    assert ds.duplicate_captions == 1  # ./a.mp4,one repeats a.mp4,one
    assert ds.annotations == (os.path.realpath(tmp_path / "captions.csv"),)
    # the cross-split check sees through the alias
    _write(tmp_path / "captions.csv", f"video,caption,split\na.mp4,one,train\n{absolute},two,test\n")
    with pytest.raises(InputError, match=r"line 3: .* is in split 'test' here but 'train' at line 2 \(as 'a.mp4': "
                                         r"the same file\): a video belongs to one split"):
        load_dataset(str(tmp_path))


def test_folder_same_stem_files_get_their_file_names_as_ids(tmp_path):
    for name in ("x.mp4", "x.mkv", "y.mp4"):
        _touch(tmp_path / name)
    _write(tmp_path / "captions.csv", "video,caption\nx.mp4,mp4 one\nx.mkv,mkv one\ny,why\nx.mp4,mp4 two\n")
    ds = load_dataset(str(tmp_path))
    assert [(it.video_id, it.source, it.captions) for it in ds.items["test"]] == [
        ("x.mp4", "x.mp4", ("mp4 one", "mp4 two")), ("x.mkv", "x.mkv", ("mkv one",)), ("y", "y.mp4", ("why",))]


def test_folder_captions_files_jsonl_keys_and_odd_files(tmp_path):
    _touch(tmp_path / "a.mp4")
    _write(tmp_path / "captions.csv", "video,caption\na.mp4,from csv\na.mp4,from csv\n")
    _write(tmp_path / "captions.jsonl", '{"video": "a.mp4", "captions": ["one", "two", "one"]}\n'
                                        '{"video": "a.mp4", "caption": "three", "captions": ["four"]}\n')
    with pytest.raises(ConfigError, match=r"holds both captions.csv and captions.jsonl: pass --captions"):
        load_dataset(str(tmp_path))
    ds = load_dataset(str(tmp_path), captions="captions.jsonl")
    assert ds.items["test"][0].captions == ("one", "two", "three", "four") and ds.duplicate_captions == 1
    ds = load_dataset(str(tmp_path), captions="captions.csv")
    assert ds.items["test"][0].captions == ("from csv",) and ds.duplicate_captions == 1
    _write(tmp_path / "other.jsonl", '{"video": "a.mp4", "text": "wrong key"}\n')
    with pytest.raises(InputError, match=r"other.jsonl line 1: no 'caption' \(a string\) or 'captions' \(a list of "
                                         r"strings\) key, got keys 'text': rename the caption key"):
        load_dataset(str(tmp_path), captions="other.jsonl")
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(InputError, match=r"pipe.csv is a FIFO \(named pipe\), not a regular file"):
        load_dataset(str(tmp_path), captions="pipe.csv")
    os.remove(tmp_path / "captions.jsonl")
    os.remove(tmp_path / "captions.csv")
    os.mkfifo(tmp_path / "captions.csv")
    with pytest.raises(InputError, match=r"captions.csv is a FIFO \(named pipe\), not a regular file"):
        load_dataset(str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# Arguments and detection


def test_bad_arguments_and_roots(tmp_path):
    _msrvtt(tmp_path)
    with pytest.raises(ConfigError, match="--layout must be one of msrvtt, msvd, activitynet, didemo, lsmdc, folder, "
                                          "got 'kinetics'"):
        load_dataset(str(tmp_path), "kinetics")
    with pytest.raises(ConfigError, match="--msrvtt-train must be one of 9k, 7k"):
        load_dataset(str(tmp_path), msrvtt_train="10k")
    with pytest.raises(ConfigError, match="--captions applies to --layout folder only"):
        load_dataset(str(tmp_path), "msrvtt", captions="captions.csv")
    with pytest.raises(InputError, match="is not a folder"):
        load_dataset(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="is not a folder"):
        detect_layout(str(tmp_path / "nope"))
    _write(tmp_path / "captions.csv", "video,caption\nvideo0,x\n")
    with pytest.raises(ConfigError, match="several layouts.*--layout") as err:
        detect_layout(str(tmp_path))
    assert "\n" not in str(err.value)
    assert load_dataset(str(tmp_path), "msrvtt").layout == "msrvtt"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as err:
        load_dataset(str(empty))
    assert "\n" not in str(err.value) and "--layout" in str(err.value) and "MSRVTT_data.json" in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# ActivityNet Captions, DiDeMo, LSMDC (files as CLIP4Clip's dataloaders read them)


ANET = {  # the shape of train.json / val_1.json: raw sentences keep their leading and trailing spaces
    "v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 79.42]],
                      "sentences": ["A young woman is seen standing in a room and leads into her dancing.",
                                    " The girl dances around the room while the camera captures her movements.",
                                    " She continues dancing around the room and ends by laying on the floor."]},
    "v_ehGHCYKzyZ8": {"duration": 61.72, "timestamps": [[0, 61.72]], "sentences": ["A man plays a drum. "]},
    "v_nocaption0": {"duration": 10.0, "timestamps": [], "sentences": []},
}


def _activitynet(root, *, prefixed: bool):
    _write(root / "train_ids.json", json.dumps(["v_QOlSCBRmfWY", "v_nocaption0", "v_notinjson", "v_QOlSCBRmfWY"]))
    _write(root / "train.json", json.dumps({k: ANET[k] for k in ("v_QOlSCBRmfWY", "v_nocaption0")}))
    _write(root / "val_ids.json", json.dumps(["v_ehGHCYKzyZ8", "v_missingfile"]))
    _write(root / "val_1.json", json.dumps({"v_ehGHCYKzyZ8": ANET["v_ehGHCYKzyZ8"],
                                            "v_missingfile": {"duration": 5, "timestamps": [[0, 5]],
                                                              "sentences": ["Nobody is here."]}}))
    for vid in ("v_QOlSCBRmfWY", "v_nocaption0", "v_notinjson", "v_ehGHCYKzyZ8"):
        _touch(root / "videos" / f"{vid if prefixed else vid[2:]}.mp4")


@pytest.mark.parametrize("prefixed", [True, False])
def test_activitynet(tmp_path, prefixed):
    _activitynet(tmp_path, prefixed=prefixed)
    assert detect_layout(str(tmp_path)) == "activitynet"
    ds = load_dataset(str(tmp_path))
    assert ds.layout == "activitynet" and list(ds.items) == ["train", "test"]  # val_1 is the test split
    train = ds.items["train"]
    assert [it.video_id for it in train] == ["v_QOlSCBRmfWY", "v_nocaption0", "v_notinjson"]  # repeat dropped
    name = "v_QOlSCBRmfWY" if prefixed else "QOlSCBRmfWY"
    assert train[0].source == f"videos/{name}.mp4" and train[0].path == str(tmp_path / "videos" / f"{name}.mp4")
    assert train[0].captions == ("A young woman is seen standing in a room and leads into her dancing. The girl "
                                 "dances around the room while the camera captures her movements. She continues "
                                 "dancing around the room and ends by laying on the floor.",)  # one paragraph
    assert train[1].captions == () and train[2].captions == ()  # no sentences; not in train.json
    test = ds.items["test"]
    assert [(it.video_id, it.captions) for it in test] == [
        ("v_ehGHCYKzyZ8", ("A man plays a drum.",)), ("v_missingfile", ("Nobody is here.",))]
    assert test[1].path is None and test[1].source == "v_missingfile.mp4"
    assert all(it.window_end is None for items in ds.items.values() for it in items)
    with pytest.raises(ConfigError, match="activitynet dataset has no 'val' split"):
        load_dataset(str(tmp_path), splits=["val"])


def test_activitynet_bad_files(tmp_path):
    _activitynet(tmp_path, prefixed=True)
    _write(tmp_path / "val_1.json", json.dumps({"v_ehGHCYKzyZ8": {"sentences": "not a list"}}))
    with pytest.raises(InputError, match=r"val_1.json: v_ehGHCYKzyZ8.sentences must be a list of strings"):
        load_dataset(str(tmp_path))
    _write(tmp_path / "val_ids.json", json.dumps({"v_a": 1}))
    with pytest.raises(InputError, match=r"val_ids.json: expected a JSON list of video ids"):
        load_dataset(str(tmp_path), splits=["test"])
    os.remove(tmp_path / "train.json")
    with pytest.raises(InputError, match="train.json not found"):
        load_dataset(str(tmp_path), splits=["train"])


DIDEMO_VIDEOS = ["25811224@N05_4464006497_e3b39637a2.mov", "10015567@N08_3655084291_d8b58466fa.mp4",
                 "1234@N00_99_abc.avi"]


def _didemo(root):
    def entry(video, description, times):
        return {"annotation_id": 1, "description": description, "times": times, "video": video,
                "dl_link": "https://www.flickr.com/video_download.gne?id=x", "num_segments": 6}

    data = {"train": [entry(DIDEMO_VIDEOS[0], "the girl turns around", [[2, 2], [2, 2], [1, 2], [2, 2]]),
                      entry("not_listed.mp4", "ignored", [[0, 0]]),
                      entry(DIDEMO_VIDEOS[0], "  camera zooms in ", [[0, 1], [0, 1], [0, 0], [0, 1]])],
            "val": [entry(DIDEMO_VIDEOS[1], "a dog jumps", [[3, 3]])],
            "test": [entry(DIDEMO_VIDEOS[2], "a car passes", [[5, 5]])]}
    lists = {"train": [DIDEMO_VIDEOS[0]], "val": [DIDEMO_VIDEOS[1]], "test": [DIDEMO_VIDEOS[2], "gone@N1_2_3.mp4"]}
    for split in ("train", "val", "test"):
        _write(root / "didemo" / f"{split}_list.txt", "".join(f"{v}\n" for v in lists[split]))
        _write(root / "didemo" / f"{split}_data.json", json.dumps(data[split]))
    _touch(root / "videos" / DIDEMO_VIDEOS[0])
    _touch(root / "videos" / "25811224@N05_4464006497_e3b39637a2.mp4")  # a re-encoded copy: the exact name wins
    _touch(root / "videos" / "10015567@N08_3655084291_d8b58466fa.mp4")
    _touch(root / "videos" / "1234@N00_99_abc.mp4")  # listed as .avi, re-encoded to mp4: found by stem


def test_didemo(tmp_path):
    _didemo(tmp_path)
    assert detect_layout(str(tmp_path)) == "didemo"  # train_list.txt + test_list.txt alone would say msvd
    ds = load_dataset(str(tmp_path))
    assert ds.layout == "didemo" and list(ds.items) == ["train", "val", "test"]
    (train,) = ds.items["train"]
    assert train.video_id == DIDEMO_VIDEOS[0] and train.source == f"videos/{DIDEMO_VIDEOS[0]}"
    assert train.captions == ("the girl turns around camera zooms in",)  # descriptions in file order, one paragraph
    assert train.window_end == 30.0
    (val,) = ds.items["val"]
    assert val.captions == ("a dog jumps",) and val.source == f"videos/{DIDEMO_VIDEOS[1]}"
    found, gone = ds.items["test"]
    assert found.source == "videos/1234@N00_99_abc.mp4" and found.captions == ("a car passes",)
    assert gone.path is None and gone.source == "gone@N1_2_3.mp4" and gone.captions == ()
    assert all(it.window_end == 30.0 for items in ds.items.values() for it in items)


def test_didemo_bad_files(tmp_path):
    _didemo(tmp_path)
    _write(tmp_path / "didemo" / "test_data.json", json.dumps([{"video": DIDEMO_VIDEOS[2], "times": [[0, 0]]}]))
    with pytest.raises(InputError, match=r"test_data.json: entry 0 must be an object with string 'video' and "
                                         r"'description'"):
        load_dataset(str(tmp_path))
    _write(tmp_path / "didemo" / "test_data.json", "[")
    with pytest.raises(InputError, match="test_data.json is not valid JSON"):
        load_dataset(str(tmp_path))


LSMDC_ROWS = {
    "train": [("0001_American_Beauty_00.00.51.926-00.00.54.129", "SOMEONE sits at the table."),
              ("0001_American_Beauty_00.00.51.926-00.00.54.129", "He stares."),
              ("0002_As_Good_As_It_Gets_00.01.10.000-00.01.12.000", "SOMEONE opens the door.")],
    "val": [("1001_Flight_00.00.10.100-00.00.12.200", "A plane lands.")],
    "test": [("1010_TITANIC_00.41.32.072-00.41.40.196", "SOMEONE leans over the rail."),
             ("1010_TITANIC_00.42.00.000-00.42.05.000", "The ship sails on.")],
}


def _lsmdc(root):
    names = {"train": "LSMDC16_annos_training.csv", "val": "LSMDC16_annos_val.csv",
             "test": "LSMDC16_challenge_1000_publictect.csv"}
    for split, rows in LSMDC_ROWS.items():
        lines = "".join(f"{clip}\t00.00.51.926\t00.00.54.129\t00.00.51.000\t00.00.55.000\t{text}\n"
                        for clip, text in rows)
        _write(root / names[split], lines + "\n")
    for rows in LSMDC_ROWS.values():
        for clip, _ in rows:
            if clip != "1010_TITANIC_00.42.00.000-00.42.05.000":
                _touch(root / "avi" / clip.rsplit("_", 1)[0] / f"{clip}.avi")
    _touch(root / "elsewhere" / "0001_American_Beauty_00.00.51.926-00.00.54.129.avi")  # not its movie's folder


def test_lsmdc(tmp_path):
    _lsmdc(tmp_path)
    assert detect_layout(str(tmp_path)) == "lsmdc"
    ds = load_dataset(str(tmp_path))
    assert ds.layout == "lsmdc" and list(ds.items) == ["train", "val", "test"]
    beauty, good = ds.items["train"]
    assert beauty.video_id == "0001_American_Beauty_00.00.51.926-00.00.54.129"
    assert beauty.captions == ("SOMEONE sits at the table.", "He stares.")  # one caption per row
    assert beauty.source == "avi/0001_American_Beauty/0001_American_Beauty_00.00.51.926-00.00.54.129.avi"
    assert good.source.startswith("avi/0002_As_Good_As_It_Gets/")
    titanic, missing = ds.items["test"]
    assert titanic.captions == ("SOMEONE leans over the rail.",) and titanic.path is not None
    assert missing.path is None and missing.source == "1010_TITANIC/1010_TITANIC_00.42.00.000-00.42.05.000.avi"


def test_lsmdc_rows_must_have_six_tab_separated_fields(tmp_path):
    _lsmdc(tmp_path)
    _write(tmp_path / "LSMDC16_annos_val.csv", "1001_Flight_00.00.10.100-00.00.12.200,0,1,0,1,A plane lands.\n")
    with pytest.raises(InputError, match=r"LSMDC16_annos_val.csv line 1: expected 6 tab-separated fields \(clip_id, "
                                         r"start_aligned, .*sentence\), got 1") as err:
        load_dataset(str(tmp_path))
    assert "\n" not in str(err.value)
