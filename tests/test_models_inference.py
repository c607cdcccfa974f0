"""models.inference: a run folder loads, and iter_scores streams a store in order with validation's frames."""

import numpy as np
import pytest

from common.card import Card
from common.errors import InputError
from features.store import Store
from models import zoo
from models.inference import iter_scores, load_model_dir
from tests.test_models_train import CLASSES, make_store

FRAMES = 5


def write_run(folder, name: str, config: dict) -> None:
    """A run folder as training leaves it (untrained weights are enough to check prediction plumbing)."""
    folder.mkdir(parents=True)
    model = zoo.build(name, CLASSES, config)
    model.save(folder / "model.keras")
    level = zoo.spec(name).level
    Card(run=folder.name, model=name, level=level, parameters=model.count_params(),
         file_bytes=(folder / "model.keras").stat().st_size, num_classes=CLASSES, train_videos=1, epochs=1,
         best_epoch=1, train_seconds=1.0, train_videos_per_second=1.0,
         validation={"gap": 0.0, "hit_at_one": 0.0, "perr": 0.0},
         config={"model": config, "training": {"frames": FRAMES if level == "frame" else None}},
         created=Card.now()).save(folder)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    write_run(root / "qrnn", "qrnn", {"hidden": 8})
    write_run(root / "moe", "moe", {})
    return root, make_store(root / "store", 23, seed=11).path


def collect(model, card, store, batch_size):
    parts = list(iter_scores(model, card, store, batch_size=batch_size))
    return np.concatenate([i for i, _ in parts]), np.concatenate([s for _, s in parts]), parts


def test_frame_model_streams_the_store_in_order_with_evenly_spaced_frames(workspace):
    root, store_dir = workspace
    model, card = load_model_dir(root / "qrnn")
    store = Store(store_dir)
    indices, scores, parts = collect(model, card, store, batch_size=10)
    assert [len(i) for i, _ in parts] == [10, 10, 3]
    assert np.array_equal(indices, np.arange(23))
    assert scores.dtype == np.float32 and scores.shape == (23, CLASSES)
    assert ((scores >= 0) & (scores <= 1)).all()

    frames, lengths = store.frames(np.arange(23), sample="even", num_samples=FRAMES)
    want = model.predict({"frames": frames, "num_frames": lengths, "video": store.video(np.arange(23))}, verbose=0)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
    _, other_batches, _ = collect(model, card, store, batch_size=4)  # batching does not change scores
    np.testing.assert_allclose(other_batches, scores, rtol=1e-5, atol=1e-6)
    # T comes from the card: the same model on 3 evenly spaced frames scores differently.
    card.config["training"]["frames"] = 3
    _, fewer, _ = collect(model, card, store, batch_size=10)
    assert not np.allclose(fewer, scores)


def test_video_model_reads_the_video_features_of_a_frame_store(workspace):
    root, store_dir = workspace
    model, card = load_model_dir(root / "moe")
    store = Store(store_dir)
    _, scores, _ = collect(model, card, store, batch_size=256)
    want = model.predict(store.video(np.arange(23)), verbose=0)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)


def test_a_short_last_batch_is_padded_so_the_graph_sees_one_shape(workspace, monkeypatch):
    root, store_dir = workspace
    model, card = load_model_dir(root / "moe")
    store = Store(store_dir)
    shapes, predict_on_batch = [], model.predict_on_batch
    monkeypatch.setattr(model, "predict_on_batch", lambda x: shapes.append(np.shape(x)) or predict_on_batch(x))
    indices, scores, parts = collect(model, card, store, batch_size=10)
    assert shapes == [(10, 1152)] * 3  # 23 videos: the last batch of 3 is read as 10
    assert [len(i) for i, _ in parts] == [10, 10, 3] and np.array_equal(indices, np.arange(23))
    np.testing.assert_allclose(scores, model.predict(store.video(np.arange(23)), verbose=0), rtol=1e-5, atol=1e-6)
    shapes.clear()
    collect(model, card, store, batch_size=30)  # a store smaller than a batch is read as it is
    assert shapes == [(23, 1152)]


def test_mismatched_store_is_refused(workspace, tmp_path):
    root, _ = workspace
    model, card = load_model_dir(root / "qrnn")
    video_store = make_store(tmp_path / "v", 3, seed=12, level="video")
    with pytest.raises(InputError, match="video-level store, but model qrnn needs frame-level features"):
        next(iter_scores(model, card, video_store))
    other = make_store(tmp_path / "c", 3, seed=13, classes=CLASSES + 2)
    with pytest.raises(InputError, match=f"{CLASSES + 2} classes, but the model predicts {CLASSES}"):
        next(iter_scores(model, card, other))


def test_broken_run_folders_are_refused(workspace, tmp_path):
    root, _ = workspace
    with pytest.raises(InputError, match="not a trained model folder"):
        load_model_dir(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "card.json").write_bytes((root / "moe" / "card.json").read_bytes())
    (broken / "model.keras").write_bytes((root / "moe" / "model.keras").read_bytes()[:500])  # truncated
    with pytest.raises(InputError, match=r"broken/model\.keras: cannot load the model"):
        load_model_dir(broken)
