#!/usr/bin/env bash
# Create ./.venv (once) and install fda with everything it needs: Python packages and an ffmpeg binary
# (the imageio-ffmpeg wheel carries one, so no root and no system package is needed).
# Reruns are cheap: pip only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -c scripts/constraints.txt -e '.[test]'
# Fail early, with the reason, if the decoders are not usable.
.venv/bin/python - <<'PY'
import cv2, av, imageio_ffmpeg, open_clip, webdataset  # noqa: F401
print("fda environment ready: ffmpeg at", imageio_ffmpeg.get_ffmpeg_exe())
PY
