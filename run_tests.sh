#!/usr/bin/env bash
# The project's test command: installs what it needs into .venv, then runs ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
export PYTHONHASHSEED=0
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest "$@"
