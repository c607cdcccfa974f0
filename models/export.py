"""Compact exports: a model folder rewritten with float16 or int8 weights that predicts like any other.

- float16: every layer keeps its weights in float16 and computes in float32 (the HalfWeights dtype policy:
  Keras casts a weight to the compute dtype whenever a layer uses it), so the file is half the size and only
  the rounding of the weights changes the scores.
- int8: Keras' own quantization, `layer.quantize("int8")`, of every layer that supports it (Dense, the QRNN,
  the mixture of experts), weights only: an int8 kernel with one float scale per output unit, inputs left in
  float (quantizing them too lost as much GAP and ran 3x slower here); the other layers in float16.
The export's card gives both sizes and the change in validation GAP, measured on the validation store named
in the source's card (the source re-measured in the same run, on the same store).
"""

import dataclasses
from pathlib import Path

import keras

from common.card import Card
from common.errors import InputError
from common.files import atomic_path
from features.store import Store
from models.inference import load_model_dir, sampled_frames, store_scores
from models.train import dtype_policy

WEIGHTS = ("float16", "int8")
WEIGHTS_ONLY = keras.quantizers.Int8QuantizationConfig(activation_quantizer=None)


@keras.saving.register_keras_serializable(package="yt8m")
class HalfWeights(keras.DTypePolicy):
    """Weights stored in float16, computation in float32."""

    def __init__(self, name="half_weights"):
        super().__init__(name)

    def _parse_name(self, name):
        return "float32", "float16"


def half_weights() -> keras.dtype_policies.DTypePolicyMap:
    """HalfWeights as a layer's dtype: wrapped in a DTypePolicyMap (with no entries), because Keras saves a
    plain policy by its name alone and would reload it as float32."""
    return keras.dtype_policies.DTypePolicyMap(default_policy=HalfWeights())


def quantizable(layer) -> bool:
    """The layer implements Keras' quantize()."""
    return type(layer).quantize is not keras.layers.Layer.quantize


def layers_of(model: keras.Model):
    """Every layer of a functional model, the layers of nested models (an ensemble's members) included."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from layers_of(layer)
        else:
            yield layer


def compact_model(model: keras.Model, weights: str) -> keras.Model:
    """A copy of `model` with `weights` ("float16" or "int8") weights; `model` itself gets the new policies."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, not {weights!r}")
    for layer in layers_of(model):
        if layer.weights and not (weights == "int8" and quantizable(layer)):
            layer.dtype_policy = half_weights()
    with dtype_policy(half_weights()):
        compact = model.__class__.from_config(model.get_config())
    compact.set_weights(model.get_weights())  # float32 values rounded into float16 variables
    if weights == "int8":
        for layer in layers_of(compact):
            if quantizable(layer):
                layer.quantize("int8", config=WEIGHTS_ONLY)
    return compact


def export(model_dir, out, weights: str, batch_size: int = 256) -> Card:
    """Write `out`, a copy of the model folder `model_dir` with `weights` weights, and its card."""
    model_dir, out = Path(model_dir), Path(out)
    if weights not in WEIGHTS:
        raise InputError("--weights", f"must be one of {', '.join(WEIGHTS)}, not {weights!r}")
    model, card = load_model_dir(model_dir)
    validate = card.config.get("training", {}).get("validate")
    if not validate:
        raise InputError(model_dir / "card.json", "names no validation store to measure the export on")
    store = Store(validate)
    frames = sampled_frames(card)
    before = store_scores(model, store, card.level, frames, batch_size)
    compact = compact_model(model, weights)
    with atomic_path(out / "model.keras") as tmp:
        compact.save(tmp)
    reloaded = keras.models.load_model(out / "model.keras", compile=False)
    after = store_scores(reloaded, store, card.level, frames, batch_size)  # the saved file, end to end
    source_bytes = (model_dir / "model.keras").stat().st_size
    file_bytes = (out / "model.keras").stat().st_size
    exported = dataclasses.replace(
        card, run=out.name, file_bytes=file_bytes, inference_videos_per_second=None, created=Card.now(),
        validation={"gap": after.gap, "hit_at_one": after.hit_at_one, "perr": after.perr},
        export={"source": str(model_dir.resolve()), "weights": weights, "source_file_bytes": source_bytes,
                "size_ratio": round(file_bytes / source_bytes, 4), "source_validation_gap": before.gap,
                "validation_gap_change": after.gap - before.gap, "validate": str(store.path.resolve())})
    exported.save(out / "card.json")
    print(f"{out}: {weights} weights, {file_bytes / 1e6:.1f} MB ({file_bytes / source_bytes:.0%} of "
          f"{source_bytes / 1e6:.1f} MB); validation GAP {after.gap:.4f} ({after.gap - before.gap:+.4f})")
    return exported
