"""models.distill: a student trains on labels mixed with a teacher's scores, the card names the teacher, and a
teacher that cannot score the training store is refused in one line before anything is written."""

import os

import numpy as np
import pytest

from common import cli
from common.card import Card
from features.store import Store
from models import distill, ensemble
from models.__main__ import main as models_main
from models.inference import iter_scores, load_model_dir
from models.train import TrainOptions, train
from tests.test_models_inference import write_run
from tests.test_models_train import CLASSES, make_store

QUICK = TrainOptions(epochs=1, batch_size=16, frames=6, patience=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    train_dir = make_store(root / "train", 48, seed=31).path
    validate_dir = make_store(root / "validate", 24, seed=32).path
    train("logistic", train_dir, validate_dir, root / "teacher", QUICK, verbose=0)
    return root, train_dir, validate_dir


def test_teacher_scores_are_computed_once_and_mixed_into_the_targets(setup, tmp_path):
    root, train_dir, _ = setup
    store = Store(train_dir)
    teacher = distill.open_teacher(root / "teacher", store, 0.25)
    path = tmp_path / "scores.npy"
    scores = distill.teacher_scores(teacher, store, path)
    model, card = load_model_dir(root / "teacher")
    want = np.concatenate([s for _, s in iter_scores(model, card, store)])
    assert scores.dtype == np.float16 and scores.shape == (48, CLASSES)
    np.testing.assert_allclose(scores, want, rtol=1e-3, atol=1e-4)
    stamp = path.stat().st_mtime_ns
    assert distill.teacher_scores(teacher, store, path) is not None and path.stat().st_mtime_ns == stamp

    indices = np.array([3, 7, 8])
    targets = distill.MixedTargets(store, scores, 0.25, len(store), 1.0)(indices)
    expected = 0.75 * store.dense_labels(indices) + 0.25 * scores[indices].astype(np.float32)
    np.testing.assert_allclose(targets, expected, rtol=1e-6)
    assert targets.dtype == np.float32
    unlabelled = distill.MixedTargets(store, scores, 0.25, 5, 1.0)(indices)  # videos from 5 on: the teacher alone
    np.testing.assert_allclose(unlabelled[1:], scores[[7, 8]].astype(np.float32))
    np.testing.assert_allclose(unlabelled[0], expected[0])

    softened = distill.MixedTargets(store, scores, 1.0, len(store), temperature=2.0)(indices)
    logits = np.log(scores[indices].astype(np.float64)) - np.log1p(-scores[indices].astype(np.float64))
    np.testing.assert_allclose(softened, 1 / (1 + np.exp(-logits / 2)), rtol=1e-5, atol=1e-7)


def test_softening_keeps_the_teachers_ranking_and_its_certainties():
    p = np.array([0.0, 1e-6, 0.01, 0.3, 0.5, 0.9, 1.0], np.float32)
    soft = distill.soften(p, 2.0)
    assert soft[0] == 0.0 and soft[-1] == 1.0 and soft[4] == 0.5
    assert np.all(np.diff(soft) > 0) and np.all(soft[1:4] > p[1:4]) and soft[5] < p[5]


def test_joined_stores_read_as_one_in_the_order_asked(setup):
    _, train_dir, validate_dir = setup
    first, second = Store(train_dir), Store(validate_dir)
    joined = distill.Joined(first, second)
    assert len(joined) == 72 and joined.level == "frame" and joined.num_classes == CLASSES
    indices = np.array([50, 2, 71, 47, 48, 0])  # second's 2, first's 2, second's 23, ...
    rows = [(second, 2), (first, 2), (second, 23), (first, 47), (second, 0), (first, 0)]
    frames, lengths = joined.frames(indices, sample="even", num_samples=4)
    for (store, row), got, length in zip(rows, frames, lengths, strict=True):
        want, want_length = store.frames([row], sample="even", num_samples=4)
        np.testing.assert_array_equal(got, want[0])
        assert length == want_length[0]
    np.testing.assert_array_equal(joined.video(indices), np.stack([s.video([r])[0] for s, r in rows]))
    labels = joined.dense_labels(indices)
    np.testing.assert_array_equal(labels[[1, 3, 5]], first.dense_labels([2, 47, 0]))
    assert not labels[[0, 2, 4]].any()  # the transfer store's labels are never used


def test_a_distilled_run_names_its_teacher_an_ensemble_included(setup, tmp_path, capsys):
    root, train_dir, validate_dir = setup
    write_run(tmp_path / "untrained", "moe", {})
    ensemble.make_ensemble([root / "teacher", tmp_path / "untrained"], validate_dir, tmp_path / "ens",
                           progress=False)
    options = TrainOptions(epochs=1, batch_size=16, frames=6, patience=1, teacher=str(tmp_path / "ens"),
                           teacher_weight=0.5)
    card = train("qrnn", train_dir, validate_dir, tmp_path / "student", options, {"hidden": 8}, verbose=0)
    assert card.teacher["folder"] == str((tmp_path / "ens").resolve())
    assert (card.teacher["model"], card.teacher["weight"]) == ("ensemble", 0.5)
    assert card.config["training"]["teacher"] == str((tmp_path / "ens").resolve())
    assert Card.load(tmp_path / "student").teacher == card.teacher
    assert not (tmp_path / "student" / "checkpoints").exists()  # the teacher's scores went with them
    capsys.readouterr()
    train("qrnn", train_dir, validate_dir, tmp_path / "student", options, {"hidden": 8}, verbose=0)
    assert capsys.readouterr().out == f"{tmp_path / 'student'}: up to date\n"
    os.utime(tmp_path / "ens" / "model.keras")  # touched, same content: still up to date
    train("qrnn", train_dir, validate_dir, tmp_path / "student", options, {"hidden": 8}, verbose=0)
    assert capsys.readouterr().out == f"{tmp_path / 'student'}: up to date\n"
    ensemble.make_ensemble([tmp_path / "untrained", root / "teacher"], validate_dir, tmp_path / "ens",
                           progress=False)  # the teacher changed: the student is trained again
    capsys.readouterr()
    again = train("qrnn", train_dir, validate_dir, tmp_path / "student", options, {"hidden": 8}, verbose=0)
    assert again.config["inputs"]["teacher"] != card.config["inputs"]["teacher"]
    assert "up to date" not in capsys.readouterr().out
    plain = train("qrnn", train_dir, validate_dir, tmp_path / "plain", QUICK, {"hidden": 8}, verbose=0)
    assert plain.teacher is None and plain.config["training"]["teacher"] is None


def test_transfer_videos_join_the_training_with_the_teacher_s_scores(setup, tmp_path):
    root, train_dir, validate_dir = setup
    transfer = make_store(tmp_path / "unlabelled", 20, seed=34, has_labels=False).path
    options = TrainOptions(epochs=1, batch_size=16, frames=6, patience=1, teacher=str(root / "teacher"),
                           transfer=str(transfer))
    card = train("qrnn", train_dir, validate_dir, tmp_path / "student", options, {"hidden": 8}, verbose=0)
    assert card.teacher["transfer"] == str(transfer.resolve()) and card.teacher["transfer_videos"] == 20
    assert card.train_videos == 48 and card.config["training"]["transfer"] == str(transfer.resolve())


def test_a_teacher_that_does_not_match_is_refused_in_one_line(setup, tmp_path, capsys):
    root, train_dir, validate_dir = setup
    other = tmp_path / "other"
    write_run(other, "moe", {})
    card = Card.load(other)
    card.num_classes = CLASSES + 2
    card.save(other)
    frame_teacher = tmp_path / "frame"
    write_run(frame_teacher, "qrnn", {"hidden": 4})
    video_store = make_store(tmp_path / "video", 8, seed=33, level="video").path
    cases = [
        (train_dir, other, f"the teacher predicts {CLASSES + 2} classes, but the training store {train_dir} "
                           f"has {CLASSES}"),
        (video_store, frame_teacher, f"a frame-level teacher cannot score the video-level training store "
                                     f"{video_store}"),
        (train_dir, tmp_path, "not a model folder (model.keras and card.json expected), so it cannot teach"),
    ]
    for store, teacher, problem in cases:
        args = ["train", "--model", "logistic", "--train", str(store), "--validate", str(validate_dir),
                "--out", str(tmp_path / "run"), "--epochs", "1", "--teacher", str(teacher)]
        assert cli.run(models_main, args) == 2
        assert capsys.readouterr().err == f"error: {teacher}: {problem}\n"
        assert not (tmp_path / "run").exists()
    args = ["train", "--model", "qrnn", "--train", str(train_dir), "--validate", str(validate_dir),
            "--out", str(tmp_path / "run"), "--epochs", "1"]
    for more, line in [
        (["--transfer", str(validate_dir)], "error: --transfer: needs --teacher: its videos train on the "
                                             "teacher's scores"),
        (["--teacher", str(root / "teacher"), "--transfer", str(video_store)],
         f"error: {video_store}: a video-level store, but the student or the teacher reads frames"),
        (["--teacher", str(root / "teacher"), "--teacher-weight", "0"],
         "error: --teacher-weight: must be in (0, 1] (0 only with a transfer store), not 0.0"),
    ]:
        assert cli.run(models_main, args + more) == 2
        assert capsys.readouterr().err == line + "\n"
        assert not (tmp_path / "run").exists()
