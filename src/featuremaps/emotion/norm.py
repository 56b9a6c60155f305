"""The batch normalisation of the emotion models' training form: Keras' ``BatchNormalization``, computed by the
backend's own fused kernel on TensorFlow and torch.

Keras 3 computes BN from generic ops (moments, then ``(x - mean) * rsqrt(var + eps) * gamma + beta``), and under
the mixed bfloat16 policy it casts each map to float32 and back: several passes over every activation forward
and more backward. TensorFlow's ``FusedBatchNormV3`` (oneDNN's on x86) and torch's ``batch_norm`` normalise
bfloat16 or float32 maps in one pass with float32 statistics, and each one's gradient is one kernel too. On the
Xeon with AMX this made a VGG-16 training step 1.6x faster on TensorFlow and 1.5x on torch (bfloat16; float32 on
torch: 1.16x; BENCHMARKS.md, issue 23 part 2), with the same outputs, gradients and moving statistics as Keras'
layer (``tests/test_emotion_norm.py`` compares them).

On JAX (XLA fuses the generic ops itself), for masked or non-4D input, and with ``renorm``/``synchronized``, the
layer is Keras' own. It is registered as ``featuremaps>FusedBatchNormalization``: ``.keras`` files
``featuremaps train`` writes load where ``featuremaps.emotion.model`` (or ``featuremaps.load_model``) has been
imported.
"""

from __future__ import annotations

import keras

from featuremaps.cpu import has_bf16

BACKEND = keras.backend.backend()  # fixed once Keras is imported
#: whether bfloat16 maps go to TensorFlow's fused kernel as they are: oneDNN has no bfloat16 BN below AVX-512
#: (on an AVX2-only CPU it fails to create the primitive), so elsewhere they are cast to float32 first, as
#: Keras' layer does; bfloat16 is emulated there anyway (read only where TensorFlow runs)
NATIVE_BF16 = BACKEND == "tensorflow" and has_bf16()
if BACKEND == "tensorflow":
    import tensorflow as tf
elif BACKEND == "torch":
    import torch.nn.functional as torch_functional


@keras.saving.register_keras_serializable(package="featuremaps")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` over the last axis of NHWC maps, one fused kernel on TensorFlow and torch.

    Same weights, arguments and results as Keras' layer (Ioffe & Szegedy 2015): in training
    ``y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta`` with the batch's mean and biased variance over
    N, H, W, and ``moving = momentum * moving + (1 - momentum) * batch_statistic``; in inference the moving
    statistics. Both backends' kernels average the Bessel-corrected variance into the moving one; it is scaled
    back by ``(n - 1) / n`` (``n = N * H * W``) so that the moving variance is Keras'.

    Example::

        x = FusedBatchNormalization(momentum=0.9, name="block1_bn1")(x)
    """

    def call(self, inputs, training=None, mask=None):
        axis = self.axis if isinstance(self.axis, int) else None
        fusable = mask is None and len(inputs.shape) == 4 and axis in (-1, 3) and not (self.renorm or self.synchronized)
        if fusable and BACKEND == "tensorflow":
            return self._tensorflow(inputs, training)
        if fusable and BACKEND == "torch":
            return self._torch(inputs, training)
        return super().call(inputs, training=training, mask=mask)

    def _tensorflow(self, inputs, training):
        if inputs.dtype == tf.bfloat16 and not NATIVE_BF16:
            inputs = tf.cast(inputs, "float32")
        scale = tf.cast(self.gamma, "float32") if self.scale else tf.ones_like(self.moving_mean)
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros_like(self.moving_mean)
        train = bool(training and self.trainable)
        stored = {} if train else {"mean": self.moving_mean, "variance": self.moving_variance}
        y, mean, var = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, epsilon=self.epsilon, data_format="NHWC", is_training=train, **stored
        )[:3]
        if train:
            shape = tf.shape(inputs)
            n = tf.cast(shape[0] * shape[1] * shape[2], "float32")
            var = var * (n - 1.0) / tf.maximum(n, 1.0)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + var * (1.0 - m))
        return tf.cast(y, self.compute_dtype)

    def _torch(self, inputs, training):
        x = inputs.permute(0, 3, 1, 2)  # the NHWC maps seen as NCHW: channels-last memory, no copy
        gamma = self.gamma.value if self.scale else None
        beta = self.beta.value if self.center else None
        mean, var = self.moving_mean.value, self.moving_variance.value
        if training and self.trainable:
            m = self.momentum
            old_var = var.detach()
            new_mean, new_var = mean.detach().clone(), old_var.clone()  # torch updates these in place
            y = torch_functional.batch_norm(x, new_mean, new_var, gamma, beta, True, 1.0 - m, self.epsilon)
            n = x.numel() // max(x.shape[1], 1)
            self.moving_mean.assign(new_mean)
            self.moving_variance.assign(old_var * m + (new_var - old_var * m) * ((n - 1) / max(n, 1)))
        else:
            y = torch_functional.batch_norm(x, mean, var, gamma, beta, False, 0.0, self.epsilon)
        return keras.ops.cast(y.permute(0, 2, 3, 1), self.compute_dtype)
