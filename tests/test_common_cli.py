"""A stage's terminal shows the project's lines only: TensorFlow's start-up lines are filtered out."""

import os
import re
import subprocess
import sys
import threading

from common.cli import _pass_on
from tests.conftest import REPO

STARTUP = re.compile(r"cuInit|cudart_stub|oneDNN|absl::InitializeLog|^[IWE]\d{4} ", re.M)


def test_stages_run_as_a_user_runs_them_print_no_tensorflow_start_up_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}  # as on a fresh machine

    def stage(*args):
        done = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert not STARTUP.search(done.stderr), done.stderr
        return done

    synth = stage("data", "synth", "--out", tmp_path / "train", "--level", "frame", "--split", "train",
                  "--videos", "3")
    convert = stage("features", "convert", "--shards", tmp_path / "train", "--out", tmp_path / "store")
    store = tmp_path / "store"
    stage("models", "train", "--model", "qrnn", "--train", store, "--validate", store, "--out", tmp_path / "qrnn",
          "--epochs", "1", "--frames", "4", "--config", "hidden=8")
    stage("submissions", "predict", "--model", tmp_path / "qrnn", "--features", store, "--out", tmp_path / "q.csv")
    stage("evaluation", "score", "--submission", tmp_path / "q.csv", "--truth", store)
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
              b"Attempting to register factory for plugin cuDNN when one has already been registered\n"
              b"E0000 00:00:1795855326.659462   15334 util.cc:131] oneDNN supports DT_INT64 only on platforms with "
              b"AVX-512. Falling back to the default Eigen-based implementation if present.\n")
    retracing = (b"WARNING:tensorflow:5 out of the last 33 calls to <function TensorFlowTrainer.make_predict_function."
                 b"<locals>.one_step_on_data_distributed at 0x7f0351a45080> triggered tf.function retracing. "
                 b"Tracing is expensive and the excessive number of tracings could be due to (1) creating\n")
    ours = b"\rconverting:  50%|#####     | 1/2\rconverting: 100%|##########| 2/2\n" + b"error: x: bad\n"
    real_error = b"E1128 07:29:33.123456    8365 some_op.cc:12] a real error\n"
    real_warning = b"WARNING:tensorflow:a warning that matters\n"
    assert filtered(noise + b"\rconverting:   0%|" + cuinit + retracing + ours + real_error + real_warning) == (
        b"\rconverting:   0%|" + ours + real_error + real_warning)
    assert filtered(b"a partial line without its newline") == b"a partial line without its newline"
