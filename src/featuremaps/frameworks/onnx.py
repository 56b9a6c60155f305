"""ONNX models through ONNX Runtime: every conv node's output becomes an extra graph output.

The model's ``Conv`` and ``ConvTranspose`` nodes (4-D) are its conv layers, in graph order (ONNX requires
nodes in topological order, so this is a forward order). Their outputs are appended to the graph's outputs
(types from ``onnx.shape_inference`` where the model lacks them) and one ``InferenceSession.run`` returns
them all. ONNX conv outputs are NCHW whatever layout the model's input has; they become ``(B, h, w, C)``
NumPy views at the boundary. Plain predictions (Score-CAM's masked inputs) use the unmodified model.

ONNX Runtime computes no gradients: gradient CAM methods are refused with one line naming the methods that
apply (Score-CAM, EigenCAM, Ablation-CAM). Ablation-CAM re-runs the network from the target layer in a modified
graph: the conv node's output is renamed to an unused name and a new graph input carries the ablated maps
under the old name, fed with copies of the image (one run per copy where the batch dimension is fixed at 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from featuremaps.errors import UserError
from featuremaps.frameworks.base import ModelAdapter
from featuremaps.loaded import PREPROCESS_MODES, LoadedModel, preprocess_fn
from featuremaps.maps import ConvLayer
from featuremaps.receptive import TRANSPOSED_NOTE, Field, kernel_field, transposed_field, widest

CONV_OPS = ("Conv", "ConvTranspose")
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
#: ONNX Runtime's logs: fatal only (its error lines repeat, in colour, what featuremaps says in one line)
QUIET = 4
#: how ONNX Runtime says it ran out of memory (its arena, the C++ allocator)
OUT_OF_MEMORY = ("failed to allocate memory", "bad_alloc", "out of memory")


def _run_options():
    ro = ort.RunOptions()
    ro.log_severity_level = QUIET
    return ro


def run_failure(e: Exception, what: str, shape: tuple) -> UserError:
    """One line for an exception of ``InferenceSession.run`` on a ``shape`` (B, H, W, C) batch: out of memory
    is said as such (not blamed on --input-shape), another failure names the size it ran at."""
    first = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    size = "x".join(map(str, shape[1:]))
    if any(k in str(e).lower() for k in OUT_OF_MEMORY):
        return UserError(
            f"ONNX Runtime ran out of memory running {what} on {shape[0]} input(s) of {size}; lower --batch-size "
            "where the command has it, or pass a smaller --input-shape, or free memory"
        )
    return UserError(
        f"{what} cannot run on a {size} input ({first[:120]}); pass --input-shape H,W,C for the size it takes"
    )


def _node_name(node, i: int) -> str:
    """The module path of a conv node that torch's exporter named by its scopes, as PyTorch names the module:
    ``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``, ``/features/features.1/block/block.0/block.0.0/Conv``
    -> ``features.1.block.0.0`` (a scope named ``<parent>.<child>`` stands for its parent's last part); else the
    node or output name."""
    name = node.name or (node.output[0] if node.output else f"conv_{i}")
    if name.startswith("/") and name.count("/") >= 2:
        path: list[str] = []
        for p in (p for p in name.strip("/").split("/")[:-1] if p):
            if path and p.startswith(path[-1] + "."):
                path[-1] = p  # block -> block.0 -> block.0.0: one module deeper, same part of the path
            else:
                path.append(p)
        return ".".join(path)
    return name


class OnnxConvLayer(ConvLayer):
    """A conv node: ``layer`` is the ``onnx.NodeProto``; ``output`` its output tensor's name."""

    def __init__(self, index, name, node, kind, output, params=0):
        super().__init__(index, name, node, kind)
        self.output = output
        self._params = params
        self._channels = None

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1].rsplit("/", 1)[-1]

    @property
    def channels(self) -> int | None:
        return self._channels

    @property
    def params(self) -> int:
        return self._params


