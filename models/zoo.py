"""The model zoo: every model by name, its default configuration, and `build(name, num_classes, config)`.

Inputs (the contract the training loop and `submissions predict` rely on):
- video-level models (`spec.level == "video"`) take one float32 tensor (B, 1152): mean rgb then mean audio;
- frame-level models take {"frames": uint8 (B, T, 1152), "num_frames": int32 (B,), "video": float32 (B, 1152)}:
  the store's quantized frames, zero-padded after each video's num_frames real frames, and the video's mean
  features (models that do not read them ignore them); any T works (the same model can train on
  32 sampled frames and predict on 300). Dequantization and normalization happen inside the model.
Every model outputs (B, num_classes) probabilities in [0, 1]. Models come back uncompiled; the training
code compiles them. Their L2 penalties are layer regularizers (in `model.losses`), `l2` as in the starter
code: its loss sums cross-entropy over classes where Keras' averages, so the heads apply l2 / num_classes.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import keras

from common.errors import InputError
from data.formats import AUDIO_SIZE, FEATURE_SIZE, RGB_SIZE
from models.heads import HEADS, ZeroTail, classifier, paced_logistic
from models.inputs import CenteredFrames, FrameFeatures, VideoChunks, VideoFeatures
from models.nextvlad import FeatureRange, batch_norm, nextvlad, se_context_gating
from models.pooling import MODES as READOUTS
from models.pooling import Reverse, TemporalPooling
from models.qrnn import POOLINGS, qrnn_stack


@dataclass
class LogisticConfig:
    """The starter code's LogisticModel: one sigmoid Dense layer on the L2-normalized video features."""

    l2: float = 1e-8


@dataclass
class MoeConfig:
    """The starter code's MoeModel: `experts` sigmoid experts plus a dummy expert per class."""

    experts: int = 2
    l2: float = 1e-6  # what 2018 entries passed as --moe_l2 (the starter's own default is 1e-8)


@dataclass
class LstmConfig:
    """The frame-level LSTM baseline: one masked LSTM (per layer) and a classifier head."""

    hidden: int = 1024
    layers: int = 1
    head: str = "logistic"  # or "moe"
    experts: int = 2  # moe head only
    context_gating: bool = False
    l2: float = 1e-8


@dataclass
class QrnnConfig:
    """The light-weight frame-level QRNN (under 12M parameters at the defaults for 3,862 classes): two QRNNs,
    forward and backward in time, read the frames minus their video's mean; the head reads each one's last
    state and attention-weighted mean of its states, and the video's mean features (the skip path, what the
    video-level models read). Its weights on the QRNN's features, through which it memorizes the training
    videos, take a stronger L2 than those on the video's features, whose steps slow down for the classes
    frequent in training (`pace`; see docs/models.md)."""

    hidden: int = 256  # per direction
    layers: int = 1
    window: int = 2
    pooling: str = "fo"  # "f", "fo" or "ifo"
    zoneout: float = 0.1
    dense: bool = False  # densely connected stacking (each layer also reads its inputs' inputs)
    head: str = "logistic"  # or "moe"
    experts: int = 2  # moe head only
    context_gating: bool = False
    l2: float = 1e-3  # L2 of the head's weights on the skip path (the starter's is 1e-8)
    qrnn_l2: float = 3e-3  # L2 of the head's weights that read the QRNN's features (not the skip path)
    readout: str = "last+attention"  # the QRNN's steps read by TemporalPooling modes joined by "+"
    bidirectional: bool = True  # also a QRNN over the reversed frames (twice the QRNN, a wider head)
    skip: bool = True  # the head also reads the video's mean features, what the video-level models read
    zero_skip: bool = True  # the head's weights on the skip path start at zero (else Glorot, as the rest)
    dropout: float = 0.0  # on the QRNN's pooled features (not the skip path), training only
    centered: bool = True  # the QRNN reads each frame minus its video's mean frame (the skip path has the mean)
    pace: float = 10.0  # skip-path weights of a class with n training positives step at min(1, sqrt(pace / n))


