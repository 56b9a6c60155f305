"""Run an image through any model once and take the chosen conv layers' maps: the one feature extractor.

It speaks only the model protocol (:mod:`featuremaps.frameworks`): the adapter lists the conv layers and their
shapes, and gives a function of a batch that returns each chosen layer's maps, channel ids and statistics
(:meth:`~featuremaps.frameworks.ModelAdapter.maps_fn`; Keras does the selection inside its graph, the others
in NumPy). Channel selection itself is decided in :mod:`featuremaps.maps`.
"""

from __future__ import annotations

import numpy as np

from featuremaps.errors import UserError
from featuremaps.frameworks import adapter
from featuremaps.maps import (  # noqa: F401 (STATS, parse_select, LayerMaps: re-exported for old imports)
    STATS,
    LayerDict,
    LayerMaps,
    Pick,
    parse_select,
    pick_channels,
    select_layers,
)


class FeatureExtractor:
    """The feature-map model for one (model, layers, selection, input shape); call it on batches.

    Built once and reused for every image, so a folder of images costs one graph build. ``model``: a Keras
    model, a ``torch.nn.Module``, an ONNX session or path, or a :class:`~featuremaps.frameworks.ModelAdapter`.
    """

    def __init__(
        self,
        model,
        input_shape: tuple[int, int, int],
        layers="all",
        maps: int | None = 16,
        select: str | list[int] | None = "first",
    ):
        self.input_shape = tuple(int(d) for d in input_shape)
        self.adapter = ad = adapter(model, self.input_shape)
        self.model = model
        self.all_layers = ad.conv_layers(self.input_shape)
        self.layers = select_layers(self.all_layers, layers)
        mode, chans = parse_select(select)
        self.mode = mode
        shapes = ad.layer_shapes(self.input_shape)
        self.shapes, self.notes, picks = [], [], []
        for c in self.layers:
            if c.name not in shapes:
                raise UserError(f"layer {c.name} is not on the path from the model's input to its output")
            shape = tuple(shapes[c.name])
            if len(shape) != 3 or any(d is None for d in shape):
                raise UserError(f"layer {c.name} has output shape {(None, *shape)}; featuremaps needs (H, W, C)")
            shape = tuple(int(d) for d in shape)
            k, ids, note = pick_channels(c, shape[-1], mode, chans, maps)
            self.shapes.append(shape)
            self.notes.append(note)
            picks.append(Pick("first" if mode == "list" else mode, k, tuple(ids)))
        self._run, self.with_predictions = ad.maps_fn(self.input_shape, self.layers, picks)
        self.intermediate = getattr(self._run, "intermediate", None)  # Keras: the feature-map model

    def __call__(self, batch: np.ndarray) -> tuple[list[LayerMaps], np.ndarray | None]:
        """``batch`` (B, H, W, C) preprocessed float32 -> per-layer maps and the model's output (or None)."""
        rows, preds = self._run(np.asarray(batch, dtype=np.float32))
        out = [
            LayerMaps(c, self.shapes[j], maps, ids, stats, self.notes[j])
            for j, (c, (maps, ids, stats)) in enumerate(zip(self.layers, rows, strict=True))
        ]
        return out, preds


def feature_extractor(model, input_shape, layers="all", maps: int | None = 16, select="first") -> FeatureExtractor:
    """A :class:`FeatureExtractor` (the name the products call it by)."""
    return FeatureExtractor(model, input_shape, layers=layers, maps=maps, select=select)


def extract(model, image: np.ndarray, layers="all", maps: int | None = None, select="first") -> LayerDict:
    """Feature maps of one preprocessed image ``(H, W, C)``: ``{layer_name: (h, w, k) float32}``, in order.

    Any model: Keras, a ``torch.nn.Module``, an ``onnxruntime.InferenceSession`` or an ``.onnx`` path. The
    image is channels last whatever the framework (a torch module gets it as NCHW). ``maps=None`` returns every
    channel; otherwise ``k = min(maps, C)`` channels chosen by ``select``.

    Example::

        >>> maps = fm.extract(torchvision.models.resnet18().eval(), np.zeros((224, 224, 3), np.float32))
        >>> maps["layer1.0.conv1"].shape
        (56, 56, 64)
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[..., None]
    fx = FeatureExtractor(model, image.shape, layers=layers, maps=maps, select=select)
    results, _ = fx(image[None])
    out = LayerDict((r.conv.name, r.maps[0]) for r in results)
    out.shapes = {r.conv.name: r.shape for r in results}
    out.channels = {r.conv.name: r.channels[0] for r in results}
    return out
