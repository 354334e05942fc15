#!/usr/bin/env bash
# The test command: install everything (scripts/bootstrap.sh), then run the test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k masks
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q "$@"