@dataclass
class QrnnVideoConfig(QrnnConfig):
    """The QRNN on video-level features: the 1152-d vector read as 1152 / chunk steps of `chunk` features
    (chunk = 128: 9 steps, the audio chunk first, then the 8 rgb chunks from the last PCA components to the
    first; see models.inputs.VideoChunks). `chunk` must divide 128 so no step mixes rgb and audio."""

    chunk: int = 128
    hidden: int = 1024
    bidirectional: bool = False
    readout: str = "last+max"  # over 9 steps; attention scored lower on real fold A (RESULTS.md)
    zoneout: float = 0.0  # 9 steps: nothing to gain from zoneout
    l2: float = 1e-8  # the starter's: the qrnn's L2s were chosen on synthetic frames, not measured on real shards
    qrnn_l2: float = 1e-8
    zero_skip: bool = False  # Glorot, as the rest: the zero start scored lower on real fold A (RESULTS.md)
    centered: bool = False  # the chunks of one vector are not frames: nothing to center


@dataclass
class NextVladConfig:
    """NeXtVLAD (models.nextvlad) scaled for a CPU: rgb frames pooled into `clusters` clusters of `groups`
    groups, audio into half as many of each; a hidden layer with SE context gating, then the head. The
    2018 paper's best single model (79M parameters) had 128 clusters and a 2,048-wide hidden layer."""

    clusters: int = 32
    groups: int = 8
    expansion: int = 2
    hidden: int = 1024
    gating_reduction: int = 8
    dropout: float = 0.5  # on the pooled features, training only (the paper's)
    head: str = "logistic"  # or "moe"
    experts: int = 2  # moe head only
    l2: float = 1e-8


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its input level, configuration class and builder."""

    level: str  # "video" or "frame"
    config_class: type
    builder: Callable[[int, object], keras.Model]
    summary: str
    learning_rate: float  # Adam's rate in epoch 1 unless given: the best of a small grid (bench_models.py)
    clipnorm: float = 1.0  # Adam's per-variable gradient-norm clip unless given (0: none); the starter's 1.0


def _video_input():
    features = keras.Input((FEATURE_SIZE,), dtype="float32", name="video")
    return features, keras.layers.UnitNormalization(axis=-1, name="l2_normalize")(features)


def _frame_inputs():
    frames = keras.Input((None, FEATURE_SIZE), dtype="uint8", name="frames")
    num_frames = keras.Input((), dtype="int32", name="num_frames")
    video = keras.Input((FEATURE_SIZE,), dtype="float32", name="video")
    inputs = {"frames": frames, "num_frames": num_frames, "video": video}
    return inputs, FrameFeatures(name="frame_features")([frames, num_frames])


def _head(x, num_classes, cfg, leading=(0, 0.0), initializer="glorot_uniform"):
    return classifier(x, num_classes, cfg.head, cfg.experts, cfg.l2, cfg.context_gating, leading, initializer)


def _qrnn_head(x, num_classes, cfg, video):
    """The QRNN's steps pooled by `cfg.readout` (both directions when bidirectional), then, with
    `cfg.skip`, the normalized video features `video`, into the head: `cfg.qrnn_l2` on the QRNN's part."""
    options = dict(window=cfg.window, pooling=cfg.pooling, zoneout=cfg.zoneout)
    if cfg.centered:
        x = CenteredFrames(name="centered")(x)
    pool = TemporalPooling(cfg.readout.split("+"), name="readout")
    runs = [x, Reverse(name="reversed")(x)] if cfg.bidirectional else [x]
    parts = [pool(qrnn_stack(seq, cfg.hidden, cfg.layers, cfg.dense, sequences=True, **options)) for seq in runs]
    h = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="both_directions")(parts)
    if cfg.dropout:
        h = keras.layers.Dropout(cfg.dropout, name="dropout")(h)
    if cfg.pace and cfg.skip:  # (_check: the logistic head)
        return paced_logistic(h, video, num_classes, cfg.qrnn_l2, cfg.l2, cfg.pace,
                              "zeros" if cfg.zero_skip else "glorot_uniform")
    features = keras.layers.Concatenate(name="with_video")([h, video]) if cfg.skip else h
    start = ZeroTail(h.shape[-1]) if cfg.skip and cfg.zero_skip else "glorot_uniform"
    return _head(features, num_classes, cfg, (h.shape[-1], cfg.qrnn_l2), start)


