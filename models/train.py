"""Train a model of the zoo from two feature stores, with checkpoints, resume and early stopping.

The run folder gets model.keras (the best epoch by validation GAP), card.json, history.csv and
training.png; checkpoints/ holds one folder per kept epoch while training and is removed at the end.
"""

import csv
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import keras

from common.card import Card
from common.errors import InputError
from common.files import atomic_path, digest, write_json_atomic, write_text_atomic
from features.store import Store
from models import distill, zoo
from models.batches import StoreBatches
from models.inference import store_scores

HISTORY_COLUMNS = ("epoch", "loss", "val_gap", "val_hit_at_one", "val_perr", "lr", "seconds")
DEFAULT_FRAMES = 32  # frames sampled per video (training: random; validation and prediction: evenly spaced)


@dataclass
class TrainOptions:
    """How to train (the model's own shape lives in the zoo config)."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float | None = None  # Adam's rate in epoch 1 (None: the model's own, models.zoo)
    lr_decay: float = 0.9  # exponential decay per epoch: lr_e = learning_rate * lr_decay**e
    frames: int | None = None  # frame-level models: frames sampled per video (None: DEFAULT_FRAMES)
    seed: int = 0
    patience: int = 3  # stop after this many epochs without a better validation GAP
    clipnorm: float = 1.0  # gradient-norm clipping, as the starter code does
    teacher: str | None = None  # distillation: a model folder whose scores mix into the targets (models.distill)
    teacher_weight: float = distill.TEACHER_WEIGHT  # the teacher's share of the targets
    transfer: str | None = None  # distillation: a store whose videos join the training, the teacher's scores as targets


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


# ---------------------------------------------------------------- inputs and configuration


def open_stores(name: str, train_dir, validate_dir) -> tuple[Store, Store]:
    """Open both stores and refuse, before any training, what cannot work for model `name`."""
    level = zoo.spec(name).level
    stores = Store(train_dir), Store(validate_dir)
    for path, store in zip((train_dir, validate_dir), stores, strict=True):
        if level == "frame" and store.level != "frame":
            raise InputError(path, f"a {store.level}-level store, but model {name} needs frame-level "
                                   "features")
        if not store.has_labels:
            raise InputError(path, "the store has no labels, so it cannot train or validate a model")
        if len(store) == 0:
            raise InputError(path, "the store holds no videos")
    if stores[0].num_classes != stores[1].num_classes:
        raise InputError(validate_dir, f"{stores[1].num_classes} classes, but the training store "
                                       f"{train_dir} has {stores[0].num_classes}")
    return stores


def resolve_config(name: str, model_config: dict | None, options: TrainOptions, train_dir,
                   validate_dir) -> dict:
    """The full configuration written to the card: the zoo config with defaults filled in, training, and the
    inputs it read by SHA-256 (the stores' manifests, the teacher's model.keras: a rebuilt one is another
    input)."""
    model = dataclasses.asdict(zoo.make_config(name, model_config))
    training = dataclasses.asdict(options)
    training["frames"] = (options.frames or DEFAULT_FRAMES) if zoo.spec(name).level == "frame" else None
    training["train"] = str(Path(train_dir).resolve())
    training["validate"] = str(Path(validate_dir).resolve())
    for key in ("teacher", "transfer"):
        training[key] = str(Path(training[key]).resolve()) if training[key] else None
    inputs = {key: digest(Path(folder) / "manifest.json") for key, folder in (("train", train_dir),
                                                                              ("validate", validate_dir))}
    if options.teacher:  # a retrained teacher or a rebuilt transfer store is another input too
        inputs["teacher"] = digest(Path(options.teacher) / "model.keras")
    if options.transfer:
        inputs["transfer"] = digest(Path(options.transfer) / "manifest.json")
    return json.loads(json.dumps({"model": model, "training": training, "inputs": inputs}))


def fingerprint(config: dict) -> str:
    """A digest of the configuration (stores included): what a checkpoint must match to resume."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def up_to_date(out: Path, config: dict) -> bool:
    """The run folder's card has this configuration (inputs included) and model.keras is the complete file
    it describes: its recorded size, and every member of the zip archive passes its CRC check."""
    model_file, card_file = out / "model.keras", out / "card.json"
    try:
        card = Card.load(card_file)
        with zipfile.ZipFile(model_file) as archive:
            intact = archive.testzip() is None
    except (InputError, OSError, zipfile.BadZipFile):
        return False
    return card.config == config and model_file.stat().st_size == card.file_bytes and intact


