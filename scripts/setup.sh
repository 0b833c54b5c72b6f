#!/usr/bin/env bash
# Creates .venv with the package, its test extras and Ray (the --executor ray path is tested); torch pinned through constraints.txt.
# Re-runs the install only when pyproject.toml or constraints.txt changed since the last setup.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
stamp=.venv/.setup-stamp
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    exit 0
fi
echo "[setup] creating .venv and installing the harness (torch pinned by constraints.txt) ..."
"$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test,ray]"
echo "$wanted" > "$stamp"