class OnnxAdapter(ModelAdapter):
    """An ONNX model (file, bytes or ``onnx.ModelProto``) behind featuremaps' model protocol."""

    framework = "onnx"
    has_gradients = False
    has_head_scores = True
    score = "output"

    def __init__(self, model: onnx.ModelProto, name: str = "model", providers=None):
        self.name = name
        self.proto = model
        self.providers = providers or ["CPUExecutionProvider"]
        graph = model.graph
        inits = {t.name for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise UserError(f"ONNX model '{name}' has {len(inputs)} inputs; featuremaps draws single-image models")
        self.input_name = inputs[0].name
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in _dims(inputs[0])]
        if len(dims) != 4:
            raise UserError(
                f"ONNX model '{name}' takes input of rank {len(dims)}, not images (N, C, H, W) or (N, H, W, C)"
            )
        self.nchw = not (dims[3] in (1, 3) and dims[1] not in (1, 3))
        h, w, c = (dims[2], dims[3], dims[1]) if self.nchw else (dims[1], dims[2], dims[3])
        self.input_shape = (h, w, c)
        self.batch_fixed = dims[0] == 1
        self.output_name = graph.output[0].name
        sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
        convs = []
        for i, node in enumerate(graph.node):
            if node.op_type in CONV_OPS and node.output:
                kind = node.op_type
                group = next((a.i for a in node.attribute if a.name == "group"), 1)
                if group > 1:
                    kind += f" (groups={group})"
                params = sum(sizes.get(n, 0) for n in node.input[1:])
                convs.append(OnnxConvLayer(len(convs) + 1, _node_name(node, i), node, kind, node.output[0], params))
        if not convs:
            raise UserError(f"ONNX model '{name}' has no Conv or ConvTranspose nodes; featuremaps draws CNNs")
        seen: dict[str, int] = {}
        for c in convs:  # unique names (two nodes of one module, or unnamed nodes)
            seen[c.name] = seen.get(c.name, 0) + 1
            if seen[c.name] > 1:
                c.name = f"{c.name}@{seen[c.name]}"
        self._convs = convs
        self._by_name = {c.name: c for c in convs}
        self._sess = None
        self._plain = None
        self._heads: dict[tuple, tuple] = {}
        self._probed: dict[tuple, tuple[dict, tuple]] = {}

    # ------------------------------------------------------------ sessions
    def _session(self):
        """The session whose outputs are the model output and every conv node's output."""
        if self._sess is None:
            m = onnx.ModelProto()
            m.CopyFrom(self.proto)
            try:
                inferred = onnx.shape_inference.infer_shapes(m)
            except Exception:  # models shape inference cannot read still run; outputs then get a bare type
                inferred = m
            known = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
            have = {o.name for o in m.graph.output}
            for c in self._convs:
                if c.output in have:
                    continue
                vi = known.get(c.output)
                if vi is None or not vi.type.HasField("tensor_type"):
                    vi = onnx.helper.make_tensor_value_info(c.output, onnx.TensorProto.FLOAT, None)
                m.graph.output.append(vi)
                have.add(c.output)
            self._sess = self._make(m.SerializeToString())
            self._dtype = _DTYPES.get(self._sess.get_inputs()[0].type, np.float32)
        return self._sess

    def _make(self, data: bytes):
        try:
            so = ort.SessionOptions()
            so.log_severity_level = QUIET
            return ort.InferenceSession(data, sess_options=so, providers=self.providers)
        except Exception as e:
            raise UserError(f"ONNX Runtime cannot run model '{self.name}' ({str(e).splitlines()[0][:140]})") from None

    def _plain_session(self):
        if self._plain is None:
            self._plain = self._make(self.proto.SerializeToString())
        return self._plain

    def _feed(self, batch: np.ndarray) -> np.ndarray:
        x = np.asarray(batch, np.float32)
        if self.nchw:
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, getattr(self, "_dtype", np.float32))

    def _run(self, sess, outputs: list[str], batch: np.ndarray) -> list[np.ndarray]:
        x = self._feed(batch)
        try:
            if self.batch_fixed and x.shape[0] > 1:
                parts = [sess.run(outputs, {self.input_name: x[i : i + 1]}, _run_options()) for i in range(x.shape[0])]
                return [np.concatenate([p[j] for p in parts]) for j in range(len(outputs))]
            return sess.run(outputs, {self.input_name: x}, _run_options())
        except Exception as e:
            raise run_failure(e, f"ONNX model '{self.name}'", batch.shape) from None

    # ------------------------------------------------------------ protocol
    def receptive_fields(self) -> tuple[dict, bool, str]:
        """Each conv node's receptive field from the graph's attributes (``kernel_shape``, ``strides``,
        ``pads``, ``dilations``; Araujo et al. 2019, as for Keras in :mod:`featuremaps.receptive`): Conv
        and pooling nodes grow it; Flatten, Gemm, MatMul, Reshape, global pooling and Resize end it; where paths
        merge the widest field goes on (then approximate)."""
        graph = self.proto.graph
        inits = {t.name: t for t in graph.initializer}
        fields = {self.input_name: Field()}
        names = {c.output: c.name for c in self._convs}
        out, notes = {}, set()
        for node in graph.node:
            f = widest([fields.get(i) for i in node.input], notes)
            if f is not None:
                f = _field_after(node, f, inits, notes)
            for o in node.output:
                fields[o] = f
            if node.output and node.output[0] in names:
                out[names[node.output[0]]] = f
        return out, not notes, "; ".join(sorted(notes))

    def conv_layers(self, input_shape=None) -> list[ConvLayer]:
        return list(self._convs)

    def _probe(self, input_shape):
        shape = tuple(int(v) for v in input_shape)
        if shape not in self._probed:
            maps, out = self.forward(np.zeros((1, *shape), np.float32), [c.name for c in self._convs])
            self._probed[shape] = ({n: tuple(a.shape[1:]) for n, a in maps.items()}, tuple(out.shape))
            for c in self._convs:
                c._channels = self._probed[shape][0][c.name][-1]
        return self._probed[shape]

    def layer_shapes(self, input_shape):
        return self._probe(input_shape)[0]

    def layer_kind(self, name: str) -> str | None:
        kinds = [n.op_type for n in self.proto.graph.node if n.name == name and n.op_type not in CONV_OPS]
        return kinds[0] if kinds else None

    def output_shape(self, input_shape):
        return self._probe(input_shape)[1]

    def forward(self, batch, names):
        if not names:
            (out,) = self._run(self._plain_session(), [self.output_name], batch)
            return {}, out.astype(np.float32, copy=False)
        outs = [self.output_name, *(self._by_name[n].output for n in names)]
        res = self._run(self._session(), outs, batch)
        maps = {}
        for n, a in zip(names, res[1:], strict=True):
            if a.ndim != 4:
                raise UserError(f"conv node {n} outputs shape {a.shape}; featuremaps needs (N, C, H, W)")
            maps[n] = a.astype(np.float32, copy=False).transpose(0, 2, 3, 1)
        return maps, res[0].astype(np.float32, copy=False)

    def _head_session(self, name: str, input_shape: tuple):
        """(session, maps input name, its dtype): the model with conv ``name``'s output fed from a graph input."""
        key = (name, tuple(input_shape))
        if key not in self._heads:
            c = self._by_name[name]
            h, w, ch = self.layer_shapes(input_shape)[name]
            m = onnx.ModelProto()
            m.CopyFrom(self.proto)
            g = m.graph
            used = {t for n in g.node for t in (*n.input, *n.output)}
            used |= {v.name for v in (*g.input, *g.output, *g.value_info)} | {t.name for t in g.initializer}
            new, k = f"{c.output}_featuremaps_unused", 1
            while new in used:
                new, k = f"{c.output}_featuremaps_unused{k}", k + 1
            node = next(n for n in g.node if n.output and n.output[0] == c.output)
            node.output[0] = new  # the conv still runs, its output goes nowhere
            elem = next((v.type.tensor_type.elem_type for v in g.value_info if v.name == c.output), 0)
            elem = elem or next(i.type.tensor_type.elem_type for i in g.input if i.name == self.input_name)
            keep = [v for v in g.value_info if v.name != c.output]
            del g.value_info[:]
            g.value_info.extend(keep)
            dims = [1 if self.batch_fixed else "n", ch, h, w]
            g.input.append(onnx.helper.make_tensor_value_info(c.output, elem, dims))
            sess = self._make(m.SerializeToString())
            self._heads[key] = (sess, c.output, _DTYPES.get(sess.get_inputs()[-1].type, np.float32))
        return self._heads[key]

    def head_scores(self, x, name, acts):
        """The output of ``len(acts)`` copies of ``x`` with conv node ``name``'s output replaced, row by row, by
        ``acts`` (B, h, w, C), through the modified graph of :meth:`_head_session`."""
        sess, maps_name, dtype = self._head_session(name, x.shape)
        xs = self._feed(np.repeat(x[None], len(acts), axis=0))
        a = np.ascontiguousarray(np.asarray(acts).transpose(0, 3, 1, 2), dtype)
        step = 1 if self.batch_fixed else len(a)
        try:
            parts = [
                sess.run(
                    [self.output_name], {self.input_name: xs[i : i + step], maps_name: a[i : i + step]}, _run_options()
                )[0]
                for i in range(0, len(a), step)
            ]
        except Exception as e:
            if any(k in str(e).lower() for k in OUT_OF_MEMORY):
                raise run_failure(e, f"ONNX model '{self.name}'", (len(a), *x.shape)) from None
            raise UserError(
                f"ONNX model '{self.name}' cannot run from layer {name} ({str(e).splitlines()[0][:120]})"
            ) from None
        return np.concatenate(parts).astype(np.float32, copy=False)


