#!/usr/bin/env bash
# The Python venv of tests/interop (aiortc, websockets), made only when missing or when
# requirements.txt changed. Needs PyPI once; the tests then run offline.
set -euo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
venv=$dir/.venv
stamp=$venv/installed
if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/requirements.txt"; then
  exit 0
fi
echo "Setting up $venv (aiortc for the interop tests)"
rm -rf "$venv"
# Debian's python3 (python3-venv, .ci/deps.sh test), not whatever python3 is first on PATH.
/usr/bin/python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt"
cp "$dir/requirements.txt" "$stamp"
