"""A stage's terminal shows the project's lines only: TensorFlow's start-up lines are filtered out."""

import os
import re
import subprocess
import sys
import threading

from common.cli import _pass_on
from tests.conftest import REPO

STARTUP = re.compile(r"cuInit|cudart_stub|oneDNN|absl::InitializeLog|^[IWE]\d{4} ", re.M)


def test_a_stage_run_as_a_user_runs_it_prints_no_tensorflow_start_up_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}  # as on a fresh machine
    synth = subprocess.run([sys.executable, "-m", "data", "synth", "--out", str(tmp_path / "train"), "--level",
                            "frame", "--split", "train", "--videos", "3"], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300)
    assert synth.returncode == 0, synth.stderr
    convert = subprocess.run([sys.executable, "-m", "features", "convert", "--shards", str(tmp_path / "train"),
                              "--out", str(tmp_path / "store")], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
    assert convert.returncode == 0, convert.stderr
    for result in (synth, convert):
        assert not STARTUP.search(result.stderr), result.stderr
    assert "wrote 3 frame-level videos" in synth.stdout and "3 videos from 1 shards" in convert.stdout
    assert "converting: 100%" in convert.stderr  # the progress bar still shows


def filtered(text: bytes) -> bytes:
    """What the stderr filter passes on for `text` written in one go."""
    read_end, write_end = os.pipe()
    out_read, out_write = os.pipe()
    pump = threading.Thread(target=_pass_on, args=(read_end, out_write))
    pump.start()
    os.write(write_end, text)
    os.close(write_end)
    pump.join(timeout=10)
    os.close(out_write)
    with os.fdopen(out_read, "rb") as out:
        return out.read()


def test_the_filter_drops_start_up_lines_and_keeps_everything_else():
    noise = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
             b"I0000 00:00:1795850969.785448    8330 port.cc:153] oneDNN custom operations are on.\n"
             b"I0000 00:00:1795850969.785761    8330 cudart_stub.cc:31] Could not find cuda drivers.\n")
    cuinit = (b"E0000 00:00:1795850976.985727    8365 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
              b"CUDA error\n"
              b"E0000 00:00:1732000000.100000    8365 cuda_dnn.cc:8310] Unable to register cuDNN factory: "
              b"Attempting to register factory for plugin cuDNN when one has already been registered\n")
    ours = b"\rconverting:  50%|#####     | 1/2\rconverting: 100%|##########| 2/2\n" + b"error: x: bad\n"
    real_error = b"E1128 07:29:33.123456    8365 some_op.cc:12] a real error\n"
    assert filtered(noise + b"\rconverting:   0%|" + cuinit + ours + real_error) == (
        b"\rconverting:   0%|" + ours + real_error)
    assert filtered(b"a partial line without its newline") == b"a partial line without its newline"
