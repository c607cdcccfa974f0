"""Install benchmark: what the TensorFlow build costs to install, and what its start-up prints on stderr.

    python -m benchmarks.bench_install   (downloads and installs requirements.txt twice into temporary
                                          virtual environments, without pip's cache; several minutes)

Variants: requirements.txt as it is (`tensorflow`, which carries the CUDA kernels) and the same with the CPU
build `tensorflow-cpu`. For each: install seconds (download included), the venv's size, TensorFlow's import
seconds, and the lines a process that imports TensorFlow and runs one op prints on stderr, with only
TF_CPP_MIN_LOG_LEVEL=2 set and with `common.cli.quiet_tensorflow` (what every stage runs).
"""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import write_section

REPO = Path(__file__).resolve().parents[1]
SNIPPET = "import tensorflow as tf; tf.constant(1.0) + 1.0"
QUIET = "from common.cli import quiet_tensorflow; quiet_tensorflow(); " + SNIPPET


def install(venv: Path, requirements: Path) -> float:
    """Create `venv` and install `requirements` into it without any cache; return the seconds it took."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", "--no-cache-dir",
                    "--disable-pip-version-check", "-r", str(requirements)], check=True)
    return time.perf_counter() - start


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def stderr_lines(venv: Path, code: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    done = subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True, text=True, env=env,
                          cwd=REPO, check=True)
    return done.stderr.splitlines()


def import_seconds(venv: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(venv / "bin/python"), "-c", "import tensorflow"], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    load = os.getloadavg()[0]
    requirements = (REPO / "requirements.txt").read_text()
    builds = ("tensorflow", "tensorflow-cpu")
    with tempfile.TemporaryDirectory(prefix="bench_install.") as tmp:
        tmp = Path(tmp)
        installed, imports, samples = {}, {build: [] for build in builds}, {}
        for build in builds:
            wanted = tmp / f"{build}.txt"
            wanted.write_text(re.sub(r"^tensorflow==", f"{build}==", requirements, flags=re.M))
            installed[build] = install(tmp / build, wanted)
            samples[build] = (stderr_lines(tmp / build, SNIPPET), stderr_lines(tmp / build, QUIET))
        for _ in range(5):  # interleaved, so that both see the same machine
            for build in builds:
                imports[build].append(import_seconds(tmp / build))
        rows = [f"| `{build}` | {installed[build]:.0f} | {size_mb(tmp / build):,.0f} | "
                f"{statistics.median(imports[build]):.1f} | {len(samples[build][0])} | {len(samples[build][1])} |"
                for build in builds]
        print("\n".join(rows), flush=True)
    body = "\n".join([
        f"requirements.txt installed into a new venv with `pip install --no-cache-dir` (download included), "
        f"once per TensorFlow build, one after the other (install seconds depend on the network); imports timed "
        f"5 times, interleaved. Load average at the start {load:.1f}, at the end {os.getloadavg()[0]:.1f}. "
        f"Start-up lines: stderr of `python -c \"{SNIPPET}\"` with TF_CPP_MIN_LOG_LEVEL=2, without and with "
        "`common.cli.quiet_tensorflow()` (which every `python -m <stage>` runs first).",
        "",
        "| TensorFlow build | install s | venv MB | import s (median of 5) | start-up lines, level 2 only | "
        "start-up lines, quiet_tensorflow |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "What each build prints with TF_CPP_MIN_LOG_LEVEL=2 alone (first 100 characters of each line):",
        "",
        *[line for build in builds for line in
          (f"`{build}`:", "", "```", *(text[:100] for text in samples[build][0]), "```", "")],
    ])
    write_section("Install and TensorFlow start-up", "python -m benchmarks.bench_install", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
