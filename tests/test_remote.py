"""Shard sets at a URL: train, eval and embed read a real local HTTP server (stdlib, started here on a free port),
give the folder's numbers, retry a dropped connection, and skip (train) or refuse (eval) a shard that is gone."""

import functools
import json
import os
import shutil
import socket
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Iterator

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fda.cli import cli
from fda.errors import InputError
from fda.shards.location import Location, RetryingReader, is_url, recorded
from fda.shards.manifest import load_split, manifest_sha256

TRAIN = ["--model", "fda-tiny", "--pretrained", "none", "--batch-size", "3", "--loader-workers", "0", "--lr", "1e-3",
         "--val-split", "none", "--no-tensorboard", "--save-every", "2"]
EVAL = ["--decode-threads", "0", "--device", "cpu"]


class FaultyHandler(SimpleHTTPRequestHandler):
    """Serves a folder; ``faults[path]`` makes one file misbehave: ``"404"``, ``"drop"`` (always cut mid-file) or
    ``"drop-once"`` (cut the first time only). ``hits`` counts GETs per path."""

    faults: Dict[str, str] = {}
    hits: Dict[str, int] = {}

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        fault = self.faults.get(self.path)
        if fault == "404":
            self.send_error(404)
            return
        if fault == "drop" or (fault == "drop-once" and self.hits[self.path] == 1):
            with open(self.translate_path(self.path), "rb") as f:
                data = f.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])  # half the tar, then the connection goes
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> str:
    """A synthetic MSR-VTT layout: train 3 videos x 5 captions, test 6 videos x 1 caption."""
    from fda.lab.scenes import make_msrvtt_demo

    data = str(tmp_path_factory.mktemp("remote") / "data")
    make_msrvtt_demo(data, n_train=3, n_test=6, size=(64, 48), seconds=1)
    return data


def preprocess_config(data: str, out: str):
    """Several shards per split (2 samples each): train 2 shards, test 3; 2/4 frames of 32 px."""
    from fda.config import PreprocessConfig

    return PreprocessConfig(data, out=out, size=32, frames_train=2, frames_test=4, workers=1, samples_per_shard=2)


@pytest.fixture(scope="module")
def remote_set(demo_data) -> str:
    """``demo_data`` preprocessed into a folder ``.../www/set`` (served by ``server``)."""
    from fda.pipeline.preprocess import run_preprocess

    out = os.path.join(os.path.dirname(demo_data), "www", "set")
    run_preprocess(preprocess_config(demo_data, out))
    return out


@pytest.fixture
def server(remote_set, monkeypatch) -> Iterator[str]:
    """``http://127.0.0.1:PORT/set/`` over ``remote_set``, on a free port; faults cleared per test."""
    monkeypatch.setenv("FDA_READ_RETRY_WAIT", "0.01")
    FaultyHandler.faults, FaultyHandler.hits = {}, {}
    handler = functools.partial(FaultyHandler, directory=os.path.dirname(remote_set))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/set/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def invoke(args):
    res = CliRunner().invoke(cli, args)
    return res


def _losses(run_dir: str):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [m["train/loss"] for m in map(json.loads, f) if "train/loss" in m]


def _eval_reports(tmp_path, ckpt: str, runs) -> list:
    """``fda eval`` of ``ckpt`` on each ``(shard location, report folder)``: the reports, each run checked."""
    reports = []
    for shards, out in runs:
        res = invoke(["eval", "--shards", shards, "--checkpoint", ckpt, "--out", str(tmp_path / out), *EVAL])
        assert res.exit_code == 0, res.output + res.stderr
        with open(tmp_path / out / "eval_test.json", encoding="utf-8") as f:
            reports.append(json.load(f))
    return reports


