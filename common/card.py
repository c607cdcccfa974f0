"""The model card (card.json): what a trained model is, how it was trained and how well it did.

It lives outside `models` so that reading a card (the leaderboard does) does not import Keras."""

import dataclasses
import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import InputError
from common.files import write_json_atomic

CARD_NAME = "card.json"


@dataclass
class Card:
    """One trained model's facts, saved beside model.keras; the leaderboard and `submissions` read it."""

    run: str  # the run folder's name
    model: str  # registry name in models.zoo.MODELS
    level: str  # "video" or "frame": the features the model reads
    parameters: int
    file_bytes: int  # size of model.keras
    num_classes: int
    train_videos: int
    epochs: int  # epochs trained (early stopping may stop before the requested number)
    best_epoch: int  # 1-based epoch whose weights model.keras holds
    train_seconds: float  # training time, validation excluded
    train_videos_per_second: float  # steady rate: each process's first step (graph tracing) left out
    validation: dict  # {"gap", "hit_at_one", "perr"} of the best epoch
    inference_videos_per_second: float | None = None  # filled by `submissions predict`
    strategy: str | None = None  # trained models: tf.distribute strategy, its replicas, the Keras precision
    replicas: int | None = None
    precision: str | None = None
    config: dict = field(default_factory=dict)  # {"model": zoo config, "training": training options}
    created: str = ""  # ISO 8601, UTC
    teacher: dict | None = None  # distillation: the teacher's folder, run and model, and its share of the targets
    ensemble: dict | None = None  # an ensemble: its members (folder, run, model, weight) and how they were fitted
    export: dict | None = None  # an export: the source folder, weight type, sizes and the change in validation GAP

    @staticmethod
    def now() -> str:
        return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path) -> None:
        """Write card.json atomically (a folder means `folder/card.json`)."""
        path = Path(path)
        write_json_atomic(path / CARD_NAME if path.is_dir() else path, self.to_dict())

    @classmethod
    def load(cls, path) -> "Card":
        """Read card.json (or `folder/card.json`); a missing key or bad JSON is an InputError."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_NAME
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise InputError(path, f"not valid JSON ({err.msg})", line=err.lineno) from None
        if not isinstance(raw, dict):
            raise InputError(path, "a model card must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - raw.keys())
        if missing:
            raise InputError(path, f"model card lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in names})
