"""common.card: card.json round trips and refuses broken cards with the file's name."""

import json

import pytest

from common.card import Card
from common.errors import InputError


def example_card(**changes) -> Card:
    fields = dict(
        run="qrnn-1", model="qrnn", level="frame", parameters=1234, file_bytes=56789, num_classes=3862,
        train_videos=1000, epochs=3, best_epoch=2, train_seconds=12.5, train_videos_per_second=240.0,
        validation={"gap": 0.5, "hit_at_one": 0.6, "perr": 0.4}, config={"model": {"hidden": 8},
                                                                          "training": {"frames": 16}},
        created=Card.now(),
    )
    return Card(**{**fields, **changes})


def test_round_trip_keeps_every_field(tmp_path):
    card = example_card()
    card.save(tmp_path)
    assert Card.load(tmp_path) == card
    assert Card.load(tmp_path / "card.json") == card
    raw = json.loads((tmp_path / "card.json").read_text())
    assert set(raw) == {"run", "model", "level", "parameters", "file_bytes", "num_classes", "train_videos",
                        "epochs", "best_epoch", "train_seconds", "train_videos_per_second", "validation",
                        "inference_videos_per_second", "strategy", "replicas", "precision", "config", "created",
                        "teacher", "ensemble", "export"}
    assert raw["inference_videos_per_second"] is None
    assert raw["teacher"] is raw["ensemble"] is raw["export"] is None  # only distilled runs, ensembles, exports
    assert list(tmp_path.iterdir()) == [tmp_path / "card.json"]  # no temporary file left behind


def test_created_is_iso_utc():
    stamp = Card.now()
    assert stamp.endswith("+00:00") and "T" in stamp


def test_missing_key_is_refused_with_the_file(tmp_path):
    raw = example_card().to_dict()
    del raw["num_classes"]
    (tmp_path / "card.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"card\.json: model card lacks num_classes"):
        Card.load(tmp_path)


def test_bad_json_is_refused_with_the_line(tmp_path):
    (tmp_path / "card.json").write_text('{\n "run": "x",\n oops\n}')
    with pytest.raises(InputError, match=r"card\.json: line 3: not valid JSON"):
        Card.load(tmp_path)


def test_keys_written_by_later_versions_are_ignored(tmp_path):
    raw = {**example_card().to_dict(), "something_new": 1}
    (tmp_path / "card.json").write_text(json.dumps(raw))
    assert Card.load(tmp_path) == example_card(created=raw["created"])
