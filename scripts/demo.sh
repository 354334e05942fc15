#!/usr/bin/env bash
# The main job end to end on a built-in demo set: install everything, then `fda demo`.
# Extra arguments go to `fda demo` (see `.venv/bin/fda demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/fda demo "$@"
