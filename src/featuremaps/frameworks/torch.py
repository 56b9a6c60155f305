"""PyTorch models: ``nn.Module`` in hand, TorchScript / state-dict / pickled files, and torchvision by name.

Conv layers are ``nn.Conv2d`` (grouped and depthwise included) and ``nn.ConvTranspose2d`` in *execution*
order, found by forward hooks on one probe pass, named by module path (``layer1.0.conv1``). A module called
twice in one forward appears once per call (``block.conv``, ``block.conv@2``), like Keras layers that are
reused. Maps come from one forward pass under ``torch.inference_mode()`` with the module in ``eval()`` mode
(its training flags are restored afterwards); NCHW tensors become ``(B, h, w, C)`` NumPy views at the
boundary (no copy). A conv output that a later in-place op changes (``nn.ReLU(inplace=True)`` right after a
conv, as in VGG) is cloned in its hook; the probe finds those layers from the tensors' version counters, so
models without such ops pay nothing.

CAMs: autograd. A forward hook on the target call keeps the conv output ``A`` and hands the rest of the
network a clone (so in-place ops after it cannot change ``A``); ``torch.autograd.grad(score[c], A)`` gives
``d score / d A``. The score is the output itself: torchvision classifiers return pre-softmax logits.
Ablation-CAM: a forward hook on the target call returns its ablated copies (one channel zeroed per row) in
place of its output, on as many copies of the image (TorchScript: the conv value replaced by a graph input).

Files (checked first by :mod:`featuremaps.frameworks.torch_files`, which refuses what would run code without
``--unsafe``): TorchScript archives (``torch.jit.load``, no pickle), ``torch.export`` archives (``.pt2``,
``torch.export.load`` then ``torch.export.unflatten``, which keeps the module tree: each conv is a submodule
whose graph is one ``aten.conv2d`` call, hooked like an ``nn.Conv2d``), a whole pickled module only with
``--unsafe`` (pickles run code), a state dict (``torch.load(weights_only=True)``) only with an architecture
(``--model torchvision:NAME --weights FILE``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import pickle
import re
import sys
import types
import warnings
import zipfile
from copy import deepcopy
from pathlib import Path

import numpy as np
import torch
import torch.fx
from torch import nn

from featuremaps.errors import UserError, brief
from featuremaps.frameworks.base import ModelAdapter, check_batch
from featuremaps.frameworks.torch_files import check_exported, check_script
from featuremaps.loaded import PREPROCESS_MODES, LoadedModel, preprocess_fn
from featuremaps.maps import ConvLayer
from featuremaps.receptive import TRANSPOSED_NOTE, Field, kernel_field, transposed_field, widest
from featuremaps.targets import ChannelMean, ClassScore, Gradient, Neuron, predicted, target_weights

CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)
#: the one call in the graph of an unflattened ``torch.export`` conv submodule, and the nn type it stands for
EXPORTED_CONVS = {"aten.conv2d.default": "Conv2d", "aten.conv_transpose2d.input": "ConvTranspose2d"}
UNSUPPORTED = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose3d)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
DEFAULT_SIDE = 224


class TorchConvLayer(ConvLayer):
    """A conv call of a torch module: ``layer`` is the ``nn.Module``, ``call`` which of its calls (1, 2, ...)."""

    def __init__(self, index, name, layer, kind, call=1, out_channels=None):
        super().__init__(index, name, layer, kind)
        self.call = call
        self._channels = out_channels

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def channels(self) -> int | None:
        return self._channels

    @property
    def params(self) -> int:
        if self.layer is None:
            return 0
        return int(sum(p.numel() for p in self.layer.parameters(recurse=False)))


def _exported_conv(m: nn.Module):
    """The conv call of a ``torch.export.unflatten`` submodule whose graph is exactly one conv, else None."""
    graph = getattr(m, "graph", None)
    if isinstance(m, CONV_TYPES) or not isinstance(graph, torch.fx.Graph):
        return None
    calls = [n for n in graph.nodes if n.op == "call_function"]
    return calls[0] if len(calls) == 1 and str(calls[0].target) in EXPORTED_CONVS else None


def is_conv(m: nn.Module) -> bool:
    """An ``nn.Conv2d`` / ``nn.ConvTranspose2d``, or an exported program's submodule standing for one."""
    return isinstance(m, CONV_TYPES) or _exported_conv(m) is not None


def _conv_facts(m: nn.Module, kind: str | None = None, groups: int | None = None) -> tuple[str, int, int]:
    """(type name, input channels, groups) of a conv module: nn, TorchScript or exported. ``kind`` and ``groups``:
    what a TorchScript graph says, for a traced submodule that keeps its weight but not its hyperparameters."""
    node = _exported_conv(m)
    if node is None:
        kind = kind or type(m).__name__
        groups = int(getattr(m, "groups", groups or 1))
        cin = getattr(m, "in_channels", None)
        if cin is None:  # traced: the weight is (out, in / groups, kh, kw), transposed (in, out / groups, kh, kw)
            w = getattr(m, "weight", None)
            cin = 0 if not isinstance(w, torch.Tensor) else w.shape[0] if "Transpose" in kind else w.shape[1] * groups
        return kind, int(cin), groups
    kind = EXPORTED_CONVS[str(node.target)]
    w = node.args[1]
    try:
        weight = m.get_parameter(w.target) if getattr(w, "op", "") == "get_attr" else None
    except AttributeError:
        weight = None
    # groups is argument 6 of aten.conv2d (input, weight, bias, stride, padding, dilation, groups) and of
    # conv_transpose2d.input (..., padding, output_padding, groups, dilation); the weight is
    # (out, in / groups, kh, kw) for a conv, (in, out / groups, kh, kw) for a transposed one
    groups = int(node.args[6]) if len(node.args) > 6 else 1
    if weight is None:
        return kind, 0, groups
    return kind, int(weight.shape[1]) * groups if kind == "Conv2d" else int(weight.shape[0]), groups