#: ONNX ops after which a map is no longer spatial (or no longer on the input's grid)
_ENDS_FIELD = ("Flatten", "Gemm", "MatMul", "Reshape", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "Resize",
               "Upsample")  # fmt: skip


def _field_after(node, f: Field, inits: dict, notes: set) -> Field | None:
    """The receptive field after one ONNX node, given its input's."""
    op = node.op_type
    if op in _ENDS_FIELD:
        return None
    if op not in ("Conv", "ConvTranspose", "MaxPool", "AveragePool"):
        return f
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    kernel = attrs.get("kernel_shape")
    if kernel is None and len(node.input) > 1 and node.input[1] in inits:  # Conv may leave it to the weight
        kernel = list(inits[node.input[1]].dims[2:])
    if kernel is None or len(kernel) != 2:
        return None
    strides = attrs.get("strides", [1, 1])
    if op == "ConvTranspose":
        notes.add(TRANSPOSED_NOTE)
        return transposed_field(f, kernel, strides)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    pads = "same" if auto.startswith("SAME") else "valid" if auto == "VALID" else attrs.get("pads", [0, 0, 0, 0])[:2]
    return kernel_field(f, kernel, strides, attrs.get("dilations", [1, 1]), pads)


def _dims(value_info):
    t = value_info.type.tensor_type
    return list(t.shape.dim) if t.HasField("shape") else []


