"""Adam whose per-weight update is TensorFlow's fused kernel (`ResourceApplyAdam`): one pass over each
weight and its two moments instead of a dozen element-wise ops, the same rule as Keras' Adam."""

import keras
import tensorflow as tf


def _handle(variable):
    """The resource handle of a Keras variable or of the tf.Variable that tf.distribute passes in."""
    return variable.value.handle if isinstance(variable, keras.Variable) else variable.handle


@keras.saving.register_keras_serializable(package="yt8m")
class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam (its moments, clipping, loss scaling, saving and tf.distribute handling) with the
    update step done by one TensorFlow op per weight. Results differ from Keras' in the last bits:
    the kernel computes 1 - beta in float32 where Keras rounds it from a Python float."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            beta1_power=tf.pow(tf.cast(self.beta_1, dtype), step),
            beta2_power=tf.pow(tf.cast(self.beta_2, dtype), step),
            lr=tf.cast(learning_rate, dtype), beta1=tf.cast(self.beta_1, dtype),
            beta2=tf.cast(self.beta_2, dtype), epsilon=tf.cast(self.epsilon, dtype),
            grad=tf.cast(gradient, dtype))
