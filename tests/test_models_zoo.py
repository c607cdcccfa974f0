"""The model zoo: every model builds with the contract's inputs and outputs, reloads, and counts as designed."""

import keras
import numpy as np
import pytest

import models  # noqa: F401  (registers the custom layers, as a user's script would)
from common.errors import InputError
from data.formats import FEATURE_SIZE
from data.quantization import dequantize
from models import zoo
from models.heads import set_class_counts
from models.inputs import CenteredFrames, FrameFeatures, VideoChunks, VideoFeatures

CLASSES = 12
SMALL = {  # small configurations so the tests stay fast; the defaults are checked by parameter count
    "logistic": {},
    "moe": {"experts": 3},
    "lstm": {"hidden": 8, "layers": 2, "head": "moe", "context_gating": True},
    "qrnn": {"hidden": 8, "layers": 2, "dense": True, "head": "moe", "context_gating": True, "zoneout": 0.2,
             "bidirectional": True, "readout": "last+mean+max+attention", "dropout": 0.1, "pace": 0},
    "qrnn-video": {"hidden": 8, "chunk": 64, "pooling": "ifo"},
    "nextvlad": {"clusters": 4, "groups": 4, "hidden": 16, "gating_reduction": 4, "head": "moe"},
}


def _batch(level, rng, batch=4, steps=7):
    if level == "video":
        return rng.normal(size=(batch, FEATURE_SIZE)).astype("float32")
    frames = rng.integers(0, 256, size=(batch, steps, FEATURE_SIZE), dtype=np.uint8)
    num_frames = rng.integers(1, steps + 1, size=batch).astype("int32")
    num_frames[0] = steps
    for b, n in enumerate(num_frames):
        frames[b, n:] = 0  # padded as Store.frames pads
    video = rng.normal(size=(batch, FEATURE_SIZE)).astype("float32")  # the store's mean of all frames
    return {"frames": frames, "num_frames": num_frames, "video": video}


@pytest.mark.parametrize("name", list(zoo.MODELS))
def test_model_builds_predicts_and_reloads(name, tmp_path):
    spec = zoo.MODELS[name]
    model = zoo.build(name, CLASSES, SMALL[name])
    if spec.level == "video":
        assert tuple(model.input.shape) == (None, FEATURE_SIZE) and model.input.dtype == "float32"
    else:
        assert set(model.input) == {"frames", "num_frames", "video"}
        assert tuple(model.input["frames"].shape) == (None, None, FEATURE_SIZE)
        assert tuple(model.input["video"].shape) == (None, FEATURE_SIZE) and model.input["video"].dtype == "float32"
        assert model.input["frames"].dtype == "uint8" and model.input["num_frames"].dtype == "int32"
        assert tuple(model.input["num_frames"].shape) == (None,)
    assert tuple(model.output.shape) == (None, CLASSES)
    x = _batch(spec.level, np.random.default_rng(0))
    scores = model.predict(x, verbose=0)
    assert scores.shape == (4, CLASSES) and scores.dtype == np.float32
    assert np.all((scores >= 0) & (scores <= 1)) and np.isfinite(scores).all()
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), scores, atol=1e-6)
    assert loaded.count_params() == model.count_params()


