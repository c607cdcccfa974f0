"""Distillation: a student trains on targets (1 - w) * labels + w * teacher scores.

The teacher is any model folder (a trained run, an ensemble, an export). It scores the training store once,
before training, into a float16 file beside the checkpoints (videos x classes on disk, 2 bytes a score, read
a batch at a time); every training batch then mixes its rows into the targets, so distillation costs one
prediction pass over the training store and nothing per step.
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

TEACHER_WEIGHT = 0.5  # the teacher's share of the targets (the best of 0.5 / 0.8 on the tuning seed)


@dataclass
class Teacher:
    """A teacher's model folder, its card, and its share w of the targets."""

    folder: Path
    card: Card
    weight: float

    def describe(self) -> dict:
        """What the student's card says about its teacher."""
        return {"folder": str(self.folder.resolve()), "run": self.card.run, "model": self.card.model,
                "level": self.card.level, "validation_gap": self.card.validation.get("gap"),
                "weight": self.weight}


def open_teacher(folder, train_store: Store, weight: float = TEACHER_WEIGHT) -> Teacher:
    """The teacher in `folder`, refused with one line when it cannot score the training store."""
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
    if not 0.0 < weight <= 1.0:
        raise InputError("--teacher-weight", f"must be in (0, 1], not {weight}")
    return Teacher(folder, card, weight)


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
    """targets(indices) for models.batches.StoreBatches: (1 - w) * 0/1 labels + w * the teacher's scores."""

    store: Store
    scores: np.ndarray  # (N, C), the teacher's scores of the store's videos
    weight: float

    def __call__(self, indices) -> np.ndarray:
        labels = self.store.dense_labels(indices)
        teacher = np.asarray(self.scores[np.asarray(indices, dtype=np.int64)], dtype=np.float32)
        return (1.0 - self.weight) * labels + self.weight * teacher
