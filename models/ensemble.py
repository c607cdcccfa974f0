"""Ensembles: trained runs of any level combined into one model folder that predicts like any other.

The ensemble's model.keras holds the members as sub-models and a WeightedMean of their outputs. A frame-level
ensemble takes the frame-level inputs, "video" included (the store's mean of all frames, what video-level
members trained on). The member weights (non-negative, summing to 1) are fitted on a validation store by
GAP@20 with a coordinate search; a mix is kept only when it raises the validation GAP by MIN_GAIN over the
best member alone. (Per-class weights were tried and removed: on the tuning world they never helped on videos
they were not fitted on; benchmarks/RESULTS.md, development measurements.)
Nothing holds N x C scores: for every video the fit keeps only the union of each member's top CANDIDATES
labels, every member's scores for them, and each member's CANDIDATES-th best score, which bounds the combined
score of every label left out, so the fit knows for which videos its combined top 20 is exact. The card's
validation metrics are the fit's when it proves every video's top 20 (the usual case), else those of the
saved model scored end to end.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops
from tqdm import tqdm

from common.card import Card
from common.errors import InputError
from common.files import atomic_path, digest
from data.formats import FEATURE_SIZE
from evaluation.metrics import K, LabelSets, Scores, evaluate_top_k
from features.store import Store
from models.batches import model_inputs, prediction_batches
from models.inference import load_model_dir, sampled_frames, store_scores
from models.train import up_to_date

SPACES = ("logit", "probability")
# Averaged as logits: on the tuning world's held-out videos they beat probabilities for every set of members
# tried (benchmarks/RESULTS.md, development measurements).
SPACE = "logit"
CANDIDATES = 100  # labels per member and video that the weight fit keeps
# A mix is kept over the best member alone only when it raises GAP on the validation store by this much:
# smaller gains are the noise of fitting a few hundred videos.
MIN_GAIN = 0.001
STEPS = (0.2, 0.1, 0.05, 0.02, 0.01)  # the coordinate search's step sizes, coarse to fine
EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logits


@keras.saving.register_keras_serializable(package="yt8m")
class WeightedMean(keras.layers.Layer):
    """Members' class probabilities, a list of M (B, C) -> their weighted mean (B, C), with weights w (M, C)
    (a weight of the layer, set after building; the fit gives every class the same member weights, and the
    (M, C) shape keeps ensembles saved with per-class weights loadable): in "probability" space
    sum_m w_mc p_mc, in "logit" space sigmoid(sum_m w_mc logit(p_mc))."""

    def __init__(self, space=SPACE, **kwargs):
        super().__init__(**kwargs)
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, not {space!r}")
        self.space = space

    def build(self, input_shape):
        count, classes = len(input_shape), input_shape[0][-1]
        self.class_weights = self.add_weight(name="class_weights", shape=(count, classes), trainable=False,
                                             initializer=keras.initializers.Constant(1.0 / count))

    def call(self, inputs):
        if self.space == "probability":
            return sum(self.class_weights[m] * p for m, p in enumerate(inputs))
        logits = [ops.log(p) - ops.log1p(-p) for p in (ops.clip(p, EPSILON, 1.0 - EPSILON) for p in inputs)]
        return ops.sigmoid(sum(self.class_weights[m] * z for m, z in enumerate(logits)))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "space": self.space}


def transform(scores: np.ndarray, space: str) -> np.ndarray:
    """What WeightedMean averages, in NumPy (float64): logits of the clipped scores, or the scores."""
    if space == "probability":
        return np.asarray(scores, np.float64)
    p = np.clip(np.asarray(scores, np.float64), EPSILON, 1.0 - EPSILON)
    return np.log(p) - np.log1p(-p)


# ---------------------------------------------------------------- members


@dataclass
class Member:
    """A loaded model folder."""

    folder: Path
    card: Card
    model: keras.Model


def load_members(folders) -> list[Member]:
    """Load the member folders, refusing with one line what cannot be combined."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise InputError("--members", "an ensemble needs at least two model folders")
    if len({f.resolve() for f in folders}) < len(folders):
        raise InputError("--members", "a model folder is named twice")
    members = []
    for folder in folders:
        model, card = load_model_dir(folder)
        members.append(Member(folder, card, model))
    for m in members[1:]:
        if m.card.num_classes != members[0].card.num_classes:
            raise InputError(m.folder, f"predicts {m.card.num_classes} classes, but {members[0].folder} "
                                       f"predicts {members[0].card.num_classes}")
    frames = {sampled_frames(m.card) for m in members if m.card.level == "frame"}
    if len(frames) > 1:
        raise InputError("--members", f"the frame-level members read different numbers of frames "
                                      f"({', '.join(map(str, sorted(frames)))}); an ensemble feeds them one")
    return members


