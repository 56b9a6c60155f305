"""The image being optimised: a Fourier-parameterised, colour-decorrelated, sigmoid-bounded batch, with the
exact adjoint of each step (NumPy, so one implementation serves every framework).

The recipe of Lucid and lucent (Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017; lucent's
``optvis/param/spatial.py`` and ``color.py``)::

    spectrum  S = scale * (re + i im),      scale(f) = 1 / max(|f|, 1 / max(H, W))       (1/f, decay power 1)
    spatial   t = irfft2(S, norm="ortho") / 4                                           (Lucid's "magic" 4)
    colour    u = t @ M^T                   M: ImageNet's colour correlation square root, columns normalised
    pixels    x = sigmoid(u)                in (0, 1), RGB or one grey channel

The parameters are ``re`` and ``im`` (B, C, H, W // 2 + 1), drawn N(0, 0.01): the start is a flat grey. The 1/f
scale makes every frequency equally easy for gradient descent to move, so the optimum is not dominated by the
high frequencies a pixel parameterisation drifts into (the adversarial noise of naive gradient ascent). A
grayscale model (one input channel) has no colour step.

:meth:`FourierImage.backward` applies the adjoint of each linear step (``rfft2`` for ``irfft2``, with the weight 2
of the half-spectrum columns that stand for two conjugate ones) and the sigmoid's derivative: the gradient with
respect to the parameters of any function of ``x`` given its gradient with respect to ``x``
(``tests/test_patterns.py`` checks it against finite differences).
"""

from __future__ import annotations

import numpy as np

#: lucent/Lucid's ``color_correlation_svd_sqrt``: the square root of ImageNet's RGB covariance (rows R, G, B)
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
#: the same, every column scaled so that the largest column norm is 1 (lucent's ``color_correlation_normalized``)
COLOR_MATRIX = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
#: Lucid's constant dividing the spatial image ("increasing this seems to reduce saturation")
MAGIC = 4.0
#: standard deviation of the initial spectrum (lucent's ``sd``)
INIT_SD = 0.01


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
    """``1 / max(|f|, 1 / max(h, w)) ** decay_power`` over the (h, w // 2 + 1) frequencies of an ``rfft2``."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return (1.0 / np.maximum(np.sqrt(fx * fx + fy * fy), 1.0 / max(h, w)) ** decay_power).astype(np.float32)


class FourierImage:
    """A batch of ``batch`` images (H, W, ``channels``) as Fourier parameters (see the module docstring).

    Example::

        >>> im = FourierImage(2, 8, 8, 3, seed=0)
        >>> x = im.forward()             # (2, 8, 8, 3) in (0, 1), grey at the start
        >>> g = im.backward(np.ones_like(x))   # d sum(x) / d params, im.params' shape

    Args:
        batch: images optimised together
        h, w: their size
        channels: 3 (RGB, colour-decorrelated) or 1 (grey)
        seed: the initial spectrum's random seed
        decay_power: the spectrum's 1/f exponent (1, as Lucid)
    """

    def __init__(self, batch: int, h: int, w: int, channels: int, seed: int = 0, decay_power: float = 1.0):
        self.h, self.w, self.channels = int(h), int(w), int(channels)
        self.scale = spectrum_scale(self.h, self.w, decay_power)
        rng = np.random.default_rng(seed)
        self.params = rng.normal(0.0, INIT_SD, (batch, self.channels, self.h, self.w // 2 + 1, 2)).astype(np.float32)
        self._x: np.ndarray | None = None

    def spatial(self, params: np.ndarray | None = None) -> np.ndarray:
        """``t = irfft2(scale (re + i im)) / 4``, channels last (B, H, W, C)."""
        p = self.params if params is None else params
        spec = self.scale * (p[..., 0] + 1j * p[..., 1])
        t = np.fft.irfft2(spec, s=(self.h, self.w), norm="ortho") / MAGIC
        return t.transpose(0, 2, 3, 1).astype(np.float32)

    def spatial_adjoint(self, g: np.ndarray) -> np.ndarray:
        """The adjoint of :meth:`spatial`: ``g`` (B, H, W, C) -> the parameters' shape."""
        spec = np.fft.rfft2(g.transpose(0, 3, 1, 2).astype(np.float64), norm="ortho") / MAGIC
        spec[..., 1 : (self.w + 1) // 2] *= 2.0  # a half-spectrum column stands for itself and its conjugate
        spec *= self.scale
        return np.stack([spec.real, spec.imag], axis=-1).astype(np.float32)

    def colour(self, t: np.ndarray) -> np.ndarray:
        """``u = t @ M^T`` for RGB (lucent's ``_linear_decorrelate_color``); grey images pass as they are."""
        return t @ COLOR_MATRIX.T if self.channels == 3 else t

    def colour_adjoint(self, g: np.ndarray) -> np.ndarray:
        return g @ COLOR_MATRIX if self.channels == 3 else g

    def forward(self, params: np.ndarray | None = None) -> np.ndarray:
        """The images ``x = sigmoid(colour(spatial(params)))`` (B, H, W, C), float32 in (0, 1)."""
        u = self.colour(self.spatial(params))
        self._x = (1.0 / (1.0 + np.exp(-u))).astype(np.float32)
        return self._x

    def backward(self, g: np.ndarray) -> np.ndarray:
        """``d f / d params`` from ``g = d f / d x`` at the last :meth:`forward`'s images."""
        if self._x is None:
            self.forward()
        x = self._x
        return self.spatial_adjoint(self.colour_adjoint(g * x * (1.0 - x)))
