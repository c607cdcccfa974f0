"""CLI plumbing shared by every stage's __main__: quiet TensorFlow, and bad input as one line and exit 2.

Every `__main__` ends with `quiet_tensorflow()` then `raise SystemExit(run(main))`."""

import atexit
import os
import re
import sys
import threading

from common.errors import InputError, RunError

# TensorFlow's C++ notices: absl's banner, INFO and WARNING lines (some printed before TF_CPP_MIN_LOG_LEVEL
# applies), and three harmless ERROR-level ones: CUDA failing on a machine without a GPU, the CUDA builds'
# "Unable to register cuDNN/cuFFT/cuBLAS factory", and oneDNN falling back to Eigen for a data type (first use
# of some ops); and Python TensorFlow's retracing notice, which several models predicting in one process (an
# ensemble's members) set off by tracing each its own function. Every other line on stderr passes through,
# TensorFlow's other errors and warnings included.
TF_NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\n"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] [^\n]*\n"
    rb"|E\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] (failed call to cuInit|Unable to register cu\w+ factory"
    rb"|oneDNN supports \w+ only on platforms with)[^\n]*\n"
    rb"|WARNING:tensorflow:\d+ out of the last \d+ calls to [^\n]* triggered tf\.function retracing[^\n]*\n")
TF_NOISE_START = re.compile(rb"WARNING: All log|WARNING:tensorflow:|[IWE]\d{4} ")


def quiet_tensorflow() -> None:
    """Keep TensorFlow's chatter (TF_NOISE) off the terminal; call it before TensorFlow is imported.

    Some of those lines are printed before TensorFlow reads TF_CPP_MIN_LOG_LEVEL, so the process's stderr
    (file descriptor 2) goes through a pipe whose reader drops them and passes everything else on at once
    (progress bars included). Calling it again does nothing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if getattr(quiet_tensorflow, "pump", None) is not None:
        return
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    terminal = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pass_on, args=(read_end, terminal), name="stderr-filter", daemon=True)
    pump.start()
    quiet_tensorflow.pump = pump

    def restore():  # at exit: put the real stderr back, which ends the pipe, and let the reader finish
        sys.stderr.flush()
        os.dup2(terminal, 2)
        pump.join(timeout=5)

    atexit.register(restore)


def _pass_on(read_end: int, terminal: int) -> None:
    """Copy the pipe to the terminal without TF_NOISE; a partial line waits only if it may start a noise line."""
    pending = b""
    while chunk := os.read(read_end, 1 << 16):
        pending += chunk
        whole = pending.rfind(b"\n") + 1
        out, pending = TF_NOISE.sub(b"", pending[:whole]), pending[whole:]
        start = TF_NOISE_START.search(pending)
        cut = len(pending) if start is None else start.start()
        out, pending = out + pending[:cut], pending[cut:]
        if out:
            os.write(terminal, out)
    if pending:
        os.write(terminal, pending)
    os.close(read_end)


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
