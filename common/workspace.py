"""Where a run's files live: `workspace/` by default, `--workdir DIR` or `YT8M_WORKDIR` otherwise."""

import os
from pathlib import Path

DEFAULT = "workspace"


def workdir(arg: str | None = None) -> Path:
    """The workspace folder: the explicit argument, else $YT8M_WORKDIR, else ./workspace."""
    return Path(arg or os.environ.get("YT8M_WORKDIR") or DEFAULT)
