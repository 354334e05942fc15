"""What streaming a shard set from a URL costs the training loader: the same pipeline from a folder, from a local
HTTP server (stdlib, loopback) and from a local S3 server (moto, loopback, s3fs), in interleaved rounds.

Loopback has no network latency or bandwidth limit, so this measures fda's side of remote reading (fsspec, aiohttp
or s3fs, the retrying reader, the bytes copied once more), not a real network.

Usage: ``.venv/bin/python benchmarks/bench_remote.py [--videos 64] [--size 224] [--frames 12] [--batches 12]``
Prints markdown (paste it into BENCHMARKS.md).
"""

import argparse
import functools
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from bench_loader import shard_rate
from bench_train import make_shards

from fda.shards.manifest import load_split


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(folder: str) -> str:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=os.path.dirname(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}/{os.path.basename(folder)}/"


def _s3(folder: str) -> str:
    """Upload the set to a local moto S3 server; returns its ``s3://`` URL (or '' without moto/s3fs)."""
    try:
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError:
        return ""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"})
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("bench")
    for name in os.listdir(folder):
        fs.put_file(os.path.join(folder, name), f"bench/set/{name}")
    return "s3://bench/set/"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="fda-bench-remote-")
    folder = make_shards(work, args.videos, args.size, args.frames)
    where = {"folder": folder, "http (stdlib server, loopback)": _serve(folder)}
    s3 = _s3(folder)
    if s3:
        where["s3 (moto server, loopback)"] = s3
    rates = {name: [] for name in where}
    for _ in range(args.rounds):  # interleaved: drift on a shared machine hits every source alike
        for name, shards in where.items():
            rates[name].append(shard_rate(load_split(shards, "train"), args.batch_size, args.batches, rounds=1))
    size = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder) if n.endswith(".tar"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.videos} videos, {args.frames} frames at {args.size} px ({size / 2 ** 20:.0f} MiB of tars), "
          f"batch {args.batch_size}, {args.batches} batches after the first, median of {args.rounds} interleaved "
          f"rounds, one process\n")
    print("| source | samples/s | vs folder |")
    print("|---|---|---|")
    base = statistics.median(rates["folder"])
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.1f} | {100 * med / base:.0f}% |")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
