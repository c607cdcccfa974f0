#!/usr/bin/env bash
# The project's test command: installs what it needs into .venv, then runs ruff and pytest.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONHASHSEED=0
.venv/bin/python -m ruff check .
.venv/bin/python -m pytest "$@"
