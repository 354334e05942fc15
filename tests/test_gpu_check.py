"""scripts/gpu_check.sh runs end to end (--quick: toy sizes, CPU here) and writes its JSON and table."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_largest_batch_doubles_until_one_does_not_fit():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        from gpu_check import largest_batch
    finally:
        sys.path.pop(0)
    assert largest_batch(lambda b: b <= 100, 16, 1024) == {
        "fits": 64, "capped": False, "tried": [{"batch_size": 16, "fits": True}, {"batch_size": 32, "fits": True},
                                               {"batch_size": 64, "fits": True}, {"batch_size": 128, "fits": False}]}
    assert largest_batch(lambda b: True, 64, 256)["fits"] == 256 and largest_batch(lambda b: True, 64, 256)["capped"]
    assert largest_batch(lambda b: False, 64, 256)["fits"] == 0


def test_gpu_check_quick_runs_end_to_end(tmp_path):
    out = str(tmp_path / "check.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"), "--quick", "--out", out,
                          "--work", str(tmp_path / "work")], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    with open(out, encoding="utf-8") as f:
        doc = json.load(f)
    rows = [(r["frames"], r["workers"]) for r in doc["train"]]
    assert rows == [(4, 0), (4, 1), (8, 0), (8, 1)]
    assert all(r["samples_per_s"] > 0 and 0 <= r["data_wait"] <= 1 and len(r["losses"]) == 2 for r in doc["train"])
    assert doc["eval"]["videos"] == doc["eval"]["captions"] == 4
    check = doc["loss_check"]
    assert check["agree"] and len(check["cpu_losses"]) == 2
    assert "| frames | batch | loader workers |" in res.stdout and "agree" in res.stdout
