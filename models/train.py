"""Train a model of the zoo from two feature stores: checkpoints, resume and early stopping, in one process
or across machines (tf.distribute), in float32 or Keras mixed precision.

The run folder gets model.keras (the best epoch by validation GAP), card.json, history.csv and training.png;
checkpoints/ holds one folder per kept epoch while training and is removed at the end. With several workers
every worker runs the same command and only the chief (worker 0) writes the run folder.
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from common.card import Card
from common.errors import InputError, RunError
from common.files import atomic_path, digest
from features.store import Store
from models import distill, zoo
from models.batches import StoreBatches
from models.checkpoints import (
    CheckpointState,
    last_checkpoint,
    plot_history,
    record_epoch,
    save_checkpoint,
    write_history,
)
from models.heads import set_class_counts
from models.inference import store_scores
from models.optimizer import FusedAdam
from models.workers import LOST_WORKER, STRATEGIES, Workers, agree, make_workers

DEFAULT_FRAMES = 32  # frames sampled per video (training: random; validation and prediction: evenly spaced)
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclass
class TrainOptions:
    """How to train (the model's own shape lives in the zoo config)."""

    epochs: int = 10
    batch_size: int = 64  # the global batch: split across replicas
    learning_rate: float | None = None  # Adam's rate in epoch 1 (None: the model's own, models.zoo)
    lr_decay: float = 0.9  # exponential decay per epoch: lr_e = learning_rate * lr_decay**e
    frames: int | None = None  # frame-level models: frames sampled per video (None: DEFAULT_FRAMES)
    seed: int = 0
    patience: int = 3  # stop after this many epochs without a better validation GAP
    clipnorm: float | None = None  # Adam's per-variable gradient-norm clip (None: the model's own, models.zoo; 0: none)
    strategy: str = "default"  # tf.distribute: one device, the local devices ("mirrored"), TF_CONFIG's workers
    precision: str = "float32"  # Keras dtype policy: float32, mixed_bfloat16 (CPUs), mixed_float16 (GPUs)
    teacher: str | None = None  # distillation: a model folder whose scores mix into the targets (models.distill)
    teacher_weight: float = distill.TEACHER_WEIGHT  # the teacher's share of the targets
    transfer: str | None = None  # distillation: a store whose videos join the training, the teacher's scores as targets


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
        training["teacher_temperature"] = distill.TEACHER_TEMPERATURE
    else:  # distillation's settings belong to distilled runs: new defaults leave the other runs up to date
        del training["teacher_weight"]
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
    for flag, value, known in (("--strategy", options.strategy, STRATEGIES),
                               ("--precision", options.precision, PRECISIONS)):
        if value not in known:
            raise InputError(flag, f"must be one of {', '.join(known)}, not {value!r}")


def model_options(name: str, options: TrainOptions | None = None) -> TrainOptions:
    """`options` (default: TrainOptions()) with the fields left None for the model filled in from the
    registry: model `name`'s own learning rate and gradient clip (models.zoo)."""
    options = options or TrainOptions()
    spec = zoo.spec(name)
    return dataclasses.replace(options, learning_rate=spec.learning_rate if options.learning_rate is None
                               else options.learning_rate,
                               clipnorm=spec.clipnorm if options.clipnorm is None else options.clipnorm)


def compile_model(model: keras.Model, options: TrainOptions) -> None:
    """Adam on binary cross-entropy, taking the starter code's steps.

    Keras averages the loss over the C classes where the starter sums it, so every gradient is C times
    smaller. Adam ignores the loss scale except through its epsilon and the clip norm, and Keras' epsilon
    (1e-7) then swamps the kernels' gradients (benchmarks/RESULTS.md, development measurements). Dividing
    the starter's epsilon (1e-8) and clip norm by C restores its steps exactly (the L2 penalties are
    divided by C for the same reason: models.heads.l2_penalty). `options` as model_options fills them in:
    a clip norm of 0 clips nothing (the qrnn's own, models.zoo)."""
    classes = model.output_shape[-1]
    optimizer = FusedAdam(learning_rate=options.learning_rate, epsilon=1e-8 / classes,
                          clipnorm=options.clipnorm / classes if options.clipnorm else None)
    model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy())


