"""Distillation: a student trains on targets (1 - w) * labels + w * the teacher's scores softened at
temperature T, p ** (1/T) / (p ** (1/T) + (1 - p) ** (1/T)), that is sigmoid(logit(p) / T).

The teacher is any model folder (a trained run, an ensemble, an export). It scores the training store once,
before training, into a float16 file beside the checkpoints (videos x classes on disk, 2 bytes a score, read
a batch at a time); every training batch then mixes its rows into the targets, so distillation costs one
prediction pass over the training store and nothing per step.

A teacher remembers the videos its models trained on, and there its scores are little more than the labels.
A transfer store adds videos it did not train on (unlabelled ones, such as a test split): they join the
training with the teacher's scores as their whole target.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from tqdm import tqdm

from common.card import Card
from common.errors import InputError
from common.files import atomic_path
from features.store import Store
from models.inference import iter_scores, load_model_dir

TEACHER_WEIGHT = 0.3  # the teacher's share of the targets (the best of 0.3 to 0.8 on the tuning seed)
TEACHER_TEMPERATURE = 1.5  # divides the teacher's logits (the best of 1 to 4 on the tuning seed)


@dataclass
class Teacher:
    """A teacher's model folder, its card, its share w of the targets, and the transfer store if any (its
    scores are softened at TEACHER_TEMPERATURE)."""

    folder: Path
    card: Card
    weight: float
    transfer: Store | None = None

    def describe(self) -> dict:
        """What the student's card says about its teacher."""
        return {"folder": str(self.folder.resolve()), "run": self.card.run, "model": self.card.model,
                "level": self.card.level, "validation_gap": self.card.validation.get("gap"),
                "weight": self.weight, "temperature": TEACHER_TEMPERATURE,
                "transfer": str(self.transfer.path.resolve()) if self.transfer else None,
                "transfer_videos": len(self.transfer) if self.transfer else 0}


def open_teacher(folder, train_store: Store, weight: float = TEACHER_WEIGHT, transfer=None,
                 level: str = "video") -> Teacher:
    """The teacher in `folder` (and the `transfer` store for a `level` model), refused with one line when
    the teacher cannot score the training videos."""
    folder = Path(folder)
    if not ((folder / "model.keras").is_file() and (folder / "card.json").is_file()):
        raise InputError(folder, "not a model folder (model.keras and card.json expected), so it cannot teach")
    card = Card.load(folder)
    if card.num_classes != train_store.num_classes:
        raise InputError(folder, f"the teacher predicts {card.num_classes} classes, but the training store "
                                 f"{train_store.path} has {train_store.num_classes}")
    if card.level == "frame" and train_store.level != "frame":
        raise InputError(folder, f"a frame-level teacher cannot score the video-level training store "
                                 f"{train_store.path}")
    if not 0.0 <= weight <= 1.0 or (weight == 0 and transfer is None):
        raise InputError("--teacher-weight", f"must be in (0, 1] (0 only with a transfer store), not {weight}")
    if transfer is None:
        return Teacher(folder, card, weight)
    store = Store(transfer)
    if store.num_classes != train_store.num_classes:
        raise InputError(transfer, f"{store.num_classes} classes, but the training store has {train_store.num_classes}")
    if store.level != "frame" and (level == "frame" or card.level == "frame"):
        raise InputError(transfer, "a video-level store, but the student or the teacher reads frames")
    return Teacher(folder, card, weight, store)


class Joined:
    """A training store followed by a transfer store, read as one: videos 0..n-1 are the training store's.
    Offers what batches and prediction read from a store (frames, video features, labels, ids)."""

    def __init__(self, first: Store, second: Store):
        self.first, self.second, self.path = first, second, first.path
        self.level = "frame" if first.level == second.level == "frame" else "video"
        self.num_classes = first.num_classes

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def _join(self, indices, read):
        """read(store, rows) for each store's share of `indices`, put back in the order of `indices`."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        mine = idx < len(self.first)
        parts = [read(self.first, idx[mine]), read(self.second, idx[~mine] - len(self.first))]
        if not isinstance(parts[0], tuple):
            parts = [(part,) for part in parts]
        joined = []
        for a, b in zip(*parts, strict=True):
            out = np.empty((len(idx), *a.shape[1:]), a.dtype)
            out[mine], out[~mine] = a, b
            joined.append(out)
        return tuple(joined) if len(joined) > 1 else joined[0]

    def frames(self, indices, **kwargs):
        return self._join(indices, lambda store, rows: store.frames(rows, **kwargs))

    def video(self, indices):
        return self._join(indices, lambda store, rows: store.video(rows))

    def dense_labels(self, indices):
        """The training store's labels; zeros for the transfer store's videos (their labels are not used)."""
        return self._join(indices, lambda store, rows: store.dense_labels(rows) if store is self.first
                          else np.zeros((len(rows), self.num_classes), np.float32))


def teacher_scores(teacher: Teacher, store: Store, path: Path, batch_size: int = 256) -> np.ndarray:
    """The teacher's scores of every video of `store`, float16 (N, C), opened read-only from `path`;
    computed first (streamed, written atomically) unless `path` already holds them."""
    shape = (len(store), store.num_classes)
    if path.is_file():
        scores = np.load(path, mmap_mode="r")
        if scores.shape == shape and scores.dtype == np.float16:
            return scores
    model, card = load_model_dir(teacher.folder)
    with atomic_path(path) as tmp, tqdm(total=len(store), unit="video", dynamic_ncols=True,
                                        desc=f"teacher {teacher.card.run}") as bar:
        out = open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        for indices, scores in iter_scores(model, card, store, batch_size):
            out[indices] = scores
            bar.update(len(indices))
        out.flush()
        del out
    return np.load(path, mmap_mode="r")


@dataclass
class MixedTargets:
    """targets(indices) for models.batches.StoreBatches: (1 - w) * 0/1 labels + w * the teacher's softened
    scores for the first `labelled` videos; the softened scores alone for the others (a transfer store's)."""

    store: Store | Joined
    scores: np.ndarray  # (N, C), the teacher's scores of the store's videos
    weight: float
    labelled: int
    temperature: float  # T of models.distill.soften

    def __call__(self, indices) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64)
        teacher = soften(np.asarray(self.scores[idx], dtype=np.float32), self.temperature)
        weight = np.where(idx < self.labelled, self.weight, 1.0).astype(np.float32)[:, None]
        return (1.0 - weight) * self.store.dense_labels(idx) + weight * teacher


def soften(p: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T), written so that scores of exactly 0 or 1 stay 0 or 1."""
    if temperature == 1.0:
        return p
    a, b = p ** (1.0 / temperature), (1.0 - p) ** (1.0 / temperature)
    return a / (a + b)


def training_targets(teacher: Teacher, train_store: Store, path: Path) -> tuple[Store | Joined, MixedTargets]:
    """(the videos to train on, their targets): the training store and the transfer store if any, scored
    by the teacher once into `path`."""
    videos = train_store if teacher.transfer is None else Joined(train_store, teacher.transfer)
    return videos, MixedTargets(videos, teacher_scores(teacher, videos, path), teacher.weight, len(train_store),
                                TEACHER_TEMPERATURE)
