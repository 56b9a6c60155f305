"""The batch normalisation of the emotion models' training form: Keras' ``BatchNormalization``, computed by one
fused kernel on TensorFlow.

Keras 3 computes BN from generic ops (moments, then ``(x - mean) * rsqrt(var + eps) * gamma + beta``), and under
the mixed bfloat16 policy it casts each map to float32 and back: five passes over every activation forward and
more backward. TensorFlow's ``FusedBatchNormV3`` (oneDNN's on x86) normalises bfloat16 or float32 maps in one pass
with float32 statistics, and its gradient is one kernel too. On the Xeon with AMX this made a VGG-16 training step
1.6x faster (BENCHMARKS.md, issue 23 part 2), with the same outputs, gradients and moving statistics as Keras'
layer (``tests/test_emotion_norm.py`` compares them).

On the JAX and torch backends, for masked or non-4D input, and with ``renorm``/``synchronized``, the layer is
Keras' own. It is registered as ``featuremaps>FusedBatchNormalization``: ``.keras`` files ``featuremaps train``
writes load where ``featuremaps.emotion.model`` (or ``featuremaps.load_model``) has been imported.
"""

from __future__ import annotations

import keras

if keras.backend.backend() == "tensorflow":  # the backend is fixed once Keras is imported
    import tensorflow as tf
else:
    tf = None


@keras.saving.register_keras_serializable(package="featuremaps")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` over the last axis of NHWC maps, one fused kernel on TensorFlow.

    Same weights, arguments and results as Keras' layer (Ioffe & Szegedy 2015): in training
    ``y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta`` with the batch's mean and biased variance over
    N, H, W, and ``moving = momentum * moving + (1 - momentum) * batch_statistic``; in inference the moving
    statistics. TensorFlow's kernel returns the Bessel-corrected variance for the moving average; it is scaled
    back by ``(n - 1) / n`` so that the moving variance is Keras'.

    Example::

        x = FusedBatchNormalization(momentum=0.9, name="block1_bn1")(x)
    """

    def call(self, inputs, training=None, mask=None):
        axis = self.axis if isinstance(self.axis, int) else None
        if tf is None or mask is not None or len(inputs.shape) != 4 or axis not in (-1, 3):
            return super().call(inputs, training=training, mask=mask)
        if self.renorm or self.synchronized:
            return super().call(inputs, training=training, mask=mask)
        ones = tf.ones_like(self.moving_mean)
        scale = tf.cast(self.gamma, "float32") if self.scale else ones
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros_like(self.moving_mean)
        if training and self.trainable:
            y, mean, var = tf.compat.v1.nn.fused_batch_norm(
                inputs, scale, offset, epsilon=self.epsilon, data_format="NHWC", is_training=True
            )[:3]
            shape = tf.shape(inputs)
            n = tf.cast(shape[0] * shape[1] * shape[2], "float32")
            var = var * (n - 1.0) / tf.maximum(n, 1.0)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + var * (1.0 - m))
        else:
            y = tf.compat.v1.nn.fused_batch_norm(
                inputs,
                scale,
                offset,
                mean=self.moving_mean,
                variance=self.moving_variance,
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=False,
            )[0]
        return tf.cast(y, self.compute_dtype)
