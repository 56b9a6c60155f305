"""The model protocol itself (see :mod:`featuremaps.frameworks` for the whole of it): :class:`ModelAdapter`, which
every framework's adapter implements. Imports no framework and no implementation (httpx keeps its transport
protocol in ``_transports/base.py`` the same way), so the implementations import it without a cycle."""

from __future__ import annotations

import numpy as np

from featuremaps.errors import UserError
from featuremaps.maps import ConvLayer, Pick, select_maps
from featuremaps.targets import batch_layer


class ModelAdapter:
    """A model as featuremaps sees it (see the module docstring for the protocol)."""

    framework = ""
    name = "model"
    input_shape: tuple = (None, None, None)
    has_gradients = False
    #: whether a batch's gradients can run in bfloat16 (``gradients(..., precision="bfloat16")``)
    bfloat16 = False
    #: whether ``head_scores`` can re-run the network with a layer's maps replaced (Ablation-CAM)
    has_head_scores = False
    #: what a ``ClassScore`` differentiates: "logit" (pre-softmax scores) or "output"
    score = "output"

    def conv_layers(self, input_shape=None) -> list[ConvLayer]:
        """Conv layers in forward order; ``input_shape`` (H, W, C) for models that must run to find them."""
        raise NotImplementedError

    def forward(self, batch: np.ndarray, names: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        raise NotImplementedError

    def output_shape(self, input_shape: tuple[int, int, int]) -> tuple:
        raise NotImplementedError

    def layer_shapes(self, input_shape: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
        """``{name: (h, w, C)}`` of every conv layer for one input shape."""
        raise NotImplementedError

    def layer_kind(self, name: str) -> str | None:
        """The type of the model's layer called ``name`` that is not a conv layer, else None."""
        return None

    def maps_fn(self, input_shape, convs: list[ConvLayer], picks: list[Pick]):
        """``(run, with_predictions)``: ``run(batch)`` gives ``([(maps, ids, stats) per conv], output or None)``,
        the chosen channels of one forward pass (here: all maps out, selected in NumPy)."""
        with_predictions = len(self.output_shape(input_shape)) == 2
        names = [c.name for c in convs]

        def run(batch):
            acts, out = self.forward(batch, names)
            rows = [select_maps(acts[n], p) for n, p in zip(names, picks, strict=True)]
            return rows, np.asarray(out, np.float32) if with_predictions and out is not None else None

        return run, with_predictions

    def channel_means(self, batch: np.ndarray, convs: list[ConvLayer]) -> list[np.ndarray]:
        """Per conv layer the (B, C) spatial mean of every channel of a preprocessed batch."""
        maps, _ = self.forward(batch, [c.name for c in convs])
        return [maps[c.name].mean(axis=(1, 2), dtype=np.float32) for c in convs]

    def cam_score(self, input_shape, name: str) -> str:
        """What a :class:`~featuremaps.targets.ClassScore` differentiates at target layer ``name``: ``logit``
        (pre-softmax) or ``output``."""
        return self.score

    def gradients(self, x: np.ndarray, target, wrt: str | None = None):
        """``(value, gradient)`` of ``target`` (:mod:`featuremaps.targets`: a class score, a channel's mean, one
        neuron) for one preprocessed input ``x`` (H, W, C), with respect to the input (``wrt=None``: (H, W, C))
        or to conv layer ``wrt``'s maps ((h, w, C)); a :class:`featuremaps.targets.Gradient`. A batch ``x``
        (B, H, W, C) takes a sequence of B targets of one layer (or all class scores), one per image, with
        ``wrt=None``: values (B,) and gradients (B, H, W, C) in one forward and one backward pass, each image's
        gradient that of its own target (``featuremaps patterns`` optimises a layer's channels so); an
        implementation keeps what it compiles for the next call on a batch of the same shape. Where
        :attr:`bfloat16` is true, a batch also takes ``precision="bfloat16"``: the pass in bfloat16 (about
        twice as fast where the CPU has bfloat16 arithmetic; values to about 3 significant digits)."""
        raise UserError(f"{self.framework} models have no gradients in featuremaps; use a gradient-free method")

    def fingerprint(self) -> tuple:
        """What the adapter's graphs, hooks and layer lists were built from: the ids of the model's layer (and
        weight) objects, not their values, which every framework reads as it runs. A cache of adapters (see
        :func:`featuremaps.cam.compute_cam`) compares it to see that a model was rebuilt in place (a torch module's
        ``fc`` replaced). ``()`` where a model cannot change (an ONNX session)."""
        return ()

    def forget(self) -> None:
        """Drop what was kept of the last input (Keras: the cut model's body outputs, reused by the next call on
        the same image), so that the next call reads the weights anew; nothing by default."""

    def head_scores(self, x: np.ndarray, name: str, acts: np.ndarray) -> np.ndarray:
        """``(B, n)`` scores (what a ``ClassScore`` differentiates) of one input ``x`` (H, W, C) with the maps of
        conv layer ``name`` replaced by each of ``acts`` (B, h, w, C): the network from that layer on."""
        raise UserError(f"ablationcam cannot re-run {self.framework} models from a layer; use another --method")

    def state(self):
        """The model's weights as picklable NumPy arrays, or None when loading the model gives them."""
        return None

    def load_state(self, state) -> None:
        """Set the weights from :meth:`state` (of a model of the same architecture)."""

    def randomised(self, layers, seed: int = 0):
        """A copy of the model (same architecture and weights; the framework's own model object) with the named
        layers' weights re-drawn from N(0, std of their weights), as in Adebayo et al.'s cascading
        randomisation; the model is not changed."""
        raise UserError(f"featuremaps cannot copy {self.framework} models of this kind to randomise their layers")

    def receptive_fields(self) -> tuple[dict, bool, str]:
        """``({conv name: featuremaps.receptive.Field}, exact, note)`` from the model's graph; none by default."""
        return {}, False, f"receptive fields are not computed for {self.framework} models of this kind"

    def to_gpu(self) -> bool:
        """Move the model to a GPU this process can see; False where there is none (or the framework's
        build has no GPU support), and the model stays where it is."""
        return False


def check_batch(name: str, x, targets, wrt, names=None) -> tuple[str | None, bool]:
    """``(layer, pre_activation)`` a batch's targets read (layer None: class scores), for an adapter's batched
    :meth:`ModelAdapter.gradients`; one line saying what is wrong otherwise (``wrt`` given, a target per image
    missing, a mixed batch, a layer not in ``names``)."""
    if wrt is not None:
        raise UserError("a batch of gradients is taken with respect to the input only; pass wrt=None")
    if len(targets) != len(x):
        raise UserError(f"a batch of {len(x)} images needs {len(x)} targets, one per image; got {len(targets)}")
    try:
        layer, pre = batch_layer(targets)
    except ValueError as e:
        raise UserError(str(e)) from None
    if names is not None and layer is not None and layer not in names:
        raise UserError(f"no conv layer '{layer}' in model '{name}'; run 'featuremaps layers' to list them")
    return layer, pre