@pytest.mark.parametrize("name", ["qrnn", "lstm", "nextvlad"])
def test_frame_models_ignore_padding(name):
    model = zoo.build(name, CLASSES, SMALL[name])
    x = _batch("frame", np.random.default_rng(1), batch=3, steps=5)
    padded = {**x, "frames": np.concatenate([x["frames"], np.zeros((3, 20, FEATURE_SIZE), np.uint8)], axis=1)}
    np.testing.assert_allclose(model.predict(padded, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    alone = {"frames": x["frames"][1:2, : x["num_frames"][1]], "num_frames": x["num_frames"][1:2],
             "video": x["video"][1:2]}
    np.testing.assert_allclose(model.predict(alone, verbose=0)[0], model.predict(x, verbose=0)[1], atol=1e-5)


def test_frame_features_dequantize_and_normalize_each_frame():
    frames = np.random.default_rng(2).integers(0, 256, size=(2, 3, FEATURE_SIZE), dtype=np.uint8)
    layer = FrameFeatures()
    out = keras.ops.convert_to_numpy(layer([frames, np.array([3, 1], "int32")]))
    want = dequantize(frames)
    want *= np.sqrt(FEATURE_SIZE) / np.linalg.norm(want, axis=-1, keepdims=True)  # unit mean square
    want[1, 1:] = 0.0  # padded frames are zeros
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    mask = keras.ops.convert_to_numpy(layer.compute_mask([frames, np.array([3, 1], "int32")]))
    assert mask.tolist() == [[True, True, True], [True, False, False]]


def test_centered_frames_subtract_the_mean_of_the_real_frames_and_keep_padding_zero():
    frames = np.random.default_rng(7).integers(0, 256, size=(2, 4, FEATURE_SIZE), dtype=np.uint8)
    num_frames = np.array([4, 2], "int32")
    features = FrameFeatures()
    x, mask = features([frames, num_frames]), features.compute_mask([frames, num_frames])
    out = keras.ops.convert_to_numpy(CenteredFrames()(x, mask=mask))
    x = keras.ops.convert_to_numpy(x)
    np.testing.assert_allclose(out[0], x[0] - x[0].mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(out[1, :2], x[1, :2] - x[1, :2].mean(axis=0), atol=1e-5)
    assert not out[1, 2:].any()  # padding: zeros, whatever the padded frames held
    assert keras.ops.convert_to_numpy(CenteredFrames().compute_mask(x, mask)).tolist() == \
        keras.ops.convert_to_numpy(mask).tolist()


def test_centered_qrnn_reads_only_what_changes_within_a_video():
    """Videos of one repeated frame look alike to the centered QRNN whatever the frame (skip path off)."""
    rng = np.random.default_rng(8)
    still = np.repeat(rng.integers(0, 256, size=(3, 1, FEATURE_SIZE), dtype=np.uint8), 5, axis=1)
    x = {"frames": still, "num_frames": np.array([5, 3, 5], "int32"), "video": np.zeros((3, FEATURE_SIZE), "float32")}
    config = {"hidden": 8, "skip": False, "zoneout": 0.0}
    centered = zoo.build("qrnn", CLASSES, config).predict(x, verbose=0)
    raw = zoo.build("qrnn", CLASSES, {**config, "centered": False}).predict(x, verbose=0)
    np.testing.assert_allclose(centered[0], centered[2], atol=1e-6)
    assert np.abs(raw[0] - raw[2]).max() > 1e-4


def test_video_features_are_normalized_and_chunks_read_audio_first_and_the_first_rgb_components_last():
    video = np.random.default_rng(5).normal(size=(2, FEATURE_SIZE)).astype("float32")
    unit = video / np.linalg.norm(video, axis=1, keepdims=True) * np.sqrt(FEATURE_SIZE)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(VideoFeatures()(video)), unit, rtol=1e-5)
    chunks = keras.ops.convert_to_numpy(VideoChunks(128)(unit))
    assert chunks.shape == (2, 9, 128)
    np.testing.assert_allclose(chunks[:, 0], unit[:, 1024:], rtol=1e-5)  # audio
    np.testing.assert_allclose(chunks[:, -1], unit[:, :128], rtol=1e-5)  # rgb components 0..127
    np.testing.assert_allclose(chunks[:, 1], unit[:, 896:1024], rtol=1e-5)


def test_parameter_counts_match_hand_computation():
    c, d = 3862, FEATURE_SIZE
    assert zoo.build("logistic", c).count_params() == d * c + c
    # MoE, M = 2: gates d x c(M+1) without bias, experts d x cM with bias
    assert zoo.build("moe", c).count_params() == d * c * 3 + d * c * 2 + c * 2 == 22_252_844
    # two directions of window 2, z f o gates; attention scores (h + 1, shared by both directions); a
    # logistic head on each direction's last state and attention readout (4h) and the video features (d);
    # the pace of each class (not trained)
    qrnn, h = zoo.build("qrnn", c), zoo.QrnnConfig().hidden
    assert qrnn.count_params() == 2 * (2 * d * 3 * h + 3 * h) + h + 1 + (4 * h + d) * c + c + c
    assert qrnn.count_params() <= 12_000_000
    h = zoo.QrnnVideoConfig().hidden
    assert zoo.build("qrnn-video", c).count_params() == 2 * 128 * 3 * h + 3 * h + (2 * h + d) * c + c + c
    v, h = zoo.NextVladConfig(), zoo.NextVladConfig().hidden
    rgb_audio = ((1024, v.groups, v.clusters), (128, v.groups // 2, v.clusters // 2))  # (features, G, K)
    pooled = sum(k * v.expansion * n // g for n, g, k in rgb_audio)  # K clusters x (expanded / G) features
    nextvlad = sum(n * v.expansion * n + v.expansion * n  # expansion
                   + v.expansion * n * g + g  # group attention
                   + v.expansion * n * g * k + 4 * g * k  # cluster assignment (no bias) and its batch norm
                   + k * v.expansion * n // g for n, g, k in rgb_audio)  # cluster centres
    gating = h * (h // 8) + 4 * (h // 8) + (h // 8) * h + h  # squeeze (no bias), batch norm, excite
    assert zoo.build("nextvlad", c).count_params() == 16_401_186 == (
        nextvlad + 4 * pooled + pooled * h + 4 * h + gating + h * c + c)  # BN, hidden (no bias), BN, head


def test_config_overrides_and_refusals():
    cfg = zoo.make_config("qrnn", {"hidden": "256", "dense": "true", "zoneout": "0", "pooling": "ifo"})
    assert (cfg.hidden, cfg.dense, cfg.zoneout, cfg.pooling) == (256, True, 0.0, "ifo")
    assert zoo.make_config("moe") == zoo.MoeConfig()
    for name, overrides, problem in [
        ("qrnn", {"hiden": 256}, "unknown key 'hiden'"),
        ("qrnn", {"hidden": "big"}, "hidden must be of type int"),
        ("qrnn", {"pooling": "if"}, "pooling must be one of"),
        ("qrnn", {"layers": 0}, "layers must be at least 1"),
        ("qrnn", {"readout": "last+median"}, "readout must be distinct modes of last, mean, max, attention"),
        ("qrnn", {"dropout": 1.0}, "dropout must be in"),
        ("qrnn", {"zoneout": "1"}, "zoneout must be in"),
        ("qrnn", {"pace": -1}, "pace must not be negative"),
        ("qrnn", {"head": "moe"}, "pace .of the skip path. needs the logistic head"),
        ("lstm", {"hidden": 0}, "hidden must be at least 1"),
        ("qrnn-video", {"chunk": 96}, "chunk must divide 128"),
        ("lstm", {"head": "svm"}, "head must be one of"),
        ("nextvlad", {"groups": 6}, "groups must divide expansion x 1024"),
        ("nextvlad", {"clusters": 0}, "clusters must be at least 1"),
        ("logistic", {"experts": 2}, "unknown key 'experts'"),
        ("resnet", {}, "unknown model 'resnet'"),
    ]:
        with pytest.raises(InputError, match=problem):
            zoo.build(name, CLASSES, overrides)
    assert zoo.build("qrnn-video", CLASSES, {"chunk": 32}).get_layer("chunks").output.shape[1:] == (36, 32)
    with pytest.raises(InputError, match="qrnn config: window must be at least 1"):
        zoo.build("qrnn", CLASSES, zoo.QrnnConfig(window=0))  # a config object is checked too


def test_heads_start_at_the_class_prior():
    x = _batch("video", np.random.default_rng(3))
    for name in ("logistic", "moe", "qrnn-video"):
        scores = zoo.build(name, 3862).predict(x, verbose=0)
        assert 0.5 * 3 / 3862 < scores.mean() < 2 * 3 / 3862, name


def test_qrnn_learns_the_order_of_frames():
    """A then B is class 0, B then A class 1: the frame means are the same, only the order tells."""
    rng = np.random.default_rng(4)
    n, steps = 384, 8
    a, b = rng.integers(0, 256, size=(2, FEATURE_SIZE), dtype=np.uint8)
    frames = rng.integers(96, 160, size=(n, steps, FEATURE_SIZE), dtype=np.uint8)  # background frames
    order = rng.integers(0, 2, size=n)
    first, second = rng.integers(0, 3, size=n), rng.integers(5, steps, size=n)  # never adjacent
    for i in range(n):
        frames[i, first[i]], frames[i, second[i]] = (a, b) if order[i] == 0 else (b, a)
    video = dequantize(frames).mean(axis=1)  # the same for both orders
    x = {"frames": frames, "num_frames": np.full(n, steps, np.int32), "video": video}
    y = np.eye(2, dtype="float32")[order]
    keras.utils.set_random_seed(0)
    model = zoo.build("qrnn", 2, {"hidden": 16, "zoneout": 0.0})
    model.compile(keras.optimizers.Adam(3e-3), "binary_crossentropy")
    model.fit({k: v[:256] for k, v in x.items()}, y[:256], batch_size=32, epochs=10, verbose=0)
    predicted = model.predict({k: v[256:] for k, v in x.items()}, verbose=0).argmax(axis=1)
    assert (predicted == order[256:]).mean() >= 0.9


def test_the_skip_path_reads_the_video_features():
    x = _batch("frame", np.random.default_rng(6), batch=3, steps=5)
    other = {**x, "video": x["video"][::-1].copy()}
    with_skip = zoo.build("qrnn", CLASSES, {"hidden": 8, "zero_skip": False})  # (zero weights read nothing)
    without = zoo.build("qrnn", CLASSES, {"hidden": 8, "skip": False})
    assert np.abs(with_skip.predict(x, verbose=0) - with_skip.predict(other, verbose=0)).max() > 1e-4
    np.testing.assert_allclose(without.predict(x, verbose=0), without.predict(other, verbose=0), atol=1e-6)


@pytest.mark.parametrize("name", ["logistic", "moe"])
def test_l2_penalty_is_the_starter_penalty_per_class(name):
    model = zoo.build(name, CLASSES, {"l2": 0.5})
    kernels = [w for w in model.weights if "kernel" in w.path]
    want = 0.5 / CLASSES * sum(float(np.sum(keras.ops.convert_to_numpy(w) ** 2)) for w in kernels)
    assert len(kernels) == (1 if name == "logistic" else 2)
    assert float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("head", ["logistic", "moe"])
def test_qrnn_l2_weighs_the_head_rows_reading_the_qrnn_and_l2_the_skip_rows(head):
    model = zoo.build("qrnn", CLASSES, {"hidden": 8, "head": head, "l2": 0.5, "qrnn_l2": 2.0, "zero_skip": False,
                                        "pace": 0})
    width = 32  # hidden 8 in each direction, each read as its last state and its attention-weighted mean
    kernels = [keras.ops.convert_to_numpy(w) for w in model.weights
               if "kernel" in w.path and w.shape[0] == width + FEATURE_SIZE]
    want = sum(2.0 / CLASSES * np.sum(k[:width] ** 2) + 0.5 / CLASSES * np.sum(k[width:] ** 2) for k in kernels)
    assert len(kernels) == (1 if head == "logistic" else 2)
    assert float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("head", ["logistic", "moe"])
def test_qrnn_head_starts_its_skip_rows_at_zero_and_its_qrnn_rows_as_dense_does(head):
    width = 32  # hidden 8 in each direction, each read as its last state and its attention-weighted mean
    for zero_skip in (True, False):
        model = zoo.build("qrnn", CLASSES, {"hidden": 8, "head": head, "zero_skip": zero_skip, "pace": 0})
        kernels = [keras.ops.convert_to_numpy(w) for w in model.weights
                   if "kernel" in w.path and w.shape[0] == width + FEATURE_SIZE]
        assert len(kernels) == (1 if head == "logistic" else 2)
        for k in kernels:
            limit = np.sqrt(6 / sum(k.shape))  # Glorot uniform's bound
            assert 0.3 * limit < np.abs(k[:width]).max() <= limit
            assert (np.abs(k[width:]).max() == 0) == zero_skip


def test_paced_qrnn_head_penalizes_and_starts_each_part_as_configured():
    width = 32  # hidden 8 in each direction, each read as its last state and its attention-weighted mean
    model = zoo.build("qrnn", CLASSES, {"hidden": 8, "l2": 0.5, "qrnn_l2": 2.0})
    qrnn_rows = keras.ops.convert_to_numpy(model.get_layer("logistic").kernel)
    video_rows = keras.ops.convert_to_numpy(model.get_layer("video_logistic").kernel)
    assert qrnn_rows.shape == (width, CLASSES) and video_rows.shape == (FEATURE_SIZE, CLASSES)
    assert np.abs(qrnn_rows).max() > 0 and np.abs(video_rows).max() == 0  # the skip path starts at zero
    want = 2.0 / CLASSES * np.sum(qrnn_rows ** 2) + 0.5 / CLASSES * np.sum(video_rows ** 2)
    assert float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses)) == pytest.approx(want, rel=1e-5)


def test_pace_scales_each_class_s_skip_path_by_its_training_count(tmp_path):
    x = _batch("frame", np.random.default_rng(7), batch=3, steps=5)
    other = {**x, "video": x["video"][::-1].copy()}
    model = zoo.build("qrnn", CLASSES, {"hidden": 8, "zero_skip": False})  # pace 10 (the default)

    def video_effect():  # each class's change of logit when only the video features change
        logit = [np.log(p / (1 - p)) for p in (model.predict(x, verbose=0), model.predict(other, verbose=0))]
        return np.abs(logit[0] - logit[1]).max(axis=0)

    before = video_effect()  # pace 1 until the counts are set
    counts = np.tile([0, 1, 10, 40, 1000, 250], CLASSES // 6)
    set_class_counts(model, counts)
    pace = keras.ops.convert_to_numpy(model.get_layer("pace").pace)
    np.testing.assert_allclose(pace, np.tile([1, 1, 1, 0.5, 0.1, 0.2], CLASSES // 6), rtol=1e-6)
    np.testing.assert_allclose(video_effect(), before * pace, rtol=1e-3, atol=1e-6)

    model.save(tmp_path / "m.keras")  # the pace is part of the saved model
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.get_layer("pace").pace), pace)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert not loaded.get_layer("pace").trainable_weights


@pytest.mark.parametrize("name, config", [("logistic", {"l2": 0.5}),
                                          ("qrnn", {"hidden": 8, "head": "moe", "qrnn_l2": 2.0, "pace": 0}),
                                          ("qrnn", {"hidden": 8, "l2": 0.5, "qrnn_l2": 2.0})])
def test_l2_penalty_round_trips_through_a_saved_model(tmp_path, name, config):
    model = zoo.build(name, CLASSES, config)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert float(sum(keras.ops.convert_to_numpy(x) for x in loaded.losses)) == pytest.approx(
        float(sum(keras.ops.convert_to_numpy(x) for x in model.losses)), rel=1e-6)