def _kind(m: nn.Module, name: str | None = None, groups: int | None = None) -> str:
    kind, in_channels, groups = _conv_facts(m, name, groups)
    name = name or kind
    if groups > 1:
        name += " (depthwise)" if groups == in_channels else f" (groups={groups})"
    return name


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    """``module.eval()`` for the duration, then every submodule's training flag as it was."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, t in flags:
            m.training = t


@contextlib.contextmanager
def _no_onednn():
    """oneDNN off for backward passes, as in :mod:`featuremaps.frameworks.keras.gradients` (quietly: torch
    warns about TF32)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def _device_dtype(module):
    for p in module.parameters():
        return p.device, (p.dtype if p.dtype.is_floating_point else torch.float32)
    return torch.device("cpu"), torch.float32


class _Stop(Exception):
    """Raised by a pre-hook to end a probe forward at the first conv."""


class TorchAdapter(ModelAdapter):
    """A ``torch.nn.Module`` (or TorchScript module) behind featuremaps' model protocol."""

    framework = "torch"
    has_gradients = True
    has_head_scores = True
    score = "logit"

    def __init__(self, module: nn.Module, name: str | None = None, input_shape=None):
        if not isinstance(module, nn.Module):
            raise UserError(f"a {type(module).__name__} is not a torch.nn.Module; pass a model (nn.Module)")
        self.module = module
        self.name = name or type(module).__name__
        self.input_shape = tuple(input_shape) if input_shape else (None, None, self._in_channels())
        self._convs: list[TorchConvLayer] | None = None
        self._shapes: dict[tuple, tuple[dict, tuple]] = {}
        self._clone: set[str] = set()
        self._by_name: dict[str, TorchConvLayer] = {}

    def _in_channels(self):
        """The input channels of the first conv that *runs* (a pre-hook stops the forward right there)."""
        if getattr(self, "_channels_guess", None):
            return self._channels_guess
        first = next((m for m in self.module.modules() if is_conv(m)), None)
        found = []

        def pre(m, _args):
            found.append(_conv_facts(m)[1])
            raise _Stop

        handles = [m.register_forward_pre_hook(pre) for m in self.module.modules() if is_conv(m)]
        try:
            with _eval_mode(self.module), torch.no_grad():
                self.module(torch.zeros((1, 3, 32, 32), device=_device_dtype(self.module)[0]))
        except _Stop:
            pass
        except Exception:  # the forward fails before any conv: the first registered conv's channels
            pass
        finally:
            for h in handles:
                h.remove()
        self._channels_guess = found[0] if found else (_conv_facts(first)[1] if first is not None else None)
        return self._channels_guess

    def _shape(self, input_shape) -> tuple[int, int, int]:
        s = list(input_shape or self.input_shape or (None, None, None))
        s = [*s, None, None, None][:3]
        s[0] = s[0] or DEFAULT_SIDE
        s[1] = s[1] or DEFAULT_SIDE
        s[2] = s[2] or self._in_channels() or 3
        return tuple(int(v) for v in s)

    def _to_input(self, batch: np.ndarray):
        dev, dtype = _device_dtype(self.module)
        t = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).permute(0, 3, 1, 2)
        return t.to(device=dev, dtype=dtype).contiguous()

    # ------------------------------------------------------------ probe
    def _probe(self, input_shape) -> tuple[dict, tuple]:
        """Run once: conv calls in execution order, their output shapes, in-place-modified outputs."""
        shape = self._shape(input_shape)
        if shape in self._shapes:
            return self._shapes[shape]
        paths = {}
        for path, m in self.module.named_modules():
            if is_conv(m) and m not in paths:
                paths[m] = path or "conv"
        unsupported = [p for p, m in self.module.named_modules() if isinstance(m, UNSUPPORTED)]
        calls: list[tuple[nn.Module, int, str, object, int]] = []
        counts: dict[int, int] = {}

        def hook(m, _inp, out):
            counts[id(m)] = counts.get(id(m), 0) + 1
            if isinstance(out, torch.Tensor):
                calls.append((m, counts[id(m)], paths[m], out, out._version))

        handles = [m.register_forward_hook(hook) for m in paths]
        x = torch.zeros((1, shape[2], shape[0], shape[1]))
        try:
            with _eval_mode(self.module), torch.no_grad():
                out = self.module(self._to_input(x.permute(0, 2, 3, 1).numpy()))
        except Exception as e:
            raise UserError(
                f"model '{self.name}' cannot run on a {shape[0]}x{shape[1]}x{shape[2]} input "
                f"({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}); "
                "pass --input-shape H,W,C for the size it takes"
            ) from None
        finally:
            for h in handles:
                h.remove()
        if not paths and not calls:
            if unsupported:
                raise UserError(
                    f"model '{self.name}' has only 1-D/3-D convolutions ({', '.join(unsupported[:3])}), which "
                    "featuremaps does not support; it draws nn.Conv2d and nn.ConvTranspose2d layers"
                )
            raise UserError(f"model '{self.name}' has no nn.Conv2d or nn.ConvTranspose2d layers; pass a CNN")
        convs, shapes = [], {}
        for m, k, path, t, version in calls:
            if t.dim() != 4:
                continue
            name = path if k == 1 else f"{path}@{k}"
            if t._version != version:
                self._clone.add(name)
            shapes[name] = (int(t.shape[2]), int(t.shape[3]), int(t.shape[1]))
            convs.append(TorchConvLayer(len(convs) + 1, name, m, _kind(m), k, int(t.shape[1])))
        if not convs:
            raise UserError(f"no conv layer of model '{self.name}' ran on a {shape} input; pass a CNN")
        out_shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
        if self._convs is None:  # numbering fixed by the first probe
            self._convs = convs
            self._by_name = {c.name: c for c in convs}
        if len(self._shapes) >= 4:
            self._shapes.pop(next(iter(self._shapes)))
        self._shapes[shape] = (shapes, out_shape)
        return shapes, out_shape

    # ------------------------------------------------------------ protocol
    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        dev = _device_dtype(self.module)[0]
        self.module.load_state_dict({k: torch.from_numpy(np.asarray(v)).to(dev) for k, v in state.items()})

    def randomised(self, layers, seed: int = 0):
        """A deep copy of the module with the named modules' parameters re-drawn from N(0, std of each)."""
        rng = np.random.default_rng(seed)
        copy = deepcopy(self.module)
        mods = dict(copy.named_modules())
        for name in [layers] if isinstance(layers, str) else layers:
            if name not in mods or not name:
                names = ", ".join(n for n in list(mods)[1:9])
                raise UserError(f"no module '{name}' to randomise in model '{self.name}'; modules: {names}")
            with torch.no_grad():
                for p in mods[name].parameters(recurse=False):
                    w = p.detach().float().cpu().numpy()
                    new = rng.normal(0, max(float(np.std(w)), 1e-3), w.shape).astype(np.float32)
                    p.copy_(torch.from_numpy(new).to(p.device, p.dtype))
        return copy

    def receptive_fields(self) -> tuple[dict, bool, str]:
        """Each conv call's receptive field from the module's ``torch.fx`` graph (Araujo et al. 2019, as for
        Keras in :mod:`featuremaps.receptive`): ``nn.Conv2d``, pooling modules and ``F.max_pool2d`` /
        ``F.avg_pool2d`` grow it; flattening, global or adaptive pooling and linear layers end it; where paths
        merge the widest field goes on (then approximate). Raises when ``torch.fx`` cannot trace the module."""
        graph = torch.fx.symbolic_trace(self.module).graph
        mods = dict(self.module.named_modules())
        fields: dict = {}
        out: dict[str, Field] = {}
        calls: dict[str, int] = {}
        notes: set[str] = set()
        first_input = True
        for n in graph.nodes:
            if n.op == "placeholder":
                fields[n] = Field() if first_input else None
                first_input = False
                continue
            f = widest([fields.get(a) for a in n.all_input_nodes], notes)
            if f is not None:
                f = self._field_after(n, f, mods, notes)
            fields[n] = f
            if n.op == "call_module" and is_conv(mods[n.target]):
                k = calls[n.target] = calls.get(n.target, 0) + 1
                out[n.target if k == 1 else f"{n.target}@{k}"] = f
        return out, not notes, "; ".join(sorted(notes))

    @staticmethod
    def _field_after(n, f, mods, notes):
        """The field of node ``n``'s output given its input's field ``f`` (None: the map is no longer spatial)."""
        if n.op == "call_module":
            m = mods[n.target]
            if isinstance(m, nn.Conv2d):
                return kernel_field(f, m.kernel_size, m.stride, m.dilation, m.padding)
            if isinstance(m, nn.ConvTranspose2d):
                notes.add(TRANSPOSED_NOTE)
                return transposed_field(f, m.kernel_size, m.stride)
            if isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
                return kernel_field(f, m.kernel_size, m.stride or m.kernel_size, getattr(m, "dilation", 1), m.padding)
            if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d | nn.Linear | nn.Flatten | nn.Upsample):
                return None
            return f  # activations, normalisation, dropout: unchanged
        if n.op == "call_function":
            name = getattr(n.target, "__name__", str(n.target))
            if name in ("max_pool2d", "avg_pool2d"):
                a = dict(zip(("input", "kernel_size", "stride", "padding", "dilation"), n.args, strict=False))
                a.update(n.kwargs)
                k = a["kernel_size"]
                return kernel_field(f, k, a.get("stride") or k, a.get("dilation", 1), a.get("padding", 0))
            if name in ("flatten", "linear", "adaptive_avg_pool2d", "adaptive_max_pool2d", "interpolate", "conv2d"):
                return None
            return f
        if n.op == "call_method" and n.target in ("flatten", "view", "reshape", "mean", "sum", "amax", "max"):
            return None
        return f

    def to_gpu(self) -> bool:
        if not torch.cuda.is_available():
            return False
        self.module.to("cuda")  # inputs follow the parameters' device (_to_input); maps come back with .cpu()
        return True

    def fingerprint(self) -> tuple:
        """The submodules: the conv list and its hooks are theirs (a replaced ``fc`` is a new model to us)."""
        return tuple(map(id, self.module.modules()))

    def conv_layers(self, input_shape=None) -> list[ConvLayer]:
        if self._convs is None:
            self._probe(input_shape)
        return list(self._convs)

    def layer_shapes(self, input_shape):
        return self._probe(input_shape)[0]

    def layer_kind(self, name: str) -> str | None:
        m = dict(self.module.named_modules()).get(name)
        return None if m is None or is_conv(m) else getattr(m, "original_name", None) or type(m).__name__

    def output_shape(self, input_shape):
        return self._probe(input_shape)[1]

    def _hooks(self, names, store, detach_clone: bool):
        """Forward hooks keeping the outputs of the named calls in ``store`` (by name)."""
        wanted: dict[int, dict[int, str]] = {}
        mods = {}
        for n in names:
            c = self._by_name[n]
            wanted.setdefault(id(c.layer), {})[c.call] = n
            mods[id(c.layer)] = c.layer
        counts: dict[int, int] = {}
        clone = self._clone

        def hook(m, _inp, out):
            k = counts[id(m)] = counts.get(id(m), 0) + 1
            n = wanted[id(m)].get(k)
            if n is None:
                return None
            if detach_clone:  # CAM target: keep A, the network goes on with a copy
                store[n] = out
                return out.clone()
            store[n] = out.clone() if n in clone else out
            return None

        return [m.register_forward_hook(hook) for m in mods.values()]

    #: the one batch size the module runs (a ``torch.export`` program exported without a dynamic batch), or None
    fixed_batch: int | None = None

    def forward(self, batch, names):
        if self.fixed_batch and len(batch) != self.fixed_batch:  # run it at the batch size it was exported for
            parts = [
                self.forward(batch[i : i + self.fixed_batch], names) for i in range(0, len(batch), self.fixed_batch)
            ]
            maps = {n: np.concatenate([m[n] for m, _ in parts]) for n in names}
            outs = [o for _, o in parts]
            return maps, None if outs[0] is None else np.concatenate(outs)
        self._probe(batch.shape[1:])
        store: dict[str, torch.Tensor] = {}
        handles = self._hooks(names, store, False)
        try:
            with _eval_mode(self.module), torch.inference_mode():
                out = self.module(self._to_input(batch))
        finally:
            for h in handles:
                h.remove()
        maps = {n: store[n].float().cpu().numpy().transpose(0, 2, 3, 1) for n in names}
        out = out.float().cpu().numpy() if isinstance(out, torch.Tensor) else None
        return maps, out

    def gradients(self, x, target, wrt=None):
        """Autograd: forward hooks keep the ``wrt`` layer's and the target layer's outputs (the network goes on
        with clones, so in-place ops after them cannot change them), the input requires grad for ``wrt=None``.
        A batch (B, H, W, C) with one target per image: :meth:`_batch_gradients`."""
        if np.ndim(x) == 4:
            return self._batch_gradients(np.asarray(x, np.float32), list(target), wrt)
        self._probe(x.shape)
        names = list(dict.fromkeys(n for n in (wrt, getattr(target, "layer", None)) if n))
        for n in names:
            if n not in self._by_name:
                raise UserError(f"no conv layer '{n}' in model '{self.name}'; run 'featuremaps layers' to list them")
        store: dict[str, torch.Tensor] = {}
        handles = self._hooks(names, store, True)
        try:
            with _eval_mode(self.module), torch.enable_grad():
                inp = self._to_input(x[None])
                if wrt is None or not any(p.requires_grad for p in self.module.parameters()):
                    inp.requires_grad_(True)  # frozen weights: autograd still needs a graph through A
                out = self.module(inp)
                return _gradient(self.name, out, store, inp, target, wrt)
        finally:
            for h in handles:
                h.remove()

    def _batch_gradients(self, x, targets, wrt) -> Gradient:
        """One vector-Jacobian product for the batch: a forward hook keeps the target layer's output and stops
        the forward there (nothing after the layer runs), then ``autograd.grad`` with the targets' weights
        (:func:`featuremaps.targets.target_weights`) as its ``grad_outputs``. A conv module's output is its
        pre-activation (PyTorch does not fuse activations into convs)."""
        self._probe(x.shape[1:])
        layer, _ = check_batch(self.name, x, targets, wrt, self._by_name)
        if self.fixed_batch and len(x) != self.fixed_batch:  # an exported program: chunks of its batch size
            return _chunked(self._batch_gradients, x, targets, self.fixed_batch)
        store: dict[str, torch.Tensor] = {}
        handles = []
        if layer is not None:
            c = self._by_name[layer]
            count = [0]

            def hook(_m, _inp, out):
                count[0] += 1
                if count[0] == c.call:
                    store["out"] = out
                    raise _Stop

            handles.append(c.layer.register_forward_hook(hook))
        try:
            with _eval_mode(self.module), torch.enable_grad():
                inp = self._to_input(x)
                inp.requires_grad_(True)
                try:
                    store.setdefault("out", self.module(inp))
                except _Stop:
                    pass
        finally:
            for h in handles:
                h.remove()
        return _weighted(self.name, store["out"], inp, targets, layer)

    def head_scores(self, x, name, acts):
        """The output of ``len(acts)`` copies of ``x`` with conv call ``name``'s output replaced, row by row, by
        ``acts`` (B, h, w, C): a forward hook returns them in its place, as pytorch-grad-cam's AblationCAM does,
        so the network from the layer on runs on the replaced maps (in chunks of the program's fixed batch size
        for a ``torch.export`` file)."""
        self._probe(x.shape)
        c = self._by_name[name]
        step = self.fixed_batch or len(acts)
        outs = []
        for i in range(0, len(acts), step):
            a = acts[i : i + step]
            n = len(a)
            if n < step:  # an exported program runs at its batch size only: pad the last chunk
                a = np.concatenate([a, np.repeat(a[:1], step - n, axis=0)])
            outs.append(self._replaced(x, c, a)[:n])
        return np.concatenate(outs)

    def _maps_tensor(self, acts):
        dev, dtype = _device_dtype(self.module)
        t = torch.from_numpy(np.ascontiguousarray(acts, np.float32)).permute(0, 3, 1, 2)
        return t.to(device=dev, dtype=dtype).contiguous()

    def _replaced(self, x, c, acts) -> np.ndarray:
        maps, count = self._maps_tensor(acts), [0]

        def hook(_m, _inp, out):
            count[0] += 1
            return maps.to(out.dtype) if count[0] == c.call else None

        handle = c.layer.register_forward_hook(hook)
        try:
            with _eval_mode(self.module), torch.inference_mode():
                out = self.module(self._to_input(np.repeat(x[None], len(acts), axis=0)))
        finally:
            handle.remove()
        return out.float().cpu().numpy()


