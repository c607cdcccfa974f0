"""models.ensemble: the weight fit prefers the better member, the folder predicts like any model folder
(mixed levels included), nothing of size videos x classes is held, and bad members are refused in one line."""

import tracemalloc

import keras
import numpy as np
import pytest

from common import cli
from common.card import Card
from common.errors import InputError
from evaluation.metrics import LabelSets, evaluate
from features.store import Store
from models import ensemble, zoo
from models.__main__ import main as models_main
from models.inference import iter_scores, load_model_dir
from models.train import TrainOptions, train
from tests.test_models_inference import write_run
from tests.test_models_train import CLASSES, make_store

QUICK = TrainOptions(epochs=2, batch_size=16, frames=6, patience=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Stores and three model folders: a trained logistic and qrnn (good) and an untrained moe (poor)."""
    root = tmp_path_factory.mktemp("ensemble")
    train_dir = make_store(root / "train", 64, seed=21).path
    validate_dir = make_store(root / "validate", 40, seed=22).path
    train("logistic", train_dir, validate_dir, root / "logistic", QUICK, verbose=0)
    # last+max, the Glorot start on the skip path and no pace: at this tiny size it earns a share of the weight
    # beside logistic (the attention readout, the zero start and the pace did not), so the mixed-level ensemble
    # keeps both members
    config = {"hidden": 8, "readout": "last+max", "zero_skip": False, "pace": 0}
    train("qrnn", train_dir, validate_dir, root / "qrnn", QUICK, config, verbose=0)
    write_run(root / "untrained", "moe", {})
    return root, train_dir, validate_dir


def all_scores(folder, store_dir):
    model, card = load_model_dir(folder)
    return np.concatenate([s for _, s in iter_scores(model, card, Store(store_dir), batch_size=16)])


def logit(p):
    p = np.clip(p.astype(np.float64), ensemble.EPSILON, 1 - ensemble.EPSILON)
    return np.log(p / (1 - p))


def test_fit_gives_the_weight_to_the_clearly_better_member(runs, tmp_path):
    root, _, validate_dir = runs
    card = ensemble.make_ensemble([root / "untrained", root / "logistic"], validate_dir, tmp_path / "ens",
                                  progress=False)
    weights = {m["run"]: m["weight"] for m in card.ensemble["members"]}
    assert weights["logistic"] >= 0.9 and weights["untrained"] <= 0.1
    good = Card.load(root / "logistic").validation["gap"]
    assert card.validation["gap"] >= good - 1e-9  # never worse than the better member on its own


def test_fit_on_handmade_candidates_prefers_the_informative_member():
    rng = np.random.default_rng(0)
    videos, classes = 200, 30
    truth = [rng.choice(classes, 2, replace=False) for _ in range(videos)]
    dense = np.zeros((videos, classes))
    for i, t in enumerate(truth):
        dense[i, t] = 1
    good = np.clip(0.6 * dense + rng.uniform(0, 0.5, dense.shape), 0, 1)
    noise = rng.uniform(0, 1, dense.shape)
    labels = np.tile(np.arange(classes), (videos, 1))
    labels = np.concatenate([labels, np.full_like(labels, -1)], axis=1)  # the second member's top k: repeats
    scores = np.stack([np.pad(s, ((0, 0), (0, classes))) for s in (noise, good)]).astype(np.float32)
    cand = ensemble.Candidates(labels, scores, np.full((2, videos), -np.inf, np.float32),
                               LabelSets.from_lists(truth), classes)
    weights, gap = ensemble.fit_weights(cand)
    assert weights[1] > 0.8 and weights.sum() == pytest.approx(1.0)
    assert gap == pytest.approx(evaluate(good, dense).gap, abs=0.02) and gap > evaluate(noise, dense).gap + 0.3
    assert ensemble.evaluate(cand, weights)[1] == videos  # every class is a candidate: every top 20 is exact


def test_mixed_level_ensemble_predicts_the_weighted_mean_of_its_members(runs, tmp_path):
    """A frame-level qrnn and a video-level logistic: the ensemble reads frames and the store's video means."""
    root, _, validate_dir = runs
    out = tmp_path / "mixed"
    card = ensemble.make_ensemble([root / "qrnn", root / "logistic"], validate_dir, out, progress=False)
    assert (card.model, card.level, card.run) == ("ensemble", "frame", "mixed")
    assert card.config["training"] == {"validate": str(validate_dir.resolve()), "frames": 6}
    model, _ = load_model_dir(out)
    assert set(model.input) == {"frames", "num_frames", "video"}

    got = all_scores(out, validate_dir)
    w = keras.ops.convert_to_numpy(model.get_layer("weighted_mean").class_weights)
    members = [all_scores(root / run, validate_dir) for run in ("qrnn", "logistic")]
    assert w.shape == (2, CLASSES) and np.allclose(w.sum(axis=0), 1)
    store = Store(validate_dir)
    member_w = np.array([m["weight"] for m in card.ensemble["members"]])[:, None]
    np.testing.assert_allclose(w, np.broadcast_to(member_w, w.shape), atol=1e-6)  # one weight per member
    mean = np.sum(w[:, None, :] * ensemble.transform(np.stack(members), card.ensemble["space"]), axis=0)
    expected = mean if card.ensemble["space"] == "probability" else 1.0 / (1.0 + np.exp(-mean))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)

    recomputed = evaluate(got, store.dense_labels(np.arange(len(store))))
    assert card.validation["gap"] == pytest.approx(recomputed.gap, abs=1e-6)
    assert card.ensemble["fit"]["exact_videos"] == len(store)  # 6 classes: every label is a candidate
    assert card.ensemble["fit"]["gap"] == pytest.approx(card.validation["gap"], abs=1e-4)
    assert card.file_bytes == (out / "model.keras").stat().st_size
    assert card.train_seconds >= sum(Card.load(root / r).train_seconds for r in ("qrnn", "logistic"))


