"""``featuremaps layers``: a model's conv layers as a table, C1..Cn."""

from __future__ import annotations

from featuremaps.cli.loading import load_model_from_args
from featuremaps.cli.progress import clean
from featuremaps.frameworks import adapter


def run(args) -> int:
    lm = load_model_from_args(args, random_head=False)
    ad = adapter(lm.model)
    shape = lm.resolve_input_shape((224, 224), args.input_shape)
    convs = ad.conv_layers(shape)
    shapes = ad.layer_shapes(shape)  # each call's own
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