def ensemble_level(members: list[Member]) -> tuple[str, int | None]:
    """(level, frames per video): frame level as soon as one member reads frames."""
    frames = [sampled_frames(m.card) for m in members if m.card.level == "frame"]
    return ("frame", frames[0]) if frames else ("video", None)


def build_model(members: list[Member], weights, space: str = SPACE) -> keras.Model:
    """One Keras model: the members as sub-models, their outputs combined by WeightedMean with `weights`
    (M,), one per member."""
    level, _ = ensemble_level(members)
    video = keras.Input((FEATURE_SIZE,), dtype="float32", name="video")
    if level == "video":
        inputs = video
    else:
        inputs = {"frames": keras.Input((None, FEATURE_SIZE), dtype="uint8", name="frames"),
                  "num_frames": keras.Input((), dtype="int32", name="num_frames"), "video": video}
    outputs = []
    for i, m in enumerate(members):
        m.model.name = f"member_{i}_{m.card.model}"  # members of one architecture need distinct names
        outputs.append(m.model(inputs if m.card.level == "frame" else video))
    mean = WeightedMean(space, name="weighted_mean")
    model = keras.Model(inputs, mean(outputs), name="ensemble")
    weights = np.asarray(weights, np.float32)
    mean.class_weights.assign(np.broadcast_to(weights[:, None], mean.class_weights.shape))  # the same for every class
    return model


# ---------------------------------------------------------------- the weight fit


@dataclass
class Candidates:
    """Per video, the union of the members' top-k labels (-1: a repeat, left out) and each member's scores
    for them; `floors` holds each member's k-th best score, which no label outside its top k exceeds."""

    labels: np.ndarray  # (N, M * k) int32
    scores: np.ndarray  # (M, N, M * k) float32
    floors: np.ndarray  # (M, N) float32 (-inf when k covers every class)
    truth: LabelSets
    num_classes: int

    def take(self, rows) -> "Candidates":
        """The candidates of the videos `rows` (to fit on some videos and test on others)."""
        return Candidates(self.labels[rows], self.scores[:, rows], self.floors[:, rows], self.truth.take(rows),
                          self.num_classes)


def member_scores(members: list[Member], store: Store, batch_size: int = 256):
    """Yield (indices, [scores (B, C) of each member]) over the store in order; each member gets its own
    inputs (frames evenly spaced as in its validation, or the video features), in batches of one shape
    (`prediction_batches`)."""
    for indices, read in prediction_batches(len(store), batch_size):
        inputs = {}
        for m in members:
            key = (m.card.level, sampled_frames(m.card))
            if key not in inputs:
                inputs[key] = model_inputs(store, read, key[0], key[1], "even")
        yield indices, [np.asarray(m.model.predict_on_batch(inputs[(m.card.level, sampled_frames(m.card))]),
                                   np.float32)[:len(indices)] for m in members]


