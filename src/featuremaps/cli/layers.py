"""``featuremaps layers``: a model's conv layers as a table, C1..Cn."""

from __future__ import annotations

from featuremaps.cli.loading import load_model_from_args
from featuremaps.cli.progress import clean
from featuremaps.extractor import replay, tap
from featuremaps.frameworks import adapter, conv_layers


def run(args) -> int:
    lm = load_model_from_args(args, random_head=False)
    ad = adapter(lm.model)
    if ad is None:  # Keras
        convs = conv_layers(lm.model)  # "no conv layers" before anything about input shapes
        shape = lm.resolve_input_shape((224, 224), args.input_shape)
        _, _, taps = replay(lm.model, shape)
        shapes = {c.name: tuple(t.shape[1:]) for c in convs if (t := tap(taps, c)) is not None}  # each call's own
    else:  # PyTorch, ONNX
        shape = lm.resolve_input_shape((224, 224), args.input_shape)
        convs = conv_layers(ad, shape)
        shapes = ad.layer_shapes(shape)
    rows = [("C#", "name", "type", "output shape", "params")]
    for c in convs:
        s = shapes.get(c.name)
        oshape = "x".join(str(d) for d in s) if s is not None else "?"
        rows.append((c.label, clean(c.name), clean(c.kind), oshape, f"{c.params:,}"))  # escapes made visible
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print(f"{clean(lm.name)}: {len(convs)} conv layers, input {'x'.join(map(str, shape))}")
    for r in rows:
        print("  ".join(v.ljust(w) if i < 4 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))))
    return 0
