#!/usr/bin/env bash
# A venv with olah, a HuggingFace-hub-compatible server that serves local git repos, for tests/test_hub_server.py.
# Its own venv: olah 0.5.4 pulls fastapi-utils, which pins psutil < 6 (ours: psutil 7), so it does not install
# cleanly beside the project's packages.
#
#   bash tests/setup_hub_server.sh /opt/olah-venv
#   FEWSHOT_HUB_SERVER_PYTHON=/opt/olah-venv/bin/python .venv/bin/python -m pytest tests/test_hub_server.py
#
# ~20 s, ~40 MB.
set -euo pipefail
VENV=${1:?usage: $0 VENV_DIR}
OLAH_VERSION=${OLAH_VERSION:-0.5.4}
PY=${PYTHON:-python3}
CHECK='import olah.server, sys; from importlib.metadata import version; print("olah", version("olah")); sys.exit(version("olah") != sys.argv[1])'
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9  # one build at a time (.ci/run starts one early, beside the install): a second waits, then finds it built
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" "$OLAH_VERSION" >/dev/null 2>&1; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q "olah==$OLAH_VERSION"
"$VENV/bin/python" -c "$CHECK" "$OLAH_VERSION"
