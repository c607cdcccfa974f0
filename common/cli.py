"""CLI plumbing shared by every stage's __main__: bad input becomes one line on stderr and exit 2."""

import os
import sys

from common.errors import InputError, RunError


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (must run before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(main, argv=None) -> int:
    """Call `main(argv)`; turn InputError (and a missing file) into `error: ...` and exit status 2, and
    RunError into `error: ...` and exit status 1."""
    try:
        return main(argv) or 0
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except FileNotFoundError as err:
        print(f"error: {err.filename}: no such file or folder", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