def collect_candidates(members: list[Member], store: Store, k: int = CANDIDATES, batch_size: int = 256,
                       progress: bool = True) -> Candidates:
    """Stream the store through every member once and keep the candidates of each video."""
    num_classes = store.num_classes
    k = min(k, num_classes)
    labels, scores, floors = [], [], []
    with tqdm(total=len(store), unit="video", desc="ensemble members", disable=not progress,
              dynamic_ncols=True) as bar:
        for _, batch in member_scores(members, store, batch_size):
            top = np.concatenate([np.argpartition(-s, k - 1, axis=1)[:, :k] for s in batch], axis=1)
            top = np.sort(top, axis=1)
            top[:, 1:][top[:, 1:] == top[:, :-1]] = -1  # a label in several members' top k: kept once
            labels.append(top.astype(np.int32))
            scores.append(np.stack([np.take_along_axis(s, np.maximum(top, 0), axis=1) for s in batch]))
            floors.append(np.stack([np.partition(s, num_classes - k, axis=1)[:, num_classes - k] if k < num_classes
                                    else np.full(len(s), -np.inf, np.float32) for s in batch]))
            bar.update(len(top))
    truth = LabelSets(np.asarray(store.labels_indptr, np.int64), np.asarray(store.labels_indices, np.int64))
    return Candidates(np.concatenate(labels), np.concatenate(scores, axis=1), np.concatenate(floors, axis=1),
                      truth, num_classes)