def build_logistic(num_classes, cfg: LogisticConfig):
    inputs, x = _video_input()
    return keras.Model(inputs, classifier(x, num_classes, "logistic", l2=cfg.l2), name="logistic")


def build_moe(num_classes, cfg: MoeConfig):
    inputs, x = _video_input()
    return keras.Model(inputs, classifier(x, num_classes, "moe", cfg.experts, cfg.l2), name="moe")


def build_lstm(num_classes, cfg: LstmConfig):
    inputs, x = _frame_inputs()
    for n in range(cfg.layers):
        x = keras.layers.LSTM(cfg.hidden, return_sequences=n < cfg.layers - 1, name=f"lstm_{n}")(x)
    return keras.Model(inputs, _head(x, num_classes, cfg), name="lstm")


def build_qrnn(num_classes, cfg: QrnnConfig):
    inputs, x = _frame_inputs()
    video = VideoFeatures(name="video_features")(inputs["video"])
    return keras.Model(inputs, _qrnn_head(x, num_classes, cfg, video), name="qrnn")


def build_qrnn_video(num_classes, cfg: QrnnVideoConfig):
    inputs = keras.Input((FEATURE_SIZE,), dtype="float32", name="video")
    video = VideoFeatures(name="video_features")(inputs)
    x = VideoChunks(cfg.chunk, name="chunks")(video)
    return keras.Model(inputs, _qrnn_head(x, num_classes, cfg, video), name="qrnn_video")