# ---------------------------------------------------------------- precision and the training step


@contextlib.contextmanager
def dtype_policy(policy):
    """Keras' global dtype policy `policy` (a name such as "mixed_bfloat16", or a DTypePolicy) for the models
    and layers built or loaded inside the block, then the old one again."""
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def seed_states(model: keras.Model) -> list:
    """The state variables of the model's random-number generators (QRNN zoneout, dropout)."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def make_train_step(model: keras.Model, strategy: tf.distribute.Strategy, seed: int):
    """A tf.function that trains one global batch: every replica takes its share from the iterator and
    computes its part of the batch's mean loss and its gradients; Keras' optimizer all-reduces them (and
    scales the loss for float16). Returns the batch's loss."""
    optimizer = model.optimizer
    states = seed_states(model)
    cross_entropy = keras.losses.BinaryCrossentropy(reduction="sum")  # in float32 under every policy

    def replica_step(inputs, targets, videos, step):
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        for k, state in enumerate(states):  # random draws from (seed, step, replica): a resume replays them
            state.assign(tf.stack([(seed * 4096 + k) * 2**20 + replica, step * 16]))
        with tf.GradientTape() as tape:
            scores = model(inputs, training=True)
            loss = cross_entropy(targets, scores) / videos  # this share's part of the global batch's mean
            if model.losses:  # L2 penalties, counted once over all replicas
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(gradients, model.trainable_variables)
        return loss

    @tf.function
    def train_step(iterator, videos, step):
        inputs, targets = next(iterator)
        losses = strategy.run(replica_step, args=(inputs, targets, videos, step))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


# ---------------------------------------------------------------- outputs (checkpoints and history: models.checkpoints)


def save_final_model(path: Path, name: str, num_classes: int, model_config: dict, weights) -> keras.Model:
    """Save the best weights in a fresh, uncompiled model: model.keras without optimizer state."""
    model = zoo.build(name, num_classes, model_config)
    model.set_weights(weights)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return model


# ---------------------------------------------------------------- the whole run


def train(name: str, train_dir, validate_dir, out, options: TrainOptions | None = None,
          model_config: dict | None = None, after_epoch: Callable[[int], None] | None = None,
          verbose: int | str = "auto") -> Card | None:
    """Train model `name` and write the run folder `out`; re-running continues from its last checkpoint,
    or says "up to date" when `out` already holds this training on these inputs. Returns the card (None on
    a worker other than the chief). `after_epoch(epochs_done)` runs after each checkpoint; verbose=1 shows
    a progress bar ("auto": on a terminal)."""
    options = model_options(name, options)
    check_options(options)
    out = Path(out)
    train_store, validate_store = open_stores(name, train_dir, validate_dir)
    if options.transfer and not options.teacher:
        raise InputError("--transfer", "needs --teacher: its videos train on the teacher's scores")
    teacher = distill.open_teacher(options.teacher, train_store, options.teacher_weight, options.transfer,
                                   zoo.spec(name).level) if options.teacher else None
    config = resolve_config(name, model_config, options, train_dir, validate_dir)
    digest = fingerprint(config)
    workers = make_workers(options.strategy)
    try:
        return run(name, train_store, validate_store, out, options, config, digest, workers, teacher,
                   after_epoch, sys.stdout.isatty() if verbose == "auto" else verbose == 1)
    except LOST_WORKER as err:
        if workers.count == 1:
            raise
        lines = [line for line in str(err.message).splitlines() if line.strip()]
        reason = next((line for line in lines if "aborted by" in line), lines[0] if lines else "")
        raise RunError(f"{out}: {workers.name} lost contact with the other workers ({type(err).__name__}: "
                       f"{reason.strip()}); run the same command on every worker again to resume from the "
                       "last checkpoint") from None


