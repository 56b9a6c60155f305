"""Feature maps without a framework: conv layers as records, layer and channel selection, per-layer rows.

Every framework's adapter (:mod:`featuremaps.frameworks`) names its conv layers with :class:`ConvLayer` and every
extractor returns :class:`LayerMaps` rows; ``--layers`` (:func:`select_layers`) and ``--select``
(:func:`parse_select`, :func:`pick_channels`, :func:`select_maps`) are read here once for all of them. This
module imports NumPy only.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

import numpy as np

from featuremaps.errors import UserError

SELECT_MODES = ("first", "top-mean", "top-max")
STATS = ("mean", "max", "zero_fraction", "min")


@dataclass
class ConvLayer:
    """One conv layer: ``index`` is its C-number, ``name`` its path (``outer/inner`` for nested models), ``layer``
    the framework's own object (a Keras layer, an ``nn.Module``, an ONNX node)."""

    index: int
    name: str
    layer: object = field(repr=False)
    kind: str = ""

    @property
    def label(self) -> str:
        return f"C{self.index}"

    @property
    def short_name(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def channels(self) -> int | None:
        try:
            shape = tuple(self.layer.output.shape)
        except (AttributeError, ValueError, RuntimeError):  # never called: unknown
            return None
        return shape[-1] if shape else None

    @property
    def params(self) -> int:
        count = getattr(self.layer, "count_params", None)
        return int(count()) if count is not None and getattr(self.layer, "built", False) else 0


_RANGE = re.compile(r"^[cC](\d+)\s*-\s*[cC]?(\d+)$")
_CNUM = re.compile(r"^[cC](\d+)$")


def select_layers(convs: list[ConvLayer], spec: str | list[str] | None) -> list[ConvLayer]:
    """Pick layers by ``all``, names (full or short), C-numbers, ranges (``C1-C5``), globs; in model order."""
    if spec is None or spec == "all" or spec == ["all"]:
        return list(convs)
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if not items:
        raise UserError("--layers is empty; give names, C-numbers (C3), ranges (C1-C5), globs or 'all'")
    chosen: set[int] = set()
    n = len(convs)
    for item in items:
        if item == "all":
            chosen.update(range(1, n + 1))
            continue
        if m := _RANGE.match(item):
            a, b = int(m.group(1)), int(m.group(2))
            if a > b and 1 <= b <= a <= n:
                raise UserError(f"layer range '{item}' is reversed; write it low to high: C{b}-C{a}")
            if not (1 <= a <= b <= n):
                raise UserError(f"layer range '{item}' is outside C1-C{n}; run 'featuremaps layers' to list them")
            chosen.update(range(a, b + 1))
            continue
        if m := _CNUM.match(item):
            i = int(m.group(1))
            if not 1 <= i <= n:
                raise UserError(f"no layer {item}: the model has C1-C{n}; run 'featuremaps layers' to list them")
            chosen.add(i)
            continue
        hits = [c.index for c in convs if item in (c.name, c.short_name)]
        if not hits and any(ch in item for ch in "*?["):
            hits = [
                c.index for c in convs if fnmatch.fnmatchcase(c.name, item) or fnmatch.fnmatchcase(c.short_name, item)
            ]
        if not hits:
            names = ", ".join(c.short_name for c in convs[:8]) + (", ..." if n > 8 else "")
            raise UserError(
                f"no conv layer matches '{item}'; the model has {n} ({names}); use names, C1-C{n}, ranges or globs"
            )
        chosen.update(hits)
    return [c for c in convs if c.index in chosen]


def parse_select(select: str | list[int] | None) -> tuple[str, list[int] | None]:
    """``first`` | ``top-mean`` | ``top-max`` | ``0,5,9`` -> (mode, channels)."""
    if select is None:
        return "first", None
    if isinstance(select, list | tuple):
        return "list", [int(c) for c in select]
    s = select.strip()
    if s in SELECT_MODES:
        return s, None
    try:  # F-numbers as figures label them (F1 = channel 0) or 0-based indices
        chans = [int(c.strip()[1:]) - 1 if c.strip()[:1] in "Ff" else int(c) for c in s.split(",") if c.strip()]
    except ValueError:
        raise UserError(
            f"--select '{select}' is not first, top-mean, top-max or a channel list like F1,F6 or 0,5"
        ) from None
    if not chans or min(chans) < 0:
        raise UserError(f"--select '{select}': channels are F-numbers from F1 or 0-based indices like 0,5,9")
    dup = sorted({c for c in chans if chans.count(c) > 1}) if len(chans) <= 4096 else []
    if dup:
        raise UserError(f"--select '{select}' names channel F{dup[0] + 1} more than once; list each channel once")
    if len(chans) > 4096:
        raise UserError(f"--select lists {len(chans)} channels; at most 4096")
    return "list", chans


def pick_channels(c: ConvLayer, C: int, mode: str, chans, maps) -> tuple[int, list[int], str]:
    """``(k, channel ids, note)`` for layer ``c`` with ``C`` channels: the listed channels (``mode == "list"``,
    each checked against ``C``) or the first ``maps`` (all when ``maps`` is None). Every framework's extractor
    picks through this one function."""
    if mode == "list":
        bad = [ch for ch in chans if ch >= C]
        if bad:
            raise UserError(
                f"channel {bad[0]} does not exist in {c.label} {c.name} "
                f"({C} channels: 0-{C - 1}); choose channels below {C}"
            )
        return len(chans), chans, ""
    k = C if maps is None else min(int(maps), C)
    note = f"{maps} maps asked, layer has {C}: showing all" if maps is not None and maps > C else ""
    return k, list(range(k)), note


@dataclass(frozen=True)
class Pick:
    """What to take out of one layer's maps: ``mode`` (``first``: the channels ``ids``; ``top-mean`` /
    ``top-max``: the ``k`` strongest of each image), as :func:`pick_channels` decided it."""

    mode: str
    k: int
    ids: tuple[int, ...]


def select_maps(x: np.ndarray, pick: Pick) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chosen maps (B, h, w, k), channel ids (B, k), stats (B, 4) of one layer's (B, h, w, C) maps (NumPy)."""
    b = x.shape[0]
    flat = x.reshape(b, -1) if x.flags.c_contiguous else None
    stats = np.empty((b, len(STATS)), np.float32)
    for i in range(b):
        v = flat[i] if flat is not None else x[i]
        stats[i] = (v.mean(dtype=np.float64), v.max(), np.count_nonzero(v == 0) / v.size, v.min())
    if pick.mode in ("first", "list"):
        idx = np.asarray(pick.ids, np.int64)
        return np.ascontiguousarray(x[..., idx], np.float32), np.tile(idx, (b, 1)), stats
    score = x.mean(axis=(1, 2)) if pick.mode == "top-mean" else x.max(axis=(1, 2))
    order = np.argsort(-score, axis=1, kind="stable")[:, : pick.k]
    maps = np.stack([x[i][..., order[i]] for i in range(b)]).astype(np.float32)
    return maps, order.astype(np.int64), stats


@dataclass
class LayerMaps:
    """One layer's result for a batch: ``maps`` (B, H, W, k), ``channels`` (B, k), ``stats`` (B, 4)."""

    conv: ConvLayer
    shape: tuple[int, int, int]  # the layer's full output (H, W, C)
    maps: np.ndarray
    channels: np.ndarray
    stats: np.ndarray
    note: str = ""

    def stat(self, name: str, i: int = 0) -> float:
        return float(self.stats[i, STATS.index(name)])


class LayerDict(dict):
    """The dict ``extract`` returns, ``{layer_name: (H, W, k) maps}``, which also knows each layer's full
    output shape (``shapes``) and which channels its k maps are (``channels``), so figures drawn from it
    label rows with the layer's shape and cells with their channel ids."""

    shapes: dict
    channels: dict
