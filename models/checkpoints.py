"""A training run's checkpoints (checkpoints/epoch-NNNN/: model.keras with the optimizer state, and
state.json) and its history (history.csv, training.png): what a resume reads and what the run leaves."""

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import keras

from common.files import atomic_path, write_json_atomic, write_text_atomic

HISTORY_COLUMNS = ("epoch", "loss", "val_gap", "val_hit_at_one", "val_perr", "lr", "seconds")


@dataclass
class CheckpointState:
    """What a checkpoint folder holds besides model.keras (weights + optimizer state)."""

    epoch: int  # epochs completed
    best_epoch: int
    best_gap: float
    stale: int  # epochs since the best one
    stopped: bool  # early stopping fired
    history: list = field(default_factory=list)
    fingerprint: str = ""  # config + inputs; a checkpoint resumes only the same training
    steady_videos: int = 0  # videos trained, and their seconds, without each process's first step (tracing)
    steady_seconds: float = 0.0


def checkpoint_dirs(folder: Path) -> list[Path]:
    return sorted(folder.glob("epoch-[0-9][0-9][0-9][0-9]")) if folder.is_dir() else []


def save_checkpoint(folder: Path, model: keras.Model, state: CheckpointState) -> None:
    """Write checkpoints/epoch-NNNN/ atomically, then drop the folders that are neither last nor best."""
    with atomic_path(folder / f"epoch-{state.epoch:04d}") as tmp:
        tmp.mkdir()
        model.save(tmp / "model.keras")
        write_json_atomic(tmp / "state.json", dataclasses.asdict(state))
    keep = {f"epoch-{state.epoch:04d}", f"epoch-{state.best_epoch:04d}"}
    for old in checkpoint_dirs(folder):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def last_checkpoint(folder: Path, digest: str) -> tuple[Path, CheckpointState] | None:
    """(folder, state) of the last checkpoint of this configuration and these inputs, or None (checkpoints
    of another training are left for the chief's next checkpoint to replace)."""
    dirs = checkpoint_dirs(folder)
    if not dirs:
        return None
    state = CheckpointState(**json.loads((dirs[-1] / "state.json").read_text()))
    if state.fingerprint != digest:
        print(f"{folder}: checkpoints of another configuration or other inputs; starting over")
        return None
    return dirs[-1], state


def record_epoch(state: CheckpointState, row: dict, patience: int) -> bool:
    """Add the epoch's history row; True when it is the best so far. Sets `stopped` after `patience` epochs
    without a better validation GAP."""
    state.history.append(row)
    state.epoch = row["epoch"]
    if row["val_gap"] > state.best_gap or not state.best_epoch:  # (the first epoch even if GAP is NaN)
        state.best_gap, state.best_epoch, state.stale = row["val_gap"], row["epoch"], 0
        return True
    state.stale += 1
    state.stopped = state.stale >= patience
    return False


def write_history(path: Path, history: list[dict]) -> None:
    lines = [",".join(HISTORY_COLUMNS)]
    lines += [",".join(str(row[k]) for k in HISTORY_COLUMNS) for row in history]
    write_text_atomic(path, "\n".join(lines) + "\n")


def plot_history(path: Path, history: list[dict], best_epoch: int, title: str) -> None:
    """Training loss and validation metrics per epoch, the best epoch marked (PNG)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [row["loss"] for row in history], marker="o")
    left.set(xlabel="epoch", ylabel="training loss (binary cross-entropy)", title=title)
    for key, label in (("val_gap", "GAP@20"), ("val_hit_at_one", "Hit@1"), ("val_perr", "PERR")):
        right.plot(epochs, [row[key] for row in history], marker="o", label=label)
    right.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch {best_epoch}")
    right.set(xlabel="epoch", ylabel="validation", title="validation")
    right.legend()
    for axis in (left, right):
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole numbers
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
