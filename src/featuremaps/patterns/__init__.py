"""What a channel looks for: feature visualization, dataset exemplars and first-layer filters
(``featuremaps patterns``; Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017).

The package, as a table of contents:

* ``image``: the image optimised: Fourier parameters with a 1/f scale, colour decorrelation, a sigmoid; and
  the exact adjoint of each step (NumPy: one implementation for every framework)
* ``transforms``: what happens between it and the model (random jitter, scale and rotation as one resampling;
  the model's own preprocessing), with their adjoints
* ``optimise``: Adam ascent of a batch of targets (one per channel) through the adapter's gradient primitive
* ``diversity``: the diversity term (several images of a channel pushed apart), its value and exact gradient
* ``exemplars``: the dataset images a channel responds to most, cropped to its receptive field
* ``kernels``: the first conv layer's weights as images
* ``compute``: :func:`find_patterns` and its :class:`Patterns` result (which displays itself in a notebook)
* ``figure``: ``patterns.png``; ``writing``: the output folder (PNG, NPZ, manifest)
"""

from featuremaps.patterns.compute import Patterns, find_patterns
from featuremaps.patterns.writing import write_patterns

__all__ = ["Patterns", "find_patterns", "write_patterns"]