def test_video_level_ensemble_reads_a_video_store(runs, tmp_path):
    root, _, _ = runs
    write_run(tmp_path / "moe", "moe", {})
    video_store = make_store(tmp_path / "store", 30, seed=23, level="video").path
    card = ensemble.make_ensemble([root / "logistic", tmp_path / "moe"], video_store, tmp_path / "ens",
                                  progress=False)
    assert card.level == "video"
    assert all_scores(tmp_path / "ens", video_store).shape == (30, CLASSES)


def test_an_ensemble_without_its_frame_level_members_is_video_level(runs, tmp_path, monkeypatch):
    """When the fit gives the only frame-level member no weight, the ensemble reads video features only,
    and its card says so, so that predicting from it feeds what it reads."""
    root, _, validate_dir = runs
    monkeypatch.setattr(ensemble, "fit_weights", lambda cand: (np.array([0.0, 1.0]), 0.0))
    card = ensemble.make_ensemble([root / "qrnn", root / "logistic"], validate_dir, tmp_path / "ens",
                                  progress=False)
    model, _ = load_model_dir(tmp_path / "ens")
    assert card.level == "video" and tuple(model.input.shape) == (None, 1152)
    np.testing.assert_allclose(all_scores(tmp_path / "ens", validate_dir), all_scores(root / "logistic", validate_dir),
                               atol=1e-6)


def test_candidates_find_the_true_top_20_and_flag_the_videos_they_cannot_prove():
    """With k = 3 of 40 classes, the candidates' combined top 20 must equal the dense one wherever the
    bound says it is exact."""
    rng = np.random.default_rng(1)
    videos, classes, k = 50, 40, 3
    dense = rng.uniform(0.01, 0.99, (2, videos, classes))
    top = [np.argsort(-s, axis=1)[:, :k] for s in dense]
    labels = np.sort(np.concatenate(top, axis=1), axis=1)
    labels[:, 1:][labels[:, 1:] == labels[:, :-1]] = -1
    scores = np.stack([np.take_along_axis(s, np.maximum(labels, 0), 1) for s in dense]).astype(np.float32)
    floors = np.sort(dense, axis=2)[:, :, -k].astype(np.float32)
    truth = LabelSets.from_lists([rng.choice(classes, 2, replace=False) for _ in range(videos)])
    cand = ensemble.Candidates(labels, scores, floors, truth, classes)
    for space, w in (("logit", np.array([0.3, 0.7])), ("probability", np.array([0.6, 0.4]))):
        t = logit if space == "logit" else np.asarray
        combined = w[0] * t(dense[0]) + w[1] * t(dense[1])
        true_top = np.sort(np.argsort(-combined, axis=1)[:, :2], axis=1)
        got, _, proven = ensemble.combined_top_k(cand, w, space, k=2)
        assert ensemble.evaluate(cand, w, space, k=2)[1] == proven.sum() > 0
        assert (np.sort(got, axis=1)[proven] == true_top[proven]).all(), space


