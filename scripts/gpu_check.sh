#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): loader throughput and data wait with 0/4/8 workers at 12 and 32 frames,
# peak memory, a 1,000 x 1,000 eval, GPU-vs-CPU fp32 losses. Writes gpu_check.json, prints one table.
# Usage: scripts/gpu_check.sh [--quick] [--out FILE] [any benchmarks/gpu_check.py option]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" benchmarks/gpu_check.py "$@"
