"""Models and their training. Importing this package registers the project's custom Keras layers, so a
saved `model.keras` loads with `keras.models.load_model` after `import models`."""

from models import heads, inputs, pooling, qrnn  # noqa: F401  (registers the custom layers)