def test_locations_parse_folders_urls_patterns_and_pipes():
    assert Location.parse("shards").member("manifest.json") == os.path.join("shards", "manifest.json")
    url = Location.parse("s3://bucket/set/")
    assert url.remote and url.tars is None and url.member("train-000000.tar") == "s3://bucket/set/train-000000.tar"
    pattern = Location.parse("http://h/set/train-{000000..000002}.tar")
    assert pattern.tars == ("train-000000.tar", "train-000001.tar", "train-000002.tar")
    assert pattern.member("manifest.json") == "http://h/set/manifest.json"
    pipe = Location.parse("pipe:curl -s -f http://h/set/test-{000000..000001}.tar")
    assert pipe.member("manifest.json") == "pipe:curl -s -f http://h/set/manifest.json"
    assert not pipe.selects("train-000000.tar") and pipe.selects("test-000001.tar")
    with pytest.raises(InputError, match="names no .tar"):
        Location.parse("pipe:cat")
    assert recorded("s3://b/set/") == "s3://b/set/" and recorded("x") == os.path.abspath("x")
    assert is_url("pipe:cat x.tar") and not is_url("/data/shards")


def test_train_eval_embed_from_http_equal_the_folder_and_resume(remote_set, server, tmp_path):
    """The same steps from the folder and from its URL: same losses, same weights; eval and embed the same numbers;
    the URL run resumes from its URL, and the run records the URL as given."""
    local, remote = str(tmp_path / "local"), str(tmp_path / "remote")
    for shards, out in ((remote_set, local), (server, remote)):
        res = invoke(["train", shards, "--out", out, "--max-steps", "2", *TRAIN])
        assert res.exit_code == 0, res.output + res.stderr
    assert _losses(local) == _losses(remote) and len(_losses(local)) == 2
    assert FaultyHandler.hits["/set/manifest.json"] == 1  # the run read its manifest once (one GET)
    a = torch.load(os.path.join(local, "checkpoints", "step-0000002.pt"), weights_only=True)["state_dict"]
    b = torch.load(os.path.join(remote, "checkpoints", "step-0000002.pt"), weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(os.path.join(remote, "train_config.json"), encoding="utf-8") as f:
        assert json.load(f)["shards"]["dir"] == server  # as given, not made a local path

    res = invoke(["train", server, "--out", remote, "--max-steps", "3", *TRAIN])  # resume from the URL
    assert res.exit_code == 0, res.output + res.stderr
    assert "resum" in res.stderr.lower() and len(_losses(remote)) == 3

    ckpt = os.path.join(local, "checkpoints", "step-0000002.pt")
    reports = _eval_reports(tmp_path, ckpt, ((remote_set, "ev-local"), (server, "ev-remote")))
    assert reports[0]["metrics"] == reports[1]["metrics"] and reports[1]["counts"] == {"videos": 6, "captions": 6}
    assert reports[1]["shards"]["manifest_sha256"] == reports[0]["shards"]["manifest_sha256"] == manifest_sha256(
        remote_set)
    assert reports[1]["shards"]["dir"] == server
    res = invoke(["eval", "--run", remote, *EVAL])  # no --shards: the URL the run recorded
    assert res.exit_code == 0, res.output + res.stderr
    with open(os.path.join(remote, "eval_test.json"), encoding="utf-8") as f:
        assert json.load(f)["shards"]["dir"] == server

    for shards, out in ((remote_set, "emb-local"), (server, "emb-remote")):
        res = invoke(["embed", "--shards", shards, "--checkpoint", ckpt, "--out", str(tmp_path / out), *EVAL])
        assert res.exit_code == 0, res.output + res.stderr
    names = sorted(n for n in os.listdir(tmp_path / "emb-local") if n.endswith(".npy"))
    assert names and names == sorted(n for n in os.listdir(tmp_path / "emb-remote") if n.endswith(".npy"))
    for name in names:
        assert np.array_equal(np.load(tmp_path / "emb-local" / name), np.load(tmp_path / "emb-remote" / name))


def test_a_pattern_of_tar_names_selects_shards(remote_set, server, tmp_path):
    info = load_split(server + "test-{000000..000001}.tar", "test")
    assert [os.path.basename(u) for u in info.urls] == ["test-000000.tar", "test-000001.tar"] and info.videos == 4
    with pytest.raises(InputError, match="does not list"):
        load_split(server + "test-{000000..000009}.tar", "test")
    # the pattern names train tars only: validation (auto) finds no val/test split in it and is off
    res = invoke(["train", server + "train-{000000..000001}.tar", "--out", str(tmp_path / "r"), "--max-steps", "1",
                  *TRAIN, "--val-split", "auto"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "validation off" in res.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_a_pipe_command_reads_the_manifest_and_the_tars(remote_set, server):
    from fda.shards.reader import iter_samples

    info = load_split(f"pipe:curl -s -f {server}test-{{000000..000002}}.tar", "test")
    keys = [s["key"] for s in iter_samples(info.urls, decode=True)]
    folder = load_split(remote_set, "test")
    assert keys == [s["key"] for s in iter_samples(folder.urls, decode=True)] and len(keys) == 6


def test_a_dropped_connection_is_retried_and_gives_the_same_batches(remote_set, server, caplog):
    from fda.shards.loader import build_train_pipeline

    def keys(shards):
        pipeline = build_train_pipeline(load_split(shards, "train"), batch_size=3, seed=1)
        it = iter(pipeline)
        return [next(it)["keys"] for _ in range(4)]

    want = keys(remote_set)
    FaultyHandler.faults["/set/train-000000.tar"] = "drop-once"
    assert keys(server) == want
    assert FaultyHandler.hits["/set/train-000000.tar"] >= 2  # it was cut, then read again
    assert "retrying" in caplog.text and "skipping" not in caplog.text


def test_dataloader_workers_stream_from_the_url(remote_set, server):
    """Forked DataLoader workers open their shards over HTTP themselves (after the parent read the manifest)."""
    from torch.utils.data import DataLoader

    from fda.shards.loader import build_train_pipeline

    def keys(shards):
        pipeline = build_train_pipeline(load_split(shards, "train"), batch_size=1, seed=2, workers=2)
        it = iter(DataLoader(pipeline, batch_size=None, num_workers=2))
        return [next(it)["keys"] for _ in range(6)]

    assert keys(server) == keys(remote_set)
    assert FaultyHandler.hits.get("/set/train-000000.tar", 0) >= 1


def test_retrying_reader_gives_up_after_its_retries(remote_set, server):
    FaultyHandler.faults["/set/test-000000.tar"] = "drop"
    with pytest.raises(OSError, match="after 2 retries"):
        with RetryingReader(server + "test-000000.tar", retries=2, wait=0.0) as f:
            f.read()
    # 2 retries at the byte where it broke; a retry that got further before breaking starts a new count there
    assert 3 <= FaultyHandler.hits["/set/test-000000.tar"] <= 6


@pytest.mark.parametrize("fault", ["drop", "404"])
def test_a_lost_shard_is_skipped_by_training_and_stops_eval(remote_set, server, tmp_path, fault, caplog):
    """Training warns and goes on without the shard (as for a broken local one); eval stops with exit 3 naming it,
    because metrics over part of a test split are not the benchmark's."""
    FaultyHandler.faults["/set/train-000000.tar"] = fault
    FaultyHandler.faults["/set/test-000001.tar"] = fault
    res = invoke(["train", server, "--out", str(tmp_path / "run"), "--max-steps", "2",
                  *[a if a != "3" else "1" for a in TRAIN]])  # batch 1: the one readable train shard fills it
    assert res.exit_code == 0, res.output + res.stderr
    assert "skipping the rest of shard" in res.stderr and "train-000000.tar" in res.stderr
    res = invoke(["eval", "--shards", server, "--checkpoint", str(tmp_path / "run" / "checkpoints" / "step-0000002.pt"),
                  "--out", str(tmp_path / "ev"), *EVAL])
    assert res.exit_code == 3, res.output + res.stderr
    assert "test-000001.tar" in res.stderr and "every eval sample must count" in res.stderr
    assert len(res.stderr.strip().splitlines()[-1]) < 400 and "Traceback" not in res.stderr
    assert not os.path.exists(tmp_path / "ev" / "eval_test.json")


def test_preprocess_refuses_a_read_only_out(demo_data, tmp_path):
    res = invoke(["preprocess", demo_data, "--out", "http://127.0.0.1:9/set/", "--workers", "1"])
    assert res.exit_code == 2 and "read-only" in res.stderr and "Traceback" not in res.stderr


def test_a_url_without_a_manifest_is_a_one_line_input_error(server, tmp_path):
    res = invoke(["train", server.replace("/set/", "/nothing/"), "--out", str(tmp_path / "r"), *TRAIN])
    assert res.exit_code == 3 and "manifest.json" in res.stderr and "Traceback" not in res.stderr
    shutil.rmtree(tmp_path / "r", ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# s3:// against a local S3-compatible server (moto's server mode), s3fs as the client.

class UploadGate:
    """WSGI middleware in front of the S3 server: a PUT whose path ends with ``hold`` reads part of its body, then
    waits (the client is mid-upload) until ``release`` is set, and fails."""

    def __init__(self, app) -> None:
        self.app, self.hold = app, None
        self.reached, self.release = threading.Event(), threading.Event()
        self.puts: Dict[str, int] = {}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ["REQUEST_METHOD"] == "PUT":
            self.puts[path] = self.puts.get(path, 0) + 1
            if self.hold and path.endswith(self.hold):
                environ["wsgi.input"].read(512)
                self.reached.set()
                self.release.wait(120)
                start_response("500 Internal Server Error", [("Content-Length", "0")])
                return [b""]
        return self.app(environ, start_response)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """A local S3 server on a free port with bucket ``fda-test``; yields ``(gate, env)``, the env pointing s3fs at
    it (credentials are moto's dummies)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.moto_server.werkzeug_app")
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    gate = UploadGate(DomainDispatcherApplication(create_backend_app))
    httpd = make_server("127.0.0.1", 0, gate, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{httpd.server_port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "FDA_STAGING_DIR": str(tmp_path_factory.mktemp("staging")), "FDA_READ_RETRY_WAIT": "0.01"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        import s3fs

        s3fs.S3FileSystem(skip_instance_cache=True).mkdir("fda-test")
        yield gate, env
    httpd.shutdown()


@pytest.mark.slow
def test_s3_preprocess_killed_mid_upload_resumes_and_train_eval_read_it(demo_data, remote_set, s3_server, tmp_path):
    """fda preprocess --out s3://... is killed while a tar is half uploaded: nothing is listed; the rerun reuses the
    shards already there, redoes the rest, and lists only complete tars (the same bytes as a local run); then train
    (and its resume) and eval read s3:// and give the folder's numbers."""
    import signal
    import subprocess
    import sys

    import s3fs

    from fda.pipeline.preprocess import run_preprocess
    from fda.shards.schema import read_json

    gate, env = s3_server
    url = "s3://fda-test/set/"
    gate.hold = "/set/test-000001.tar"
    cmd = [sys.executable, "-m", "fda", "preprocess", demo_data, "--out", url, "--size", "32", "--frames-train", "2",
           "--frames-test", "4", "--workers", "1", "--samples-per-shard", "2"]
    proc = subprocess.Popen(cmd, env={**os.environ, **env, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while not gate.reached.wait(0.2):
            assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)  # mid-upload
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        gate.hold = None
        gate.release.set()
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    there = {os.path.basename(p) for p in fs.ls("fda-test/set")}
    assert "manifest.json" not in there and "test-000001.stats.json" not in there  # nothing listed, not finished
    finished = {n for n in there if n.endswith(".stats.json")}
    assert finished and all(n.replace(".stats.json", ".tar") in there for n in finished)

    puts_before = dict(gate.puts)
    result = run_preprocess(preprocess_config(demo_data, url))
    assert result.reused_shards == len(finished)
    for name in finished:  # a finished shard is not uploaded again
        assert gate.puts.get(f"/fda-test/set/{name.replace('.stats.json', '.tar')}") == puts_before.get(
            f"/fda-test/set/{name.replace('.stats.json', '.tar')}")
    fs.invalidate_cache()
    manifest = json.loads(fs.cat("fda-test/set/manifest.json"))
    listed = [s["name"] for split in manifest["splits"].values() for s in split["shards"]]
    assert sorted(listed) == sorted(n for n in os.listdir(remote_set) if n.endswith(".tar"))
    for name in listed:  # every listed tar is complete: the very bytes a local run writes
        with open(os.path.join(remote_set, name), "rb") as f:
            assert fs.cat(f"fda-test/set/{name}") == f.read(), name
        stats = json.loads(fs.cat(f"fda-test/set/{name.replace('.tar', '.stats.json')}"))
        assert stats["tar"] == read_json(os.path.join(remote_set, name.replace(".tar", ".stats.json")))["tar"]

    local, remote = str(tmp_path / "local"), str(tmp_path / "remote")
    for shards, out in ((remote_set, local), (url, remote)):
        res = invoke(["train", shards, "--out", out, "--max-steps", "2", *TRAIN])
        assert res.exit_code == 0, res.output + res.stderr
    assert _losses(local) == _losses(remote)
    res = invoke(["train", url, "--out", remote, "--max-steps", "3", *TRAIN])
    assert res.exit_code == 0 and len(_losses(remote)) == 3, res.output + res.stderr
    ckpt = os.path.join(local, "checkpoints", "step-0000002.pt")
    reports = _eval_reports(tmp_path, ckpt, ((remote_set, "ev-local"), (url, "ev-s3")))
    assert reports[0]["metrics"] == reports[1]["metrics"] and reports[1]["shards"]["dir"] == url


def test_visualize_and_masks_stats_read_the_url(remote_set, server, tmp_path):
    res = invoke(["visualize", server, "--out", str(tmp_path / "viz"), "-n", "2", "--tile", "32"])
    assert res.exit_code == 0, res.output + res.stderr
    assert server in (tmp_path / "viz" / "index.html").read_text(encoding="utf-8")
    stats = []
    for shards, out in ((remote_set, "local.png"), (server, "remote.png")):
        res = invoke(["masks-stats", shards, "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output + res.stderr
        with open(tmp_path / out.replace(".png", ".json"), encoding="utf-8") as f:
            stats.append([{k: v for k, v in row.items() if k != "shards_dir"} for row in json.load(f)])
    assert stats[0] == stats[1] and stats[0]


def test_val_from_train_holds_out_the_same_videos_from_a_url(remote_set, server, tmp_path):
    """--val-from-train reads the training shards through the location's opener: from the URL it holds out the
    same videos, trains on the same stream and records the location as given."""
    at = TRAIN.index("--val-split")
    args = TRAIN[:at] + TRAIN[at + 2:] + ["--val-from-train", "1", "--max-steps", "2"]
    runs = []
    for shards, out in ((remote_set, "vl"), (server, "vr")):
        res = invoke(["train", shards, "--out", str(tmp_path / out), *args])
        assert res.exit_code == 0, res.output + res.stderr
        with open(tmp_path / out / "train_config.json", encoding="utf-8") as f:
            runs.append(json.load(f))
    assert runs[0]["held_out"]["keys"] == runs[1]["held_out"]["keys"] and len(runs[0]["held_out"]["keys"]) == 1
    assert _losses(str(tmp_path / "vl")) == _losses(str(tmp_path / "vr"))
    with open(tmp_path / "vr" / "val-from-train" / "manifest.json", encoding="utf-8") as f:
        assert json.load(f)["held_out_from"] == server