def adapt(model, input_shape=None) -> OnnxAdapter:
    """An :class:`OnnxAdapter` for an ``.onnx`` path, ``onnx.ModelProto`` or ``onnxruntime.InferenceSession``."""
    if isinstance(model, ort.InferenceSession):
        path = getattr(model, "_model_path", None)
        data = getattr(model, "_model_bytes", None)
        if path:
            return OnnxAdapter(_read(Path(path)), Path(path).stem, model.get_providers())
        if data:
            return OnnxAdapter(onnx.load_from_string(data), "model", model.get_providers())
        raise UserError("cannot read the graph of this InferenceSession; pass the .onnx path instead")
    if isinstance(model, onnx.ModelProto):
        return OnnxAdapter(model, model.graph.name or "model")
    path = Path(model)
    return OnnxAdapter(_read(path), path.stem)


def _read(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise UserError(f"ONNX file {path} does not exist; check the path")
    try:
        return onnx.load(str(path))
    except Exception as e:
        raise UserError(f"{path} is not an ONNX model onnx can read ({str(e).splitlines()[0][:100]})") from None


def load_file(path: Path, preprocess: str, classes):
    """``--model net.onnx`` as a :class:`~featuremaps.models.LoadedModel`."""

    ad = OnnxAdapter(_read(path), path.stem)
    lm = LoadedModel(
        ad, path.stem, str(path), PREPROCESS_MODES.get(preprocess, preprocess), preprocess_fn(preprocess),
        ad.input_shape, classes,
    )  # fmt: skip
    lm.needs_input_shape = any(d is None for d in ad.input_shape[:2])
    return lm


def wrap(model, preprocess: str = "unit", classes=None):
    """An in-memory ONNX session or model as a :class:`~featuremaps.models.LoadedModel` (Python API)."""

    ad = adapt(model)
    return LoadedModel(
        ad, ad.name, "in-memory ONNX model", PREPROCESS_MODES.get(preprocess, preprocess),
        preprocess_fn(preprocess), ad.input_shape, classes,
    )  # fmt: skip
