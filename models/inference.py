"""Scores of a store streamed through a model in store order: for validation during training and for a
loaded run folder (`submissions predict`)."""

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from common.card import Card
from common.errors import InputError
from evaluation.metrics import Accumulator, Scores
from models.batches import model_inputs, prediction_batches


def load_model_dir(folder) -> tuple[keras.Model, Card]:
    """(model, card) of a run folder written by `python -m models train`."""
    folder = Path(folder)
    model_file = folder / "model.keras"
    if not model_file.exists() or not (folder / "card.json").exists():
        raise InputError(folder, "not a trained model folder (model.keras and card.json expected)")
    card = Card.load(folder / "card.json")
    try:
        model = keras.models.load_model(model_file, compile=False)
    except Exception as err:  # a truncated or foreign file: Keras raises many different types
        raise InputError(model_file, f"cannot load the model ({type(err).__name__}: {err})") from None
    return model, card


def sampled_frames(card: Card) -> int | None:
    """Frames per video a frame-level model saw in validation: the T of its training configuration."""
    return card.config.get("training", {}).get("frames") if card.level == "frame" else None


def scores_in_batches(model: keras.Model, store, level: str, frames: int | None,
                      batch_size: int = 256) -> Iterator[tuple]:
    """Yield (indices, scores float32 (B, C)) over the whole store in order; frame-level models get
    `frames` evenly spaced frames per video (what they saw in validation), in batches of one shape
    (`prediction_batches`)."""
    for indices, read in prediction_batches(len(store), batch_size):
        x = model_inputs(store, read, level, frames, "even")
        yield indices, np.asarray(model.predict_on_batch(x), dtype=np.float32)[:len(indices)]


def store_scores(model: keras.Model, store, level: str, frames: int | None, batch_size: int = 256) -> Scores:
    """GAP@20, Hit@1 and PERR of `model` on a labelled store, streamed (never N x C in memory)."""
    acc = Accumulator(store.num_classes)
    for indices, scores in scores_in_batches(model, store, level, frames, batch_size):
        acc.add(scores, store.dense_labels(indices))
    return acc.result()


def iter_scores(model: keras.Model, card: Card, store, batch_size: int = 256) -> Iterator[tuple]:
    """scores_in_batches for a loaded run folder, after refusing a store the model cannot read."""
    where = getattr(store, "path", "store")
    if card.level == "frame" and store.level != "frame":
        raise InputError(where, f"a {store.level}-level store, but model {card.model} needs frame-level features")
    if store.num_classes != card.num_classes:
        raise InputError(where, f"{store.num_classes} classes, but the model predicts {card.num_classes}")
    yield from scores_in_batches(model, store, card.level, sampled_frames(card), batch_size)
