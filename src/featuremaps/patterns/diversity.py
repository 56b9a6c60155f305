"""The diversity term: several images of one channel pushed apart in style (Lucid's ``objectives.diversity``,
lucent's ``optvis/objectives.py::diversity``; Olah, Mordvintsev & Schubert, "Feature Visualization", Distill
2017, section "Diversity"), its value and its exact gradient in NumPy (one implementation for every framework).

For a group of N images of one channel, with ``A_i`` (P positions x C channels) the maps of image ``i`` at the
layer read (after the ReLU)::

    G_i = A_i^T A_i                  Gram matrix, C x C (style: which channels fire together, not where)
    g_i = G_i / ||G_i||_F            flattened and L2-normalised (Lucid: ``tf.nn.l2_normalize(grams, [1, 2])``)
    D   = - mean_{i < j} <g_i, g_j>  minus the mean pairwise cosine similarity, in [-1, 0]

and its gradient, by the chain rule (``H_i = dD/dg_i``, ``K_i = dD/dG_i``, symmetric)::

    H_i = -2 / (N (N - 1)) sum_{j != i} g_j
    K_i = (H_i - g_i <g_i, H_i>) / ||G_i||_F
    dD/dA_i = 2 A_i K_i

(or, where a layer has fewer positions than channels, the same through the P x P products ``A_i A_j^T``).

Lucid and lucent sum over ordered pairs and divide by N (``sum_{i != j} <g_i, g_j> / N`` = (N - 1) x the mean);
here it is the mean, so that D lies in [-1, 0] whatever N is (the weight: :data:`DEFAULT_WEIGHT`).
``tests/test_patterns.py`` checks the gradient against finite differences.
"""

from __future__ import annotations

import numpy as np

#: ``--diversity``'s default when ``--images`` is 2 or more. Lucid's and lucent's examples take
#: ``channel(layer, k) - 1e2 * diversity(layer)`` with 4 images, against InceptionV1's channel means, whose
#: optimised values run to the hundreds; the emotion model's reach ~5 (C8), and 10 strikes the same balance
#: there: on C8 F388 and F439 of the 70.3% model (3 images, 256 steps, seed 0) the mean Gram cosine falls from
#: 0.92 / 0.95 (weight 0) to 0.32 / 0.44, each image keeping 66-94% of the undiversified objective; at 3 it is
#: only 0.76 / 0.84. A model with much larger activations needs a larger weight (README "Several images per
#: channel").
DEFAULT_WEIGHT = 10.0
#: Lucid's ``l2_normalize`` epsilon: a dead layer (G = 0) has no direction and no gradient
EPS = 1e-10


def gram_diversity(acts: np.ndarray, groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``D`` of each group and ``dD/dA``: the diversity of the module docstring.

    Formula: ``D = -mean_{i<j} <G_i / |G_i|, G_j / |G_j|>`` with ``G_i = A_i^T A_i`` over positions (Lucid's
    ``objectives.diversity``, up to its (N - 1) factor; Olah et al., Distill 2017).

    Example::

        >>> acts = np.random.default_rng(0).random((6, 5, 5, 8))   # 2 channels x 3 images each
        >>> d, grad = gram_diversity(acts, groups=2)
        >>> d.shape, grad.shape
        ((2,), (6, 5, 5, 8))

    Args:
        acts: (G * N, h, w, C) maps after the ReLU, the N images of each group consecutive
        groups: G, the number of groups (channels); N = len(acts) // G must be 2 or more
    Returns:
        ``(values (G,), gradient (G * N, h, w, C))`` float64
    """
    a = np.asarray(acts, np.float64)
    b, h, w, c = a.shape
    n = b // groups
    if n * groups != b or n < 2:
        raise ValueError(f"{b} images do not make {groups} groups of 2 or more")
    flat = a.reshape(groups, n, h * w, c)
    if h * w < c:  # few positions, many channels (a deep layer): through the positions' cross products
        values, grad = zip(*(_by_positions(x) for x in flat), strict=True)
    else:
        values, grad = zip(*(_by_grams(x) for x in flat), strict=True)
    return np.asarray(values), np.stack(grad).reshape(b, h, w, c)


def _by_grams(x: np.ndarray) -> tuple[float, np.ndarray]:
    """One group ``x`` (N, P, C): D and dD/dA through the C x C Gram matrices (the module docstring)."""
    n, c = len(x), x.shape[-1]
    grams = x.transpose(0, 2, 1) @ x
    norms = np.maximum(np.sqrt((grams * grams).sum(axis=(1, 2))), EPS)
    unit = grams / norms[:, None, None]
    vec = unit.reshape(n, c * c)
    sims = vec @ vec.T  # cosines, 1 on the diagonal
    pairs = n * (n - 1)
    hh = -2.0 / pairs * (unit.sum(axis=0) - unit)  # dD/dg_i = -2/(N(N-1)) sum_{j != i} g_j
    along = (unit * hh).sum(axis=(1, 2))[:, None, None]  # <g_i, H_i>
    k = (hh - unit * along) / norms[:, None, None]
    return -(sims.sum() - np.trace(sims)) / pairs, 2.0 * (x @ k)


def _by_positions(x: np.ndarray) -> tuple[float, np.ndarray]:
    """The same through the P x P cross products ``M_ij = A_i A_j^T`` (cheaper when P < C: C8 of the emotion
    model is 36 positions x 512 channels): ``<G_i, G_j> = |M_ij|^2`` (trace identity), and
    ``dD/dA_i = 4c/|G_i| (sum_{j != i} cos_ij M_ii A_i / |G_i| - sum_{j != i} M_ij A_j / |G_j|)``,
    ``c = 1 / (N (N - 1))``."""
    n, p, c = x.shape
    rows = x.reshape(n * p, c)
    m = (rows @ rows.T).reshape(n, p, n, p).transpose(0, 2, 1, 3)  # m[i, j] = A_i A_j^T
    dots = (m * m).sum(axis=(2, 3))  # <G_i, G_j>
    norms = np.maximum(np.sqrt(np.diag(dots)), EPS)
    cos = dots / np.outer(norms, norms)
    off = cos.sum(axis=1) - np.diag(cos)  # sum_{j != i} cos_ij
    pairs = n * (n - 1)
    coef = -4.0 / pairs / np.outer(norms, norms)
    np.fill_diagonal(coef, 4.0 / pairs * off / norms**2)
    blocks = (coef[:, :, None, None] * m).transpose(0, 2, 1, 3).reshape(n * p, n * p)
    return -off.sum() / pairs, (blocks @ rows).reshape(n, p, c)


def pre_activation_gradient(maps: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(D (G,), dD/dz, A)`` from a layer's ``maps`` as the adapter's ``forward`` gives them: the diversity is
    taken on ``A = relu(maps)`` and its gradient carried to the tensor the gradient primitive reads.

    That tensor is the conv's pre-activation ``z`` (the channel objective's, Lucid's ``_pre_relu``). With
    ``A = relu(z)``, ``dD/dz = dD/dA * (z > 0)``, and ``z > 0`` exactly where ``maps > 0`` whether ``maps`` is
    ``relu(z)`` (Keras, the activation fused into the conv) or ``z`` itself (PyTorch, whose ReLU is a module
    after the conv; an unfused Keras conv): the same mask serves both. A fused activation other than ReLU gets
    the ReLU's mask, an approximation (featuremaps' models use ReLU)."""
    maps = np.asarray(maps, np.float32)
    acts = np.maximum(maps, 0.0)
    values, grad = gram_diversity(acts, groups)
    return values, (grad * (maps > 0)).astype(np.float32), acts