def run(name, train_store, validate_store, out: Path, options: TrainOptions, config: dict, digest: str,
        workers: Workers, teacher: distill.Teacher | None, after_epoch, progress: bool) -> Card | None:
    """train() once the inputs are checked: resume or build, train the remaining epochs, write the outputs."""
    folder = out / "checkpoints"
    skip = up_to_date(out, config)
    resumed = None if skip else last_checkpoint(folder, digest)
    agree(workers, out, digest, -1 if skip else resumed[1].epoch if resumed else 0)
    if skip:
        print(f"{out}: up to date")
        return Card.load(out / "card.json")

    level, frames = zoo.spec(name).level, config["training"]["frames"]
    model, evaluator = build_models(name, train_store.num_classes, config, options, workers.strategy,
                                    resumed[0] / "model.keras" if resumed else None)
    if resumed:
        state = resumed[1]
        print(f"{out}: resuming from the checkpoint of epoch {state.epoch} of {options.epochs}")
        best = folder / f"epoch-{state.best_epoch:04d}" / "model.keras"
        best_weights = keras.models.load_model(best, compile=False).get_weights() if workers.chief else None
    else:  # the pace of each class's skip-path weights (models.heads.ClassPace; a checkpoint holds it)
        set_class_counts(model, np.bincount(train_store.labels_indices, minlength=train_store.num_classes))
        state, best_weights = CheckpointState(0, 0, -1.0, 0, False, [], digest), None
    replicas = workers.strategy.num_replicas_in_sync
    print(f"training {name} ({model.count_params():,} parameters) on {len(train_store):,} videos, "
          f"validating on {len(validate_store):,}" + (f", {frames} frames per video" if frames else "")
          + (f"; distilled from {teacher.folder} (targets {teacher.weight:g} teacher)" if teacher else "")
          + (f", with {len(teacher.transfer):,} transfer videos" if teacher and teacher.transfer else "")
          + (f"; {options.strategy}: {replicas} replicas" if options.strategy != "default" else "")
          + (f"; {options.precision}" if options.precision != "float32" else "")
          + (f"; {workers.name}" if workers.count > 1 else ""), flush=True)

    with contextlib.ExitStack() as stack:
        videos, targets = train_store, None
        if teacher:  # scored once into a file named for this training, so a resume reuses it (the chief's
            # is in the run folder; another worker writes nothing there and keeps its copy till the end)
            scores_dir = folder if workers.chief else Path(stack.enter_context(tempfile.TemporaryDirectory()))
            videos, targets = distill.training_targets(teacher, train_store,
                                                       scores_dir / f"teacher-{digest[:16]}.npy")
        train_step = make_train_step(model, workers.strategy, options.seed)
        traced = False  # the first step of a process traces the graph: its time is left out of the steady rate
        while state.epoch < options.epochs and not state.stopped:
            epoch = state.epoch
            model.optimizer.learning_rate = options.learning_rate * options.lr_decay**epoch  # starter's decay
            batches = StoreBatches(videos, level, options.batch_size, frames, shuffle=True, seed=options.seed,
                                   epoch=epoch, targets=targets)
            loss, seconds = train_epoch(train_step, batches, workers.strategy, state, traced, progress,
                                        f"epoch {epoch + 1}/{options.epochs}")
            traced = True
            evaluator.set_weights(model.get_weights())
            scores = store_scores(evaluator, validate_store, level, frames, max(options.batch_size, 256))
            row = {"epoch": epoch + 1, "loss": loss, "val_gap": scores.gap, "val_hit_at_one": scores.hit_at_one,
                   "val_perr": scores.perr, "seconds": seconds,
                   "lr": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))}
            if record_epoch(state, row, options.patience) and workers.chief:
                best_weights = model.get_weights()
            if workers.chief:
                save_checkpoint(folder, model, state)
            stop = f"; no better GAP in {state.stale} epochs: stopping early" if state.stopped else ""
            print(f"epoch {epoch + 1}: loss {loss:.4f}, {len(videos) / seconds:,.0f} videos/s; validation GAP "
                  f"{scores.gap:.4f}, Hit@1 {scores.hit_at_one:.4f}, PERR {scores.perr:.4f}; best GAP "
                  f"{state.best_gap:.4f} (epoch {state.best_epoch}){stop}", flush=True)
            if after_epoch:
                after_epoch(state.epoch)

    if not workers.chief:
        print(f"{workers.name}: done; the chief (worker 0) writes the run folder")
        return None
    return finish(name, out, train_store, config, options, state, best_weights, replicas, teacher)