def combined_top_k(cand: Candidates, weights, space: str = SPACE, k: int = K):
    """Each video's k best (labels (N, k), probabilities (N, k)) of the weighted mean (member weights (M,))
    among its candidates (label -1: fewer candidates than k), and whether that top k is provably the
    ensemble's own (N,): its k-th score is at least the bound of every label left out."""
    weights = np.asarray(weights, np.float64)
    combined = np.tensordot(weights, transform(cand.scores, space), axes=1)  # (N, M * k)
    combined[cand.labels < 0] = -np.inf
    top = np.argsort(-combined, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(combined, top, axis=1)
    labels = np.where(np.isfinite(best), np.take_along_axis(cand.labels, top, axis=1), -1)
    # A label left out scores at most each member's floor, so at most this (no floor: no label left out).
    every_label = (cand.floors == -np.inf).all(axis=0)
    bound = np.tensordot(weights, transform(np.where(cand.floors == -np.inf, 0.0, cand.floors), space), axes=1)
    exact = (best[:, -1] >= bound) | every_label
    probabilities = best if space == "probability" else 1.0 / (1.0 + np.exp(-best))
    return labels, np.where(labels >= 0, probabilities, 0.0), exact


def evaluate(cand: Candidates, weights, space: str = SPACE, k: int = K) -> tuple[Scores, int]:
    """GAP@k, Hit@1 and PERR of the weighted mean on the candidates, and how many videos' top k is exact."""
    labels, probabilities, exact = combined_top_k(cand, weights, space, k)
    return evaluate_top_k(labels, probabilities, cand.truth, cand.num_classes, k), int(exact.sum())


def fit_weights(cand: Candidates, space: str = SPACE) -> tuple[np.ndarray, float]:
    """Member weights (non-negative, sum 1) that maximize GAP@20 on the candidates, and that GAP.

    Starts from the best of equal weights and each member alone; then, for each step size in STEPS, moves
    one member's weight up or down by the step (renormalizing) whenever that raises GAP, until no move does.
    Only the ranking matters to GAP, so the scale of the weights is free and they are kept summing to 1.
    The best member alone wins unless the mix beats it by MIN_GAIN.
    """
    count = cand.scores.shape[0]

    def gap(w):
        return evaluate(cand, w, space)[0].gap

    alone_w, alone = max(((w, gap(w)) for w in np.eye(count)), key=lambda pair: pair[1])
    equal_w = np.full(count, 1.0 / count)
    best_w, best = max([(alone_w, alone), (equal_w, gap(equal_w))], key=lambda pair: pair[1])
    for step in STEPS:
        improved = True
        while improved:
            improved = False
            for m in range(count):
                for delta in (step, -step):
                    w = best_w.copy()
                    w[m] = max(w[m] + delta, 0.0)
                    if w.sum() <= 0:
                        continue
                    w /= w.sum()
                    g = gap(w)
                    if g > best + 1e-9:
                        best_w, best, improved = w, g, True
    return (best_w, best) if best >= alone + MIN_GAIN else (alone_w, alone)


# ---------------------------------------------------------------- the whole command


def open_validation(path, members: list[Member]) -> Store:
    """The validation store, refused with one line when it cannot score these members."""
    store = Store(path)
    if not store.has_labels or len(store) == 0:
        raise InputError(path, "the validation store needs labelled videos to fit the member weights")
    if store.num_classes != members[0].card.num_classes:
        raise InputError(path, f"{store.num_classes} classes, but the members predict "
                               f"{members[0].card.num_classes}")
    if ensemble_level(members)[0] == "frame" and store.level != "frame":
        raise InputError(path, "a video-level store, but the ensemble has frame-level members")
    return store


def make_ensemble(member_dirs, validate_dir, out, *, batch_size: int = 256, progress: bool = True) -> Card:
    """Fit the member weights on `validate_dir` and write the ensemble's model folder `out`."""
    out = Path(out)
    members = load_members(member_dirs)
    store = open_validation(validate_dir, members)
    level, frames = ensemble_level(members)
    config = {"members": [str(m.folder.resolve()) for m in members], "space": SPACE, "candidates": CANDIDATES,
              "min_gain": MIN_GAIN,
              "training": {"validate": str(Path(validate_dir).resolve()), "frames": frames},
              "inputs": {"members": [digest(m.folder / "model.keras") for m in members],
                         "validate": digest(Path(validate_dir) / "manifest.json")}}
    if up_to_date(out, config):
        print(f"{out}: up to date")
        return Card.load(out / "card.json")

    started = time.perf_counter()
    cand = collect_candidates(members, store, batch_size=batch_size, progress=progress)
    weights, _ = fit_weights(cand)
    fit, exact = evaluate(cand, weights)
    fit_seconds = time.perf_counter() - started
    kept = np.flatnonzero(weights)  # a member weighing 0 is left out: the model reads what the others read
    model = build_model([members[i] for i in kept], weights[kept])
    level, frames = ensemble_level([members[i] for i in kept])
    with atomic_path(out / "model.keras") as tmp:
        model.save(tmp)
    validation = fit
    if exact < len(store):  # some top 20 not proven by the candidates: score the saved model end to end
        validation = store_scores(model, store, level, frames, batch_size)
    described = [{"folder": str(m.folder.resolve()), "run": m.card.run, "model": m.card.model,
                  "level": m.card.level, "weight": round(float(w), 6), "validation_gap": m.card.validation.get("gap")}
                 for m, w in zip(members, weights, strict=True)]
    train_seconds = sum(m.card.train_seconds for m in members) + fit_seconds
    train_videos = max(m.card.train_videos for m in members)
    card = Card(
        run=out.name, model="ensemble", level=level, parameters=int(model.count_params()),
        file_bytes=(out / "model.keras").stat().st_size, num_classes=store.num_classes, train_videos=train_videos,
        epochs=0, best_epoch=0, train_seconds=round(train_seconds, 3),
        train_videos_per_second=round(train_videos / max(train_seconds, 1e-9), 2),
        validation={"gap": validation.gap, "hit_at_one": validation.hit_at_one, "perr": validation.perr},
        config=config, created=Card.now(),
        ensemble={"members": described, "space": SPACE,
                  "fit": {"method": "coordinate search of GAP@20 on the validation store; a mix kept if it raises "
                                    f"GAP by {MIN_GAIN} over the best member alone",
                          "videos": len(store),
                          "candidates_per_member": min(CANDIDATES, store.num_classes), "exact_videos": exact,
                          "gap": fit.gap, "seconds": round(fit_seconds, 3)}},
    )
    card.save(out / "card.json")
    shares = ", ".join(f"{d['run']} {d['weight']:.2f}" for d in described)
    print(f"{out}: weights {shares}; validation GAP {validation.gap:.4f}, Hit@1 {validation.hit_at_one:.4f}, "
          f"PERR {validation.perr:.4f} (best member {max(d['validation_gap'] or 0 for d in described):.4f}); "
          f"{card.parameters:,} parameters, {card.file_bytes / 1e6:.1f} MB")
    return card