# ---------------------------------------------------------------- TorchScript
SCRIPT_CONVS = ("aten::conv2d", "aten::conv_transpose2d", "aten::_convolution", "aten::convolution")
_HIER = re.compile(r"([^.()]+)\(([^)]*)\)")


class ScriptAdapter(TorchAdapter):
    """A TorchScript module (``torch.jit.load``): Python hooks never run inside scripted code, so the conv
    values of its inlined ``forward`` graph become extra outputs of a function built from that graph.

    Conv nodes are named by their module hierarchy (``layer1.0.conv1``); a conv output that an in-place op
    (``relu_``) changes is cloned in the graph for the maps. CAM gradients are taken with respect to the
    conv value itself, so after such an in-place op they are those of the value it became.
    """

    def __init__(self, module, name=None, input_shape=None):
        self.module = module
        self.name = name or getattr(module, "original_name", "model")
        with _script_internals():
            self._build()
        first = _submodule(module, self._names[0].split("@")[0])
        c = _conv_facts(first, self._kinds[0], self._groups[0])[1] if first is not None else None
        self.input_shape = tuple(input_shape) if input_shape else (None, None, c or 3)
        self._convs = None
        self._by_name = {}
        self._shapes = {}
        self._clone = set()
        self._replacing = {}

    def _build(self):
        """The forward graph with every conv value (and a clone where an in-place op changes it) as outputs."""
        graph = self.module.inlined_graph
        nodes = [n for n in graph.nodes() if n.kind() in SCRIPT_CONVS]
        if not nodes:
            raise UserError(f"TorchScript model '{self.name}' has no 2-D convolutions in its forward; pass a CNN")
        names, kinds, groups, counts, maps, grads = [], [], [], {}, [], []
        for n in nodes:
            path, kind = _hierarchy(n)
            counts[path] = counts.get(path, 0) + 1
            names.append(path if counts[path] == 1 else f"{path}@{counts[path]}")
            kinds.append(kind)
            groups.append(_script_groups(n))
            v = n.output()
            if any(u.user.kind().endswith("_") for u in v.uses()):  # changed in place later: clone for the maps
                none = graph.create("prim::Constant")
                none.output().setType(torch._C.NoneType.get())
                none.insertAfter(n)
                clone = graph.create("aten::clone", [v, none.output()])
                clone.insertAfter(none)
                maps.append(clone.output())
            else:
                maps.append(v)
            grads.append(v)
        ret = graph.return_node()
        values = [ret.inputsAt(0), *maps, *grads]
        tup = graph.create("prim::TupleConstruct", values)
        tup.output().setType(torch._C.TupleType([v.type() for v in values]))
        tup.insertBefore(ret)
        ret.replaceInput(0, tup.output())
        self._fn = torch._C._create_function_from_graph(f"featuremaps_{id(self)}", graph)
        self._names, self._kinds, self._groups = names, kinds, groups

    def _in_channels(self):
        return self.input_shape[2] if self.input_shape else 3

    def receptive_fields(self) -> tuple[dict, bool, str]:
        return {}, False, "receptive fields are not computed for TorchScript models (no torch.fx graph)"

    def _call(self, x):
        with _script_internals():
            c = self.module._c
        res = self._fn(c, x)
        k = len(self._names)
        return res[0], list(res[1 : 1 + k]), list(res[1 + k :])

    def _probe(self, input_shape):
        shape = self._shape(input_shape)
        if shape in self._shapes:
            return self._shapes[shape]
        x = np.zeros((1, *shape), np.float32)
        try:
            with _eval_mode(self.module), torch.no_grad():
                out, maps, _ = self._call(self._to_input(x))
        except UserError:
            raise
        except Exception as e:
            raise UserError(
                f"model '{self.name}' cannot run on a {shape[0]}x{shape[1]}x{shape[2]} input "
                f"({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}); "
                "pass --input-shape H,W,C for the size it takes"
            ) from None
        shapes = {
            n: (int(t.shape[2]), int(t.shape[3]), int(t.shape[1])) for n, t in zip(self._names, maps, strict=True)
        }
        if self._convs is None:
            self._convs = [
                TorchConvLayer(i + 1, n, sub, k if sub is None else _kind(sub, k, g), 1, shapes[n][2])
                for i, (n, k, g) in enumerate(zip(self._names, self._kinds, self._groups, strict=True))
                for sub in [_submodule(self.module, n.split("@")[0])]
            ]
            self._by_name = {c.name: c for c in self._convs}
        self._shapes[shape] = (shapes, tuple(out.shape) if isinstance(out, torch.Tensor) else ())
        return self._shapes[shape]

    def forward(self, batch, names):
        self._probe(batch.shape[1:])
        with _eval_mode(self.module), torch.inference_mode():
            out, maps, _ = self._call(self._to_input(batch))
        idx = {n: i for i, n in enumerate(self._names)}
        res = {n: maps[idx[n]].float().cpu().numpy().transpose(0, 2, 3, 1) for n in names}
        return res, out.float().cpu().numpy() if isinstance(out, torch.Tensor) else None

    def gradients(self, x, target, wrt=None):
        """Autograd through the graph function: ``wrt`` and the target are conv values of its graph (after an
        in-place op, the value it became). A batch (B, H, W, C) with one target per image reads the conv's value
        before any in-place activation (its clone in the graph), so the objective is the pre-activation."""
        if np.ndim(x) == 4:
            x = np.asarray(x, np.float32)
            self._probe(x.shape[1:])
            layer, _ = check_batch(self.name, x, list(target), wrt, set(self._names))
            with _eval_mode(self.module), torch.enable_grad():
                inp = self._to_input(x)
                inp.requires_grad_(True)
                out, maps, _ = self._call(inp)
                t = out if layer is None else maps[self._names.index(layer)]
                return _weighted(self.name, t, inp, list(target), layer)
        self._probe(x.shape)
        for n in (wrt, getattr(target, "layer", None)):
            if n and n not in self._names:
                raise UserError(f"no conv layer '{n}' in model '{self.name}'; run 'featuremaps layers' to list them")
        with _eval_mode(self.module), torch.enable_grad():
            inp = self._to_input(x[None])
            inp.requires_grad_(True)
            out, _, values = self._call(inp)
            return _gradient(self.name, out, dict(zip(self._names, values, strict=True)), inp, target, wrt)

    def _replaced(self, x, c, acts) -> np.ndarray:
        """Python hooks do not run in TorchScript: a function of the forward graph whose conv value ``c`` is
        replaced by an extra graph input (built once per layer) takes the maps."""
        fn = self._replacing.get(c.name)
        if fn is None:
            i = self._names.index(c.name)
            with _script_internals():
                graph = self.module.inlined_graph
                node = [n for n in graph.nodes() if n.kind() in SCRIPT_CONVS][i]
                value = graph.addInput("featuremaps_maps")
                value.setType(torch._C.TensorType.get())
                node.output().replaceAllUsesWith(value)
                fn = torch._C._create_function_from_graph(f"featuremaps_head_{id(self)}_{i}", graph)
            self._replacing[c.name] = fn
        with _script_internals():
            module = self.module._c
        with _eval_mode(self.module), torch.inference_mode():
            out = fn(module, self._to_input(np.repeat(x[None], len(acts), axis=0)), self._maps_tensor(acts))
        return out.float().cpu().numpy()


