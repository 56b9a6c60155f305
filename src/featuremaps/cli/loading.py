"""What every command that takes ``--model`` does first: load the model from its options, and refuse a bad
``--layers`` before the first image (one place for both)."""

from __future__ import annotations

from featuremaps import models
from featuremaps.frameworks import conv_layers
from featuremaps.maps import ConvLayer, select_layers


def model_options(args) -> dict:
    """``--model``, ``--weights``, ``--unsafe``, ``--preprocess`` and ``--classes`` (those the command has) as
    :func:`featuremaps.models.load`'s keywords (plain data: atlas --engine ray sends them to its actors)."""
    classes = getattr(args, "classes", None)
    return {
        "spec": args.model,
        "weights": args.weights,
        "unsafe": getattr(args, "unsafe", False),
        "preprocess": getattr(args, "preprocess", None),
        "classes": classes.split(",") if classes else None,
    }


def load_model_from_args(args, **options) -> models.LoadedModel:
    """The model the command's options name; ``options`` (``random_head=False``) pass on to ``models.load``."""
    return models.load(**model_options(args), **options)


def check_layers(lm: models.LoadedModel, layers, input_shape=None) -> list[ConvLayer]:
    """The conv layers ``--layers`` picks, or the one-line error (no conv layers, a bad name) before any work."""
    return select_layers(conv_layers(lm.model, input_shape), layers)
