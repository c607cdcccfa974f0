"""submissions.predict: the CSV equals the model's top 20, streamed a batch at a time; skip rule; card rate."""

import numpy as np
import pytest

import submissions.predict as predict_module
from common.errors import InputError
from evaluation.metrics import top_k
from evaluation.submission_csv import read_submission
from features.writer import create_store
from submissions.__main__ import main
from submissions.predict import predict, steady_rate

CLASSES = 30


def save_model(folder, name, config, level, frames=None):
    """A real (untrained, seeded) Keras model of the zoo with its card, as `models train` leaves them."""
    import keras

    from common.card import Card
    from models import zoo

    keras.utils.set_random_seed(1)
    model = zoo.build(name, CLASSES, config)
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    Card(run=folder.name, model=name, level=level, parameters=model.count_params(),
         file_bytes=(folder / "model.keras").stat().st_size, num_classes=CLASSES, train_videos=10, epochs=1,
         best_epoch=1, train_seconds=1.0, train_videos_per_second=10.0,
         validation={"gap": 0.1, "hit_at_one": 0.2, "perr": 0.1},
         config={"model": config, "training": {"frames": frames}}, created=Card.now()).save(folder)
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 37-video frame-level store (so video-level models can read it too) and two model folders."""
    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    num_frames = rng.integers(3, 12, size=37)
    frames = rng.integers(0, 256, size=(int(num_frames.sum()), 1152), dtype=np.uint8)
    labels = [rng.choice(CLASSES, size=2, replace=False) for _ in range(37)]
    store = create_store(root / "store", [f"id{i:02d}" for i in range(37)], labels, None, frames=frames,
                         num_frames=num_frames, num_classes=CLASSES)
    logistic = save_model(root / "logistic", "logistic", {}, "video")
    save_model(root / "qrnn", "qrnn", {"hidden": 16}, "frame", frames=4)
    return root, store, logistic


def test_csv_holds_each_videos_top_20_in_store_order(setup):
    root, store, model = setup
    out = root / "logistic_validate.csv"
    result = predict(root / "logistic", store.path, out, batch_size=8)
    assert result.rows == 37 and not result.skipped
    submission = read_submission(out, CLASSES)
    assert submission.ids == store.id_strings()
    want_labels, want_scores = top_k(np.asarray(model.predict(store.video(np.arange(37)), verbose=0)), 20)
    np.testing.assert_array_equal(submission.labels, want_labels)
    np.testing.assert_allclose(submission.scores, want_scores, rtol=1e-5)
    lines = out.read_text().splitlines()
    scores = [float(x) for x in lines[1].split(",")[1].split()[1::2]]
    assert len(scores) == 20 and scores == sorted(scores, reverse=True)


def test_batch_size_does_not_change_the_pairs_and_memory_is_one_batch(setup, monkeypatch):
    root, store, _ = setup
    rows_seen = []

    def recording_top_k(scores, k):
        rows_seen.append(scores.shape)
        return top_k(scores, k)

    monkeypatch.setattr(predict_module, "top_k", recording_top_k)
    predict(root / "logistic", store.path, root / "b5.csv", batch_size=5)
    predict(root / "logistic", store.path, root / "b64.csv", batch_size=64)
    small, large = read_submission(root / "b5.csv", CLASSES), read_submission(root / "b64.csv", CLASSES)
    assert small.ids == large.ids  # float32 sums may differ in the last bit between batch sizes, no more
    np.testing.assert_array_equal(small.labels, large.labels)
    np.testing.assert_allclose(small.scores, large.scores, rtol=1e-5)
    assert max(rows for rows, _ in rows_seen[:8]) == 5  # never the whole split's (N, C) scores
    assert all(classes == CLASSES for _, classes in rows_seen)


def test_frame_level_model_and_top_k_option(setup):
    root, store, _ = setup
    out = root / "qrnn_validate.csv"
    assert main(["predict", "--model", str(root / "qrnn"), "--features", str(store.path), "--out", str(out),
                 "--top-k", "5"]) == 0
    submission = read_submission(out, CLASSES)
    assert len(submission) == 37 and (submission.labels >= 0).sum(axis=1).tolist() == [5] * 37


def test_rate_goes_into_the_card_and_nothing_else_changes(setup):
    from common.card import Card

    root, store, _ = setup
    before = Card.load(root / "logistic")
    predict(root / "logistic", store.path, root / "rate.csv")
    after = Card.load(root / "logistic")
    assert after.inference_videos_per_second > 0
    after.inference_videos_per_second = before.inference_videos_per_second
    assert after == before


def test_up_to_date_only_when_the_csv_is_this_models_complete_prediction(setup, capsys):
    root, store, _ = setup
    out = root / "skip.csv"
    predict(root / "logistic", store.path, out)
    good, stamp = out.read_bytes(), out.stat().st_mtime_ns
    capsys.readouterr()
    assert predict(root / "logistic", store.path, out).skipped
    assert capsys.readouterr().out == f"{out}: up to date\n" and out.stat().st_mtime_ns == stamp

    out.write_bytes(good[: len(good) // 2])  # truncated
    assert not predict(root / "logistic", store.path, out).skipped and out.read_bytes() == good
    predict(root / "qrnn", store.path, root / "other.csv")
    out.write_bytes((root / "other.csv").read_bytes())  # another model's CSV
    assert not predict(root / "logistic", store.path, out).skipped and out.read_bytes() == good
    out.write_text("not a CSV at all\n")
    assert not predict(root / "logistic", store.path, out).skipped and out.read_bytes() == good
    assert not predict(root / "logistic", store.path, out, k=5).skipped  # another k
    assert not predict(root / "logistic", store.path, out).skipped and out.read_bytes() == good


def test_a_retrained_model_or_a_rebuilt_store_is_predicted_again(setup, tmp_path):
    import shutil

    root, store, _ = setup
    model_dir, out = tmp_path / "model", tmp_path / "run_validate.csv"
    shutil.copytree(root / "logistic", model_dir)
    predict(model_dir, store.path, out)
    assert predict(model_dir, store.path, out).skipped
    shutil.rmtree(model_dir)
    save_model(model_dir, "logistic", {"l2": 1e-6}, "video")  # retrained: another model file
    assert not predict(model_dir, store.path, out).skipped
    copy = tmp_path / "store"
    shutil.copytree(store.path, copy)
    assert predict(model_dir, copy, out).skipped  # the same store elsewhere
    manifest = copy / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"sources": []', '"sources": [{"name": "x", "bytes": 1, '
                                                                       '"records": 1}]'))
    assert not predict(model_dir, copy, out).skipped


def test_top_k_over_20_and_a_folder_as_out_are_one_line_errors(setup, tmp_path, capsys):
    from common.cli import run

    root, store, _ = setup
    args = ["predict", "--model", str(root / "logistic"), "--features", str(store.path)]
    assert run(main, [*args, "--out", str(tmp_path / "x.csv"), "--top-k", "25"]) == 2
    assert capsys.readouterr().err == "error: --top-k: must be in 1..20 (a submission holds at most 20 pairs a " \
                                      "video), not 25\n"
    assert run(main, [*args, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: is a folder: --out names the CSV file to write\n"
    assert not (tmp_path / "x.csv").exists()


def test_bad_inputs_are_one_line_errors_and_leave_no_file(setup, tmp_path):
    root, store, _ = setup
    with pytest.raises(InputError, match="not a trained model folder"):
        predict(tmp_path, store.path, tmp_path / "x.csv")
    with pytest.raises(InputError, match="no such feature store"):
        predict(root / "logistic", tmp_path / "nope", tmp_path / "x.csv")
    video_store = create_store(tmp_path / "video", ["a"], [[1]], np.zeros((1, 1152)), num_classes=CLASSES)
    with pytest.raises(InputError, match="needs frame-level features"):
        predict(root / "qrnn", video_store.path, tmp_path / "x.csv")
    other = create_store(tmp_path / "other", ["a"], [[1]], np.zeros((1, 1152)), num_classes=CLASSES + 1)
    with pytest.raises(InputError, match="31 classes, but the model predicts 30"):
        predict(root / "logistic", other.path, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_rate_leaves_out_the_first_batch_which_builds_the_graph():
    assert steady_rate(0.0, [(5.0, 100), (6.0, 200), (7.0, 300)]) == 100.0
    assert steady_rate(0.0, [(4.0, 100)]) == 25.0  # one batch: the whole time
    assert steady_rate(0.0, []) is None