def build_nextvlad(num_classes, cfg: NextVladConfig):
    inputs, x = _frame_inputs()
    rgb = nextvlad(FeatureRange(0, RGB_SIZE, name="rgb")(x), cfg.clusters, cfg.groups, cfg.expansion,
                   "rgb_nextvlad")
    audio = nextvlad(FeatureRange(RGB_SIZE, FEATURE_SIZE, name="audio")(x), max(cfg.clusters // 2, 1),
                     max(cfg.groups // 2, 1), cfg.expansion, "audio_nextvlad")
    h = keras.layers.Concatenate(name="pooled")([rgb, audio])
    h = batch_norm("pooled_bn")(h)
    h = keras.layers.Dropout(cfg.dropout, name="pooled_dropout")(h)
    h = keras.layers.Dense(cfg.hidden, use_bias=False, name="hidden")(h)
    h = batch_norm("hidden_bn")(h)
    h = se_context_gating(h, cfg.gating_reduction)
    return keras.Model(inputs, classifier(h, num_classes, cfg.head, cfg.experts, cfg.l2), name="nextvlad")


MODELS = {
    "logistic": ModelSpec("video", LogisticConfig, build_logistic, "logistic regression (starter code)", 0.03),
    "moe": ModelSpec("video", MoeConfig, build_moe, "mixture of experts (starter code)", 0.03),
    "lstm": ModelSpec("frame", LstmConfig, build_lstm, "frame-level LSTM baseline", 0.003),
    "qrnn": ModelSpec("frame", QrnnConfig, build_qrnn, "frame-level QRNN", 0.005, clipnorm=0.0),
    "qrnn-video": ModelSpec("video", QrnnVideoConfig, build_qrnn_video, "QRNN over chunks of video features",
                            0.001),
    "nextvlad": ModelSpec("frame", NextVladConfig, build_nextvlad, "NeXtVLAD (Lin et al. 2018)", 0.003),
}


def spec(name: str) -> ModelSpec:
    """The registered model `name`, or InputError listing the known names."""
    if name not in MODELS:
        raise InputError("model", f"unknown model {name!r} (known: {', '.join(MODELS)})")
    return MODELS[name]


def make_config(name: str, overrides: dict | None = None):
    """The default configuration of model `name` with `overrides` applied (strings such as "512" or
    "true" are converted to the field's type); an unknown key or a bad value is an InputError."""
    cfg = spec(name).config_class()
    fields = {f.name for f in dataclasses.fields(cfg)}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise InputError(f"{name} config", f"unknown key {key!r} (known: {', '.join(sorted(fields))})")
        setattr(cfg, key, _convert(name, key, value, getattr(cfg, key)))
    _check(name, cfg)
    return cfg


def build(name: str, num_classes: int, config: dict | None = None) -> keras.Model:
    """An uncompiled Keras model `name` for `num_classes` classes; `config` overrides default fields."""
    cfg = config if dataclasses.is_dataclass(config) else make_config(name, config)
    _check(name, cfg)
    if int(num_classes) < 1:
        raise InputError(f"{name} config", f"num_classes must be at least 1, not {num_classes}")
    return spec(name).builder(int(num_classes), cfg)


def _convert(name, key, value, default):
    """`value` as the type of the field's default."""
    kind = type(default)
    if kind is bool and isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if kind is bool and isinstance(value, bool | int) and value in (0, 1):
        return bool(value)
    if kind is int and not isinstance(value, bool):
        try:
            if float(value) == int(float(value)):
                return int(float(value))
        except (TypeError, ValueError, OverflowError):
            pass
    if kind is float and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            pass
    if kind is str and isinstance(value, str):
        return value
    raise InputError(f"{name} config", f"{key} must be of type {kind.__name__}, not {value!r}")


def _check(name, cfg):
    """Refuse values the builders cannot use, naming the field."""
    problems = []
    for field in ("hidden", "layers", "window", "experts", "chunk", "clusters", "groups", "expansion",
                  "gating_reduction"):
        if getattr(cfg, field, 1) < 1:
            problems.append(f"{field} must be at least 1")
    if getattr(cfg, "pooling", "fo") not in POOLINGS:
        problems.append(f"pooling must be one of {', '.join(POOLINGS)}")
    if getattr(cfg, "head", "logistic") not in HEADS:
        problems.append(f"head must be one of {', '.join(HEADS)}")
    if not 0.0 <= getattr(cfg, "zoneout", 0.0) < 1.0:
        problems.append("zoneout must be in [0, 1)")
    if not 0.0 <= getattr(cfg, "dropout", 0.0) < 1.0:
        problems.append("dropout must be in [0, 1)")
    modes = getattr(cfg, "readout", "last").split("+")
    if any(mode not in READOUTS for mode in modes) or len(set(modes)) < len(modes):
        problems.append(f"readout must be distinct modes of {', '.join(READOUTS)} joined by '+'")
    if cfg.l2 < 0 or getattr(cfg, "qrnn_l2", 0.0) < 0:
        problems.append("l2 and qrnn_l2 must not be negative")
    if getattr(cfg, "pace", 0.0) < 0:
        problems.append("pace must not be negative")
    elif getattr(cfg, "pace", 0.0) and cfg.skip and (cfg.head != "logistic" or cfg.context_gating):
        problems.append("pace (of the skip path) needs the logistic head without context gating: set pace=0")
    if hasattr(cfg, "chunk") and cfg.chunk >= 1 and AUDIO_SIZE % cfg.chunk:
        problems.append(f"chunk must divide {AUDIO_SIZE} (each step all rgb or all audio)")
    if hasattr(cfg, "groups") and cfg.groups >= 1 and cfg.expansion >= 1 and (
            cfg.expansion * RGB_SIZE % cfg.groups or cfg.expansion * AUDIO_SIZE % max(cfg.groups // 2, 1)):
        problems.append(f"groups must divide expansion x {RGB_SIZE} (rgb) and half of them expansion x "
                        f"{AUDIO_SIZE} (audio)")
    if problems:
        raise InputError(f"{name} config", "; ".join(problems))
