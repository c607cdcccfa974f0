"""Load a trained run folder and stream a store's scores through it, in store order."""

from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from common.card import Card
from common.errors import InputError
from models.data import model_inputs, ordered_batches


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


def iter_scores(model: keras.Model, card: Card, store, batch_size: int = 256) -> Iterator[tuple]:
    """Yield (indices, scores float32 (B, C)) over the whole store in order; frame-level models get the
    same evenly spaced frames as in validation."""
    if card.level == "frame" and store.level != "frame":
        raise InputError(store.path if hasattr(store, "path") else "store",
                         f"a {store.level}-level store, but model {card.model} needs frame-level features")
    if store.num_classes != card.num_classes:
        raise InputError(getattr(store, "path", "store"),
                         f"{store.num_classes} classes, but the model predicts {card.num_classes}")
    frames = sampled_frames(card)
    for indices in ordered_batches(len(store), batch_size):
        x = model_inputs(store, indices, card.level, frames, "even")
        yield indices, np.asarray(model.predict_on_batch(x), dtype=np.float32)
