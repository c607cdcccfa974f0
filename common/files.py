"""Atomic writes (output appears under its final name only when it is complete), and file digests."""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final, suffix: str = ""):
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds.

    Works for files and folders. A failure removes the temporary and leaves any old `final` untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    tmp_target = tmp / (final.name + suffix)
    try:
        yield tmp_target
        if tmp_target.is_dir() and final.is_dir():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp_target, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def digest(path) -> str:
    """SHA-256 of a file's bytes (hex): what skip rules compare to tell that an input or output is unchanged."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()