@contextlib.contextmanager
def _script_internals():
    """TorchScript graph surgery uses torch._C, which has no stability promise: any failure in it is one line."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        first = str(e).splitlines()[0][:100] if str(e).strip() else ""
        raise UserError(
            f"this torch version's TorchScript internals are not supported here ({type(e).__name__}: {first}); "
            "save the model with torch.export (.pt2) instead"
        ) from None


def _script_groups(node) -> int | None:
    """The ``groups`` argument of a TorchScript conv node where it is a graph constant (traced modules keep it
    only there): argument 8 of ``aten::_convolution`` / ``aten::convolution`` (input, weight, bias, stride,
    padding, dilation, transposed, output_padding, groups, ...), 6 of ``aten::conv2d`` (..., dilation, groups)
    and of ``aten::conv_transpose2d`` (..., output_padding, groups, dilation)."""
    i = 8 if node.kind() in ("aten::_convolution", "aten::convolution") else 6
    inputs = list(node.inputs())
    if len(inputs) <= i or inputs[i].node().kind() != "prim::Constant":
        return None
    value = inputs[i].toIValue()
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hierarchy(node) -> tuple[str, str]:
    """``seq(Sequential).0(Conv2d).SELF(Conv2d)`` -> (``seq.0``, ``Conv2d``)."""
    try:
        parts = [(n, t) for n, t in _HIER.findall(node.getModuleHierarchy()) if n != "SELF"]
    except Exception:
        parts = []
    if not parts:
        return "conv", node.kind().split("::")[-1]
    return ".".join(n for n, _ in parts), parts[-1][1]


def _submodule(module, path: str):
    for name, m in module.named_modules():  # get_submodule is not supported on ScriptModules
        if name == path:
            return m
    return None


def adapt(model, input_shape=None) -> TorchAdapter:
    """A :class:`TorchAdapter` for an ``nn.Module`` (the Python API's entry point)."""
    if isinstance(model, torch.jit.ScriptModule):
        return ScriptAdapter(model, input_shape=_api_shape(input_shape))
    return TorchAdapter(model, input_shape=_api_shape(input_shape))


def _api_shape(input_shape):
    if input_shape is None:
        return None
    s = tuple(int(v) for v in input_shape)
    return s if len(s) == 3 else None


# ---------------------------------------------------------------- torchvision
def torchvision_models():
    """``torchvision.models``; where torchvision's C++ ops do not load, its pure-Python model definitions.

    A torchvision wheel built for another torch build fails at ``import torchvision`` with ``operator
    torchvision::nms does not exist``: its ``__init__`` registers fake kernels for ops its ``_C`` library
    did not define. Classification models use none of those ops, so then the ``torchvision`` package is
    entered without running its ``__init__`` (a bare package module; detection models, which need ``nms``,
    still fail when called).
    """
    try:
        import torchvision.models as tvm

        return tvm
    except ModuleNotFoundError:
        raise UserError("torchvision is not installed; pip install 'featuremaps[torch]'") from None
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    spec = importlib.util.find_spec("torchvision")
    pkg = types.ModuleType("torchvision")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__, pkg.__file__ = spec, spec.origin
    pkg.__version__ = _tv_version(spec)
    sys.modules["torchvision"] = pkg
    import torchvision.models as tvm

    return tvm


def _tv_version(spec):
    try:
        return (Path(spec.origin).parent / "version.py").read_text().split("__version__ = '")[1].split("'")[0]
    except (OSError, IndexError):
        return "?"


def _classification_names(tvm) -> list[str]:
    return sorted(tvm.list_models(module=tvm))


def load_torchvision(name: str, weights: str | None, preprocess: str | None):
    """``torchvision:NAME``: the model (ImageNet weights, ``none`` random, or a state-dict FILE)."""

    tvm = torchvision_models()
    names = _classification_names(tvm)
    key = name.strip().lower()
    if key not in names:
        near = [n for n in names if key[:4] in n][:6] or names[:8]
        raise UserError(f"torchvision has no classification model '{name}'; try one of {', '.join(near)}, ...")
    enum = tvm.get_model_weights(key)
    default = enum.DEFAULT
    classes = list(default.meta.get("categories") or []) or None
    file = None
    if weights in (None, "default", "imagenet"):
        try:
            module = tvm.get_model(key, weights=default)
        except Exception as e:  # download failures come as many types
            raise UserError(
                f"could not get ImageNet weights for torchvision:{key} ({type(e).__name__}: {str(e)[:80]}); "
                "with no internet pass --weights none (random) or --weights FILE"
            ) from None
        src = f"torchvision.models.{key} ({default})"
    else:
        module = tvm.get_model(key, weights=None)
        if weights != "none":
            file = Path(weights)
            _load_state_dict(module, file, f"torchvision:{key}")
            src = f"torchvision.models.{key} with weights {file}"
        else:
            src = f"torchvision.models.{key} (random weights)"
            classes = None
    module.eval()
    side = _crop_size(default)
    if preprocess:
        fn, desc = preprocess_fn(preprocess), PREPROCESS_MODES[preprocess]
    else:
        fn, desc = imagenet_preprocess, "x / 255, ImageNet mean/std (torchvision)"
    ad = TorchAdapter(module, name=key, input_shape=(side, side, 3))
    random = weights == "none"  # figures say so and show no prediction, as for Keras models
    return LoadedModel(ad, f"torchvision:{key}", src, desc, fn, ad.input_shape, classes, False, random)


def _crop_size(weights) -> int:
    try:
        return int(weights.transforms().crop_size[0])
    except Exception:
        return DEFAULT_SIDE


def imagenet_preprocess(x: np.ndarray) -> np.ndarray:
    """torchvision's ImageNet normalisation of RGB 0-255 pixels: ``(x / 255 - mean) / std``."""
    return ((np.asarray(x, np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def _load_state_dict(module: nn.Module, file: Path, what: str) -> None:
    if not file.is_file():
        raise UserError(f"weights file {file} does not exist; pass --weights none, imagenet or a state-dict file")
    try:
        sd = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(
            f"{file} is not a state dict torch can load safely ({type(e).__name__}); save one with "
            "torch.save(model.state_dict(), FILE)"
        ) from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise UserError(f"{file} holds a {type(sd).__name__}, not a state dict; pass model.state_dict() saved")
    try:
        module.load_state_dict(sd)
    except RuntimeError as e:
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e)[:120]
        raise UserError(
            f"{file} is a state dict for another architecture than {what} ({first.strip()[:120]}); "
            "pass the weights saved from this model"
        ) from None


# ---------------------------------------------------------------- files
def load_file(path: Path, weights, unsafe: bool, preprocess: str, classes, input_shape=None):
    """``--model FILE.pt``: TorchScript, or with ``--unsafe`` a whole pickled module; never a bare state dict."""

    if not path.is_file():
        raise UserError(f"model file {path} does not exist; check the path or use a name like torchvision:resnet18")
    module = None
    fixed_batch = None
    if path.suffix.lower() == ".pt2":
        module, input_shape, fixed_batch = _load_exported(path, input_shape, unsafe)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            scripted = any("/code/" in n for n in z.namelist())  # after every tensor record: all names read
        if scripted:
            if not unsafe:  # torch.jit.load runs the archive's __setstate__ code: check what it calls first
                check_script(path)
            try:
                module = torch.jit.load(str(path), map_location="cpu")
            except Exception as e:
                raise UserError(f"{path} is not a TorchScript archive torch can load ({str(e)[:100]})") from None
    if module is None:
        if not _is_torch_file(path):
            raise UserError(
                f"{path} is not a file torch saved (neither a TorchScript archive nor torch.save output); check "
                "the path, or save the model with torch.jit.script(model).save(FILE)"
            )
        try:
            with warnings.catch_warnings():  # torch's note on the pickle protocol of old files
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # the weights-only unpickler refused what the file holds: code to run
            if not unsafe:
                raise UserError(
                    f"{path} is a pickled module: loading it runs code stored in the file; pass --unsafe only if "
                    "you trust it, or save it with torch.jit.script(model).save(FILE)"
                ) from None
            try:
                obj = torch.load(path, map_location="cpu", weights_only=False)
            except (ImportError, AttributeError) as e:  # the pickled class's module or name is not importable here
                raise UserError(
                    f"{path} is a pickled module whose class cannot be imported here ({brief(e)}); load it where "
                    "the code that defines its class is importable, or save it with torch.jit.script(model).save(FILE)"
                ) from None
            except Exception as e:
                raise UserError(f"{path} is a torch file torch cannot load ({brief(e)})") from None
        except Exception as e:
            first = str(e).splitlines()[0][:100] if str(e).strip() else type(e).__name__
            raise UserError(f"{path} is a torch file torch cannot read, truncated or corrupt? ({first})") from None
        if isinstance(obj, dict):
            raise UserError(
                f"{path} holds a state dict (weights without an architecture); pass "
                "--model torchvision:NAME --weights FILE, or save a TorchScript model with "
                "torch.jit.script(model).save(FILE)"
            )
        if not isinstance(obj, nn.Module):
            raise UserError(f"{path} holds a {type(obj).__name__}, not a torch model (nn.Module)")
        module = obj
    if weights not in (None, "none", "default"):
        _load_state_dict(module, Path(weights), str(path))
    mode = preprocess or "unit"
    cls = ScriptAdapter if isinstance(module, torch.jit.ScriptModule) else TorchAdapter
    ad = cls(module, name=path.stem, input_shape=input_shape)
    ad.fixed_batch = fixed_batch
    return LoadedModel(
        ad, path.stem, str(path), PREPROCESS_MODES.get(mode, mode), preprocess_fn(mode), ad.input_shape, classes
    )


def _is_torch_file(path: Path) -> bool:
    """Whether ``torch.save`` wrote ``path``: a zip archive with a ``data.pkl`` record, or the legacy format (a
    pickle whose first object is torch's magic number, a 10-byte LONG1 right after the protocol header)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return any(n == "data.pkl" or n.endswith("/data.pkl") for n in z.namelist())
        with open(path, "rb") as f:
            head = f.read(14)
    except (OSError, zipfile.BadZipFile):
        return False
    return head[:1] == b"\x80" and head[2:] == b"\x8a\x0a" + torch.serialization.MAGIC_NUMBER.to_bytes(10, "little")


def _load_exported(path: Path, input_shape, unsafe: bool = False):
    """A ``torch.export`` archive as a module with its tree (``torch.export.unflatten``), and the input shape
    (H, W, C) and batch size it was exported for (an exported program runs at those only, unless exported with
    dynamic shapes; the batch size is None when its batch dimension is dynamic).

    Without ``unsafe`` the archive is checked first (:func:`~featuremaps.frameworks.torch_files.check_exported`:
    pickled weights, non-tensor calls); torch's logger, which prints a traceback for a file it cannot read
    before raising, is muted while it loads (the one-line error says what failed)."""
    if not unsafe:
        check_exported(path, _load_weights_only)
    try:
        with warnings.catch_warnings(), _muted("torch.export", "torch._export"):
            warnings.simplefilter("ignore", FutureWarning)  # torch's own notes about its pytree internals
            ep = torch.export.load(str(path))
            module = torch.export.unflatten(ep)
    except Exception as e:
        first = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise UserError(f"{path} is not a torch.export archive torch can load ({first})") from None
    example = (ep.example_inputs or ((), {}))[0]
    batch = None
    if example and isinstance(example[0], torch.Tensor) and example[0].dim() == 4:
        b, c, h, w = example[0].shape
        input_shape = input_shape or (int(h), int(w), int(c))
        user = set(ep.graph_signature.user_inputs)
        ph = next((n for n in ep.graph.nodes if n.op == "placeholder" and n.name in user), None)
        val = ph.meta.get("val") if ph is not None else None
        static = val is None or isinstance(val.shape[0], int)  # a dynamic batch dimension is symbolic
        batch = int(b) if static else None
    return module, input_shape, batch


def _load_weights_only(data: bytes):
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


@contextlib.contextmanager
def _muted(*names: str):
    """The named loggers silenced for the duration (their earlier state restored)."""
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.disabled for lg in loggers]
    for lg in loggers:
        lg.disabled = True
    try:
        yield
    finally:
        for lg, b in zip(loggers, before, strict=True):
            lg.disabled = b


def wrap(module, preprocess: str = "unit", classes=None):
    """An in-memory ``nn.Module`` as a :class:`~featuremaps.models.LoadedModel` (Python API)."""

    ad = TorchAdapter(module)
    return LoadedModel(
        ad, ad.name, "in-memory torch module", PREPROCESS_MODES.get(preprocess, preprocess),
        preprocess_fn(preprocess), ad.input_shape, classes,
    )  # fmt: skip


def _gradient(name, out, maps, inp, target, wrt) -> Gradient:
    """``d target / d (inp or maps[wrt])`` as a :class:`~featuremaps.targets.Gradient` (NCHW -> channels last)."""
    index = None
    if isinstance(target, ClassScore):
        score = out.float()[0]
        if not target.logit and not _is_probabilities(score):
            score = torch.softmax(score, dim=-1)
        index = int(score.argmax()) if target.index is None else int(target.index)
        value = score[index]
    elif isinstance(target, ChannelMean | Neuron):
        a = maps[target.layer][0, target.channel]
        value = a.mean() if isinstance(target, ChannelMean) else a[target.y, target.x]
    else:
        raise UserError(f"cannot differentiate a {type(target).__name__}; use featuremaps.targets")
    wrt_t = inp if wrt is None else maps[wrt]
    if not value.requires_grad:
        raise UserError(
            f"the target of model '{name}' carries no gradient (its weights are frozen and so is its input); "
            "gradients need autograd through the model"
        )
    with _no_onednn():
        (g,) = torch.autograd.grad(value.float(), wrt_t, allow_unused=True)
    grad = np.zeros(tuple(wrt_t.shape[1:]), np.float32) if g is None else g[0].float().cpu().numpy()
    acts = None if wrt is None else wrt_t[0].detach().float().cpu().numpy().transpose(1, 2, 0)
    output = out.float()[0].detach().cpu().numpy()
    return Gradient(float(value.detach()), grad.transpose(1, 2, 0), output, acts, index)


def _weighted(name, out, inp, targets, layer) -> Gradient:
    """``values[b] = <out_b, w_b>`` and their gradient with respect to ``inp`` in one ``autograd.grad`` (NCHW
    tensors, channels-last results)."""
    if not isinstance(out, torch.Tensor):
        raise UserError(f"model '{name}' has several outputs; featuremaps differentiates single-output models")
    out = out.float()
    if layer is None:
        if any(not t.logit for t in targets) and not _is_probabilities(out[0]):
            out = torch.softmax(out, dim=-1)
        targets = predicted(targets, out.detach().cpu().numpy())
        w = target_weights(targets, tuple(out.shape[1:]))
    else:
        w = target_weights(targets, (int(out.shape[2]), int(out.shape[3]), int(out.shape[1]))).transpose(0, 3, 1, 2)
    wt = torch.from_numpy(np.ascontiguousarray(w)).to(out.device)
    if not out.requires_grad:
        raise UserError(
            f"the target of model '{name}' carries no gradient (its weights are frozen and so is its input); "
            "gradients need autograd through the model"
        )
    values = (out * wt).reshape(len(w), -1).sum(dim=1)
    with _no_onednn():
        (g,) = torch.autograd.grad(out, inp, grad_outputs=wt, allow_unused=True)
    grad = np.zeros(tuple(inp.shape), np.float32) if g is None else g.float().cpu().numpy()
    return Gradient(values.detach().cpu().numpy(), grad.transpose(0, 2, 3, 1))


def _chunked(fn, x, targets, step) -> Gradient:
    """``fn`` on chunks of ``step`` images (the last padded with copies of its first), results joined."""
    values, grads = [], []
    for i in range(0, len(x), step):
        xs, ts = x[i : i + step], list(targets[i : i + step])
        n = len(xs)
        if n < step:
            xs = np.concatenate([xs, np.repeat(xs[:1], step - n, axis=0)])
            ts += [ts[0]] * (step - n)
        r = fn(xs, ts, None)
        values.append(np.atleast_1d(r.value)[:n])
        grads.append(r.gradient[:n])
    return Gradient(np.concatenate(values), np.concatenate(grads))


def _is_probabilities(p) -> bool:
    return bool(p.min() >= 0 and abs(float(p.sum()) - 1.0) < 1e-3)