def build_models(name: str, num_classes: int, config: dict, options: TrainOptions,
                 strategy: tf.distribute.Strategy, checkpoint: Path | None) -> tuple[keras.Model, keras.Model]:
    """(the compiled model to train, in the strategy's scope: from `checkpoint` or new; a plain copy of it
    for validation, whose weights are set before use), both in the options' precision."""
    with dtype_policy(options.precision):
        with strategy.scope():
            if checkpoint:
                model = keras.models.load_model(checkpoint)
            else:
                keras.utils.set_random_seed(options.seed)
                model = zoo.build(name, num_classes, config["model"])
                compile_model(model, options)
                model.optimizer.build(model.trainable_variables)
        return model, zoo.build(name, num_classes, config["model"])


def train_epoch(train_step, batches: StoreBatches, strategy: tf.distribute.Strategy, state: CheckpointState,
                traced: bool, progress: bool, title: str) -> tuple[float, float]:
    """One epoch of `batches`: (mean training loss, seconds). Adds the steps after the process's first to
    the state's steady videos and seconds."""
    iterator = iter(strategy.distribute_datasets_from_function(batches.dataset))
    total, started = 0.0, time.perf_counter()
    with tqdm(total=len(batches.store), unit="video", desc=title, disable=not progress, dynamic_ncols=True,
              file=sys.stdout) as bar:
        for i in range(len(batches)):
            videos = batches.size(i)
            step_started = time.perf_counter()
            loss = float(train_step(iterator, tf.constant(videos, tf.float32),
                                    tf.constant(batches.epoch * len(batches) + i, tf.int64)))
            if traced:
                state.steady_videos += videos
                state.steady_seconds += time.perf_counter() - step_started
            traced = True
            total += loss * videos
            bar.update(videos)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
    return total / len(batches.store), time.perf_counter() - started


def finish(name, out: Path, train_store, config: dict, options: TrainOptions, state: CheckpointState,
           best_weights, replicas: int, teacher: distill.Teacher | None) -> Card:
    """The chief's outputs: model.keras (best epoch), history.csv, training.png, card.json; no checkpoints."""
    with dtype_policy(options.precision):
        final = save_final_model(out / "model.keras", name, train_store.num_classes, config["model"],
                                 best_weights)
    history = state.history
    best = history[state.best_epoch - 1]
    per_epoch = len(train_store) + (len(teacher.transfer) if teacher and teacher.transfer else 0)
    train_seconds = sum(row["seconds"] for row in history)
    rate = (state.steady_videos / state.steady_seconds if state.steady_seconds > 0  # transfer videos included
            else per_epoch * len(history) / train_seconds)
    write_history(out / "history.csv", history)
    plot_history(out / "training.png", history, state.best_epoch, f"{out.name} ({name})")
    card = Card(
        run=out.name, model=name, level=zoo.spec(name).level, parameters=int(final.count_params()),
        file_bytes=(out / "model.keras").stat().st_size, num_classes=train_store.num_classes,
        train_videos=len(train_store), epochs=len(history), best_epoch=state.best_epoch,
        train_seconds=round(train_seconds, 3), train_videos_per_second=round(rate, 2),
        validation={"gap": best["val_gap"], "hit_at_one": best["val_hit_at_one"], "perr": best["val_perr"]},
        strategy=options.strategy, replicas=replicas, precision=options.precision,
        config=config, created=Card.now(), teacher=teacher.describe() if teacher else None,
    )
    card.save(out / "card.json")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    print(f"{out}: best epoch {state.best_epoch} of {len(history)}, validation GAP {best['val_gap']:.4f}, "
          f"Hit@1 {best['val_hit_at_one']:.4f}, PERR {best['val_perr']:.4f}; "
          f"{card.parameters:,} parameters, {card.file_bytes / 1e6:.1f} MB")
    return card
