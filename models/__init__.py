"""Models and their training. Importing this package registers the project's custom Keras layers, regularizer
and optimizer, so a saved `model.keras` loads with `keras.models.load_model` after `import models`."""

import sys

if sys.argv[:1] == ["-m"]:  # `python -m models` imports this package first: quiet TensorFlow before it loads
    from common.cli import quiet_tensorflow

    quiet_tensorflow()

from models import ensemble, export, heads, inputs, nextvlad, optimizer, pooling, qrnn  # noqa: E402, F401  (registers them)