def check_options(options: TrainOptions) -> None:
    """Refuse, before anything is read, options that cannot train (a negative rate trains to GAP 0)."""
    for flag, value in (("--epochs", options.epochs), ("--batch-size", options.batch_size),
                        ("--patience", options.patience), ("--frames", options.frames)):
        if value is not None and value < 1:
            raise InputError(flag, f"must be at least 1, not {value}")
    rate = options.learning_rate
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise InputError("--learning-rate", f"must be a positive number, not {rate}")


def compile_model(model: keras.Model, options: TrainOptions) -> None:
    """Adam on binary cross-entropy, taking the starter code's steps.

    Keras averages the loss over the C classes where the starter sums it, so every gradient is C times
    smaller. Adam ignores the loss scale except through its epsilon and the clip norm, and Keras' epsilon
    (1e-7) then swamps the kernels' gradients (benchmarks/RESULTS.md, development measurements). Dividing
    the starter's epsilon (1e-8) and clip norm by C restores its steps exactly (the L2 penalties are
    divided by C for the same reason: models.heads.l2_penalty)."""
    classes = model.output_shape[-1]
    optimizer = keras.optimizers.Adam(learning_rate=options.learning_rate, epsilon=1e-8 / classes,
                                      clipnorm=options.clipnorm / classes)
    model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy())


# ---------------------------------------------------------------- validation and callbacks


class Validate(keras.callbacks.Callback):
    """After every epoch: the epoch's training seconds, then validation GAP, Hit@1 and PERR into the logs."""

    def __init__(self, store: Store, level: str, frames: int | None, batch_size: int):
        super().__init__()
        self.store, self.level, self.frames, self.batch_size = store, level, frames, batch_size
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.perf_counter() - self.started
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        scores = store_scores(self.model, self.store, self.level, self.frames, max(self.batch_size, 256))
        logs["val_gap"], logs["val_hit_at_one"], logs["val_perr"] = scores.gap, scores.hit_at_one, scores.perr


class Checkpoint(keras.callbacks.Callback):
    """Record the epoch, track the best one (early stopping) and save a resumable checkpoint folder."""

    def __init__(self, folder: Path, state: CheckpointState, patience: int, best_weights=None):
        super().__init__()
        self.folder, self.state, self.patience = folder, state, patience
        self.best_weights = best_weights

    def on_epoch_end(self, epoch, logs=None):
        state = self.state
        row = {"epoch": epoch + 1, **{k: float(logs[k]) for k in HISTORY_COLUMNS[1:]}}
        state.history.append(row)
        state.epoch = epoch + 1
        if row["val_gap"] > state.best_gap or not state.best_epoch:  # (the first epoch even if GAP is NaN)
            state.best_gap, state.best_epoch, state.stale = row["val_gap"], epoch + 1, 0
            self.best_weights = self.model.get_weights()
        else:
            state.stale += 1
            if state.stale >= self.patience:
                state.stopped = self.model.stop_training = True
        save_checkpoint(self.folder, self.model, state)
        stop = f"; no better GAP in {state.stale} epochs: stopping early" if state.stopped else ""
        print(f"epoch {epoch + 1}: best validation GAP {state.best_gap:.4f} (epoch {state.best_epoch}){stop}",
              flush=True)


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


def load_checkpoint(folder: Path, digest: str):
    """(model with optimizer state, CheckpointState, best weights) of the last checkpoint, or None when
    there is none for this configuration and these inputs (then the old checkpoints are removed)."""
    dirs = checkpoint_dirs(folder)
    if not dirs:
        return None
    state = CheckpointState(**json.loads((dirs[-1] / "state.json").read_text()))
    if state.fingerprint != digest:
        print(f"{folder}: checkpoints of another configuration or other inputs; starting over")
        shutil.rmtree(folder)
        return None
    model = keras.models.load_model(dirs[-1] / "model.keras")
    best = folder / f"epoch-{state.best_epoch:04d}" / "model.keras"
    best_weights = keras.models.load_model(best, compile=False).get_weights() if state.best_epoch else None
    return model, state, best_weights


# ---------------------------------------------------------------- outputs


