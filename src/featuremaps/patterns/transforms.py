"""What happens to the image between the parameterisation and the model, each with its exact adjoint (NumPy):

* :class:`Warp`: transformation robustness (Lucid's and lucent's ``standard_transforms``: pad 12 with grey,
  jitter 8, scale 0.9-1.1, rotate -10..10 degrees, jitter 4), drawn afresh for every image at every step. The
  five are one similarity transform, so they are applied as one bilinear resampling: output pixel ``p`` reads
  the image at ``c + R(-a) (p - c) / s - t`` (``c`` the centre, ``s`` the scale, ``a`` the angle, ``t`` the
  shift), grey (0.5, the padding's value) outside it. The output keeps the model's input size, which fixed-size
  models (the 48x48 emotion model) need; a shift of up to the padding plays the role of pad + jitter. Pixel
  amounts are Lucid's at 224 px, scaled to the image size (3 px of shift at 48 px).
  The resampling is a sparse linear map: its adjoint scatters each output gradient back onto the four pixels
  it was read from (``np.bincount``), so a gradient step sees exactly the image the model saw.
* :class:`Preprocessing`: the model's own preprocessing of 0-255 pixels (``featuremaps.loaded.preprocess_fn``:
  ``x / 255``, ``x / 127.5 - 1``, Caffe's BGR mean subtraction, torch's mean/std) is affine per pixel in every
  mode; it is measured once as ``y = x A + b`` (from the pixel values 0 and 255 of each channel, checked on a
  random image), so its adjoint is ``g A^T`` whatever the mode. A preprocessing that is not affine is refused.
"""

from __future__ import annotations

import numpy as np

from featuremaps.errors import UserError

#: lucent's ``random_scale`` choices and ``random_rotate`` angles (degrees; 0 drawn 6 times in 26)
SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))
ANGLES = tuple(range(-10, 11)) + (0,) * 5
#: lucent's pad (12) and jitters (8, 4) at 224 px: the largest shift, in pixels at 224 px
SHIFT_224 = 12
#: the grey that fills the padding (lucent's ``constant_value``)
FILL = 0.5


class Warp:
    """One random similarity transform per image of a batch (see the module docstring), and its adjoint.

    Example::

        >>> rng = np.random.default_rng(0)
        >>> w = Warp(rng, batch=2, h=48, w=48)
        >>> y = w.forward(np.full((2, 48, 48, 1), 0.5, np.float32))   # grey stays grey
        >>> g = w.adjoint(np.ones_like(y))                              # d sum(y) / d x

    Args:
        rng: the random generator (the optimisation's, so a seed gives the same images)
        batch, h, w: the images' number and size
        scales, angles: the choices drawn from (lucent's)
        shift: the largest shift in pixels (default :data:`SHIFT_224` scaled to the image size)
    """

    def __init__(self, rng, batch: int, h: int, w: int, scales=SCALES, angles=ANGLES, shift: int | None = None):
        self.shape = (int(batch), int(h), int(w))
        shift = max(1, round(SHIFT_224 * max(h, w) / 224)) if shift is None else int(shift)
        s = rng.choice(np.asarray(scales, np.float64), batch)
        a = np.deg2rad(rng.choice(np.asarray(angles, np.float64), batch))
        t = rng.integers(-shift, shift + 1, (batch, 2)).astype(np.float64)
        self.params = {"scale": s, "angle": np.rad2deg(a), "shift": t}
        yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
        cy, cx = (h - 1) / 2, (w - 1) / 2
        dy, dx = yy[None] - cy, xx[None] - cx
        cos, sin = (np.cos(a) / s)[:, None, None], (np.sin(a) / s)[:, None, None]
        # R(-a) (p - c) / s + c - t: where each output pixel reads the image
        sy = cos * dy - sin * dx + cy - t[:, 0, None, None]
        sx = sin * dy + cos * dx + cx - t[:, 1, None, None]
        y0, x0 = np.floor(sy), np.floor(sx)
        fy, fx = sy - y0, sx - x0
        base = (np.arange(batch) * h * w)[:, None, None]
        idx, wts, inside = [], [], np.zeros(sy.shape)
        for oy, ox, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            yi, xi = y0 + oy, x0 + ox
            ok = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            idx.append((base + np.where(ok, yi * w + xi, 0)).astype(np.int64).ravel())
            wts.append(np.where(ok, wt, 0.0).astype(np.float32).ravel())
            inside += np.where(ok, wt, 0.0)
        self._idx, self._w = idx, wts
        self._fill = (FILL * (1.0 - inside)).astype(np.float32).reshape(-1, 1)  # grey where a read falls outside

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The warped batch (B, H, W, C)."""
        flat = x.reshape(-1, x.shape[-1])
        out = self._fill + sum(w[:, None] * flat[i] for i, w in zip(self._idx, self._w, strict=True))
        return out.reshape(x.shape).astype(np.float32)

    def adjoint(self, g: np.ndarray) -> np.ndarray:
        """``d f / d x`` from ``g = d f / d forward(x)`` (the fill is constant: no gradient)."""
        n, c = int(np.prod(self.shape)), g.shape[-1]
        flat = g.reshape(-1, c).astype(np.float64)
        out = np.empty((n, c), np.float64)
        idx = np.concatenate(self._idx)
        for k in range(c):
            out[:, k] = np.bincount(idx, np.concatenate([w * flat[:, k] for w in self._w]), minlength=n)
        return out.reshape(g.shape).astype(np.float32)


class Preprocessing:
    """The model's preprocessing of pixels in [0, 1] (``fn`` takes 0-255 pixels, as every loaded model's
    ``preprocess_fn``) as the affine map ``y = x A + b`` per pixel, measured once (see the module docstring).

    Args:
        fn: the model's preprocessing of a (..., C) array of 0-255 pixels
        channels: C
    """

    def __init__(self, fn, channels: int):
        c = int(channels)
        probe = np.concatenate([np.zeros((1, c)), 255.0 * np.eye(c)]).astype(np.float32)[None, None]
        y = np.asarray(fn(probe.copy()), np.float64)[0, 0]
        self.b = y[0]
        self.A = y[1:] - y[0]  # row j: what pixel value 1 (255) in channel j adds to each output channel
        x = np.random.default_rng(0).random((1, 3, 3, c)).astype(np.float32)
        if not np.allclose(np.asarray(fn(x * 255.0), np.float64), self.forward(x), atol=1e-3, rtol=1e-4):
            raise UserError(
                "the model's preprocessing is not an affine map of the pixels; patterns need one it can "
                "differentiate (pass --preprocess unit, symmetric, caffe or torch)"
            )
        self.A = self.A.astype(np.float32)
        self.b = self.b.astype(np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return (x @ self.A + self.b).astype(np.float32)

    def adjoint(self, g: np.ndarray) -> np.ndarray:
        return (g @ self.A.T).astype(np.float32)