def test_memory_does_not_grow_with_the_number_of_videos(tmp_path):
    """Prediction holds one batch of scores whatever the store's size; the fit keeps (videos, members x k)
    candidates, never (videos, classes)."""
    classes = 400
    folders = [tmp_path / "logistic", tmp_path / "moe"]
    for folder in folders:
        model = zoo.build(folder.name, classes)
        folder.mkdir()
        model.save(folder / "model.keras")
        Card(run=folder.name, model=folder.name, level="video", parameters=model.count_params(),
             file_bytes=(folder / "model.keras").stat().st_size, num_classes=classes, train_videos=1, epochs=1,
             best_epoch=1, train_seconds=1.0, train_videos_per_second=1.0,
             validation={"gap": 0.0, "hit_at_one": 0.0, "perr": 0.0}, config={"training": {}},
             created=Card.now()).save(folder)
    small = make_store(tmp_path / "small", 40, seed=24, classes=classes, level="video").path
    large = make_store(tmp_path / "large", 320, seed=25, classes=classes, level="video").path
    ensemble.make_ensemble(folders, small, tmp_path / "ens", progress=False)
    model, card = load_model_dir(tmp_path / "ens")
    members = ensemble.load_members(folders)

    def predict(store_dir):
        for _ in iter_scores(model, card, Store(store_dir), batch_size=16):
            pass

    def fit(store_dir):
        cand = ensemble.collect_candidates(members, Store(store_dir), k=5, batch_size=16, progress=False)
        assert cand.labels.shape == (len(Store(store_dir)), 10) and cand.scores.shape[:2] == (2, len(cand.labels))

    def peak(run, store_dir):
        run(small)  # warm up: Keras traces its graphs on the first call
        tracemalloc.start()
        run(store_dir)
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size

    grown_dense = (320 - 40) * classes * 4  # what N x C float32 scores would add for the larger store
    assert peak(predict, large) < peak(predict, small) + grown_dense / 10  # 8x the videos, the same memory
    assert peak(fit, large) < peak(fit, small) + grown_dense / 4  # candidates: (N, 10), not (N, 400)


def test_members_that_do_not_fit_together_are_refused(runs, tmp_path, capsys):
    root, _, validate_dir = runs
    other = tmp_path / "other"
    write_run(other, "moe", {})
    card = Card.load(other)
    card.num_classes = CLASSES + 1
    card.save(other)
    cases = [
        ([root / "logistic"], validate_dir, "error: --members: an ensemble needs at least two model folders"),
        ([root / "logistic", root / "logistic"], validate_dir, "error: --members: a model folder is named twice"),
        ([root / "logistic", other], validate_dir,
         f"error: {other}: predicts {CLASSES + 1} classes, but {root / 'logistic'} predicts {CLASSES}"),
    ]
    video_store = make_store(tmp_path / "v", 5, seed=26, level="video").path
    cases.append(([root / "qrnn", root / "logistic"], video_store,
                  f"error: {video_store}: a video-level store, but the ensemble has frame-level members"))
    for members, store, line in cases:
        args = ["ensemble", "--members", *map(str, members), "--validate", str(store), "--out", str(tmp_path / "e")]
        assert cli.run(models_main, args) == 2
        assert capsys.readouterr().err == line + "\n"
        assert not (tmp_path / "e").exists()
    with pytest.raises(InputError, match="different numbers of frames"):
        qrnn8 = tmp_path / "qrnn8"
        write_run(qrnn8, "qrnn", {"hidden": 4})
        changed = Card.load(qrnn8)
        changed.config["training"]["frames"] = 8
        changed.save(qrnn8)
        ensemble.load_members([root / "qrnn", qrnn8])


def test_cli_writes_the_folder_and_a_rerun_is_up_to_date(runs, tmp_path, capsys):
    root, _, validate_dir = runs
    args = ["ensemble", "--members", str(root / "logistic"), str(root / "qrnn"), "--validate", str(validate_dir),
            "--out", str(tmp_path / "ens")]
    assert cli.run(models_main, args) == 0
    assert {p.name for p in (tmp_path / "ens").iterdir()} == {"model.keras", "card.json"}
    capsys.readouterr()
    assert cli.run(models_main, args) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'ens'}: up to date\n"
    model_file = tmp_path / "ens" / "model.keras"  # a truncated model (a killed copy) is made again
    model_file.write_bytes(model_file.read_bytes()[:1000])
    assert cli.run(models_main, args) == 0
    assert "up to date" not in capsys.readouterr().out and load_model_dir(tmp_path / "ens")