def write_history(path: Path, history: list[dict]) -> None:
    lines = [",".join(HISTORY_COLUMNS)]
    lines += [",".join(str(row[k]) for k in HISTORY_COLUMNS) for row in history]
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_csv_history(path) -> list[dict]:
    """history.csv back as one dict of floats per epoch (epoch as int)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in rows]


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


def save_final_model(path: Path, name: str, num_classes: int, model_config: dict, weights) -> keras.Model:
    """Save the best weights in a fresh, uncompiled model: model.keras without optimizer state."""
    model = zoo.build(name, num_classes, model_config)
    model.set_weights(weights)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return model


# ---------------------------------------------------------------- the whole run


def train(name: str, train_dir, validate_dir, out, options: TrainOptions | None = None,
          model_config: dict | None = None, callbacks=(), verbose: int | str = "auto") -> Card:
    """Train model `name` and write the run folder `out`; re-running continues from its last checkpoint,
    or says "up to date" when `out` already holds this training on these inputs. Returns the card."""
    options = options or TrainOptions()
    if options.learning_rate is None:
        options = dataclasses.replace(options, learning_rate=zoo.spec(name).learning_rate)
    check_options(options)
    out = Path(out)
    train_store, validate_store = open_stores(name, train_dir, validate_dir)
    if options.transfer and not options.teacher:
        raise InputError("--transfer", "needs --teacher: its videos train on the teacher's scores")
    teacher = distill.open_teacher(options.teacher, train_store, options.teacher_weight, options.transfer,
                                   zoo.spec(name).level) if options.teacher else None
    config = resolve_config(name, model_config, options, train_dir, validate_dir)
    level, frames = zoo.MODELS[name].level, config["training"]["frames"]
    if up_to_date(out, config):
        print(f"{out}: up to date")
        return Card.load(out / "card.json")

    folder = out / "checkpoints"
    digest = fingerprint(config)
    resumed = load_checkpoint(folder, digest)
    if resumed:
        model, state, best_weights = resumed
        print(f"{out}: resuming from the checkpoint of epoch {state.epoch} of {options.epochs}")
    else:
        keras.utils.set_random_seed(options.seed)
        model = zoo.build(name, train_store.num_classes, config["model"])
        compile_model(model, options)
        state = CheckpointState(0, 0, -1.0, 0, False, [], digest)
        best_weights = None
    print(f"training {name} ({model.count_params():,} parameters) on {len(train_store):,} videos, "
          f"validating on {len(validate_store):,}" + (f", {frames} frames per video" if frames else "")
          + (f"; distilled from {teacher.folder} (targets {teacher.weight:g} teacher)" if teacher else "")
          + (f", with {len(teacher.transfer):,} transfer videos" if teacher and teacher.transfer else ""))

    checkpoint = Checkpoint(folder, state, options.patience, best_weights)
    if state.epoch < options.epochs and not state.stopped:
        videos, targets = train_store, None
        if teacher:  # scored once (the file is named for this training, so a resume reuses it)
            videos, targets = distill.training_targets(teacher, train_store, folder / f"teacher-{digest[:16]}.npy")
        keras.utils.set_random_seed(options.seed + state.epoch)
        batches = StoreBatches(videos, level, options.batch_size, frames, shuffle=True,
                               seed=options.seed, epoch=state.epoch, targets=targets)
        # The starter code's exponential decay, per epoch; a function of the epoch alone, so a resume needs no state.
        schedule = keras.callbacks.LearningRateScheduler(lambda e: options.learning_rate * options.lr_decay**e)
        steps = [schedule,
                 Validate(validate_store, level, frames, options.batch_size), checkpoint, *callbacks]
        if verbose == "auto":
            verbose = 1 if sys.stdout.isatty() else 2
        # shuffle=False: StoreBatches shuffles itself, from (seed, epoch), so that a resume replays it.
        model.fit(batches, epochs=options.epochs, initial_epoch=state.epoch, callbacks=steps, verbose=verbose,
                  shuffle=False)

    final = save_final_model(out / "model.keras", name, train_store.num_classes, config["model"],
                             checkpoint.best_weights)
    history = state.history
    best = history[state.best_epoch - 1]
    trained = len(train_store) + (len(teacher.transfer) if teacher and teacher.transfer else 0)  # per epoch
    train_seconds = sum(row["seconds"] for row in history)
    write_history(out / "history.csv", history)
    plot_history(out / "training.png", history, state.best_epoch, f"{out.name} ({name})")
    card = Card(
        run=out.name, model=name, level=level, parameters=int(final.count_params()),
        file_bytes=(out / "model.keras").stat().st_size, num_classes=train_store.num_classes,
        train_videos=len(train_store), epochs=len(history), best_epoch=state.best_epoch,
        train_seconds=round(train_seconds, 3),
        train_videos_per_second=round(trained * len(history) / max(train_seconds, 1e-9), 2),
        validation={"gap": best["val_gap"], "hit_at_one": best["val_hit_at_one"], "perr": best["val_perr"]},
        config=config, created=Card.now(), teacher=teacher.describe() if teacher else None,
    )
    card.save(out / "card.json")
    shutil.rmtree(folder, ignore_errors=True)
    print(f"{out}: best epoch {state.best_epoch} of {len(history)}, validation GAP {best['val_gap']:.4f}, "
          f"Hit@1 {best['val_hit_at_one']:.4f}, PERR {best['val_perr']:.4f}; "
          f"{card.parameters:,} parameters, {card.file_bytes / 1e6:.1f} MB")
    return card
