"""Watch a network learn: a Keras callback that keeps the feature maps of fixed inputs epoch by epoch and draws
them as an epoch x layer sheet (one PNG per input), optionally as TensorBoard image summaries.

Works in any user's ``model.fit`` on any Keras backend: each recorded epoch builds a
:class:`~featuremaps.extractor.FeatureExtractor` on the model's current weights (the same layer objects, so
nothing is copied) and runs the fixed inputs through it once.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np

from featuremaps import display
from featuremaps.draw import GAP, INK, MUTED, Canvas, fit_text, text_width
from featuremaps.errors import UserError
from featuremaps.extractor import FeatureExtractor
from featuremaps.io import ensure_dir, safe_name, save_npz, save_png
from featuremaps.render import apply_colormap, colormap, resize_maps, resize_rgb

#: sheet geometry: header rows (title, layer names) above the cells, epoch labels left of them
SHEET_TOP, SHEET_LEFT, SHEET_CELL = 48, 64, 72


def sheet_size(epochs: int, layers: int, cell: int = SHEET_CELL) -> tuple[int, int]:
    """(height, width) in pixels of a sheet of ``epochs`` rows and ``layers`` columns (plus the input column)."""
    return SHEET_TOP + epochs * (cell + GAP), SHEET_LEFT + (layers + 1) * (cell + GAP)


def cell_box(row: int, col: int, cell: int = SHEET_CELL) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of the cell at ``row`` (epoch index) and ``col`` (0: the input, 1..: layers)."""
    y0, x0 = SHEET_TOP + row * (cell + GAP), SHEET_LEFT + col * (cell + GAP)
    return y0, x0, y0 + cell, x0 + cell


def render_sheet(
    image: np.ndarray,
    maps: list[dict[str, np.ndarray]],
    epochs: list[int],
    title: str = "",
    cell: int = SHEET_CELL,
    cmap: str = "viridis",
) -> np.ndarray:
    """One input's maps over training: a row per recorded epoch, a column per layer, the input first.

    ``maps[i]`` is ``{layer_name: (H, W) float}`` at epoch ``epochs[i]`` (one map per layer: a channel, or
    the mean over channels); each cell is scaled to its own min-max (an all-zero map stays dark). ``image``
    is the input (H, W, 1 or 3) in [0, 1]. Returns RGB uint8 of :func:`sheet_size`.

    Example::

        render_sheet(face, [{"block1_conv1": m1}, {"block1_conv1": m2}], epochs=[1, 2])
    """
    names = list(maps[0]) if maps else []
    h, w = sheet_size(len(maps), len(names), cell)
    c = Canvas.blank(h, w)
    canvas = c.rgb
    lut = colormap(cmap)
    c.text((6, 2), fit_text(title, 13, w - 12), 13, INK)
    for j, name in enumerate(["input", *names]):
        y0, x0, _, _ = cell_box(0, j, cell)
        short = name.rsplit("/", 1)[-1]
        head, _, tail = short.rpartition("_")
        if text_width(short, 10) <= cell or not head:  # one line, else two: stage2_block1 / conv1
            c.text((x0, SHEET_TOP - 14), fit_text(short, 10, cell), 10, MUTED)
        else:
            c.text((x0, SHEET_TOP - 26), fit_text(head + "_", 10, cell), 10, MUTED)
            c.text((x0, SHEET_TOP - 14), fit_text(tail, 10, cell), 10, MUTED)
    img = np.asarray(image, np.float32)
    img = img if img.ndim == 3 else img[..., None]
    rgb = (np.clip(np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8)
    thumb = resize_rgb(rgb, (cell, cell))
    for i, (epoch, row) in enumerate(zip(epochs, maps, strict=True)):
        y0, x0, y1, x1 = cell_box(i, 0, cell)
        c.text((6, y0 + cell // 2 - 6), f"epoch {epoch}", 11, INK)
        canvas[y0:y1, x0:x1] = thumb
        for j, name in enumerate(names, start=1):
            m = np.asarray(row[name], np.float32)
            lo, hi = float(m.min()), float(m.max())
            norm = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
            tile = resize_maps(norm[..., None], (cell, cell))[..., 0]
            y0, x0, y1, x1 = cell_box(i, j, cell)
            canvas[y0:y1, x0:x1] = apply_colormap(tile, lut)
    return c.rgb


class FeatureMapsCallback(keras.callbacks.Callback):
    """Keep the feature maps of fixed inputs after every ``every``-th epoch and draw them as a sheet per input.

    ``images``: one preprocessed input ``(H, W, C)`` or a batch ``(N, H, W, C)`` float32, as the model takes
    it. ``layers``: as ``featuremaps show --layers`` (``all``, ``C1-C5``, names). ``channel``: the map drawn
    per layer, a channel index, or ``None`` (default) for the mean over the layer's channels, which does not
    depend on channel order. ``out``: folder for ``<name>.png`` sheets, rewritten after each recorded epoch
    (``None``: keep the maps in memory only, in :attr:`history`). ``tensorboard_dir``: also log each sheet as
    a TensorBoard image (needs the ``tensorboard`` package and TensorFlow; skipped otherwise, see
    :attr:`tensorboard_note`). ``every=0`` records nothing.

    :attr:`history` is a list of ``(epoch, [ {layer: (H, W) map} per input ])``; epochs count from 1.
    ``history``: the maps of earlier epochs (a resumed run's, :func:`load_history`), drawn before the new
    ones. With ``out``, the maps are also kept in ``out/maps.npz`` (float16, :func:`save_history`), so a run
    resumed later draws its whole sheet, not just the epochs after the resume.

    Example::

        cb = featuremaps.FeatureMapsCallback(x_val[:4], layers="C1,C4,C8", out="runs/maps")
        model.fit(x, y, epochs=10, callbacks=[cb])   # runs/maps/image1.png ... image4.png
    """

    def __init__(
        self,
        images,
        layers="all",
        every: int = 1,
        out: str | Path | None = None,
        tensorboard_dir: str | Path | None = None,
        names: list[str] | None = None,
        channel: int | None = None,
        cell: int = SHEET_CELL,
        cmap: str = "viridis",
        first_epoch: int = 0,
        history: list[tuple[int, list[dict[str, np.ndarray]]]] | None = None,
    ):
        super().__init__()
        x = np.asarray(images, np.float32)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise UserError(f"images must be (H, W, C) or (N, H, W, C), not shape {x.shape}; add a channel axis")
        if int(every) < 0:
            raise UserError(f"every={every} must be 0 (off) or a number of epochs")
        self.images, self.layers, self.every = x, layers, int(every)
        self.names = list(names) if names else [f"image{i + 1}" for i in range(len(x))]
        if len(self.names) != len(x):
            raise UserError(f"{len(self.names)} names for {len(x)} images; give one name per image")
        if len({safe_name(n) for n in self.names}) != len(self.names):  # one sheet (and file) per input
            raise UserError(f"the names {self.names} repeat; give each image a name of its own")
        self.out = Path(out) if out is not None else None
        self.channel, self.cell, self.cmap, self.first_epoch = channel, cell, cmap, first_epoch
        self.history: list[tuple[int, list[dict[str, np.ndarray]]]] = list(history or [])
        self.tensorboard_note = ""
        self._tb = None
        if tensorboard_dir is not None:
            if importlib.util.find_spec("tensorboard") and importlib.util.find_spec("tensorflow"):
                import tensorflow as tf  # only when asked for: TensorBoard's writer is TensorFlow's

                self._tb = tf.summary.create_file_writer(str(tensorboard_dir))
            else:
                self.tensorboard_note = "TensorBoard summaries skipped: pip install tensorboard tensorflow"

    def maps_now(self) -> list[dict[str, np.ndarray]]:
        """Each input's ``{layer: (H, W)}`` maps on the model's current weights."""
        fx = FeatureExtractor(self.model, self.images.shape[1:], layers=self.layers, maps=None)
        results, _ = fx(self.images)
        per_image = []
        for i in range(len(self.images)):
            row = {}
            for r in results:
                m = r.maps[i]
                row[r.conv.name] = m.mean(-1) if self.channel is None else m[..., min(self.channel, m.shape[-1] - 1)]
            per_image.append(row)
        return per_image

    def on_epoch_end(self, epoch, logs=None):
        if self.every <= 0 or (epoch + 1 - self.first_epoch) % self.every:
            return
        self.history.append((epoch + 1, self.maps_now()))
        sheets = self.sheets()
        if self.out is not None:
            ensure_dir(self.out)
            for name, sheet in sheets.items():
                save_png(self.out / f"{safe_name(name)}.png", sheet)
            save_history(self.out / HISTORY_FILE, self.history)
        if self._tb is not None:
            import tensorflow as tf

            with self._tb.as_default():
                for name, sheet in sheets.items():
                    tf.summary.image(f"featuremaps/{name}", sheet[None], step=epoch + 1)
            self._tb.flush()

    def sheets(self) -> dict[str, np.ndarray]:
        """``{name: sheet}`` of the epochs recorded so far (:func:`render_sheet`)."""
        epochs = [e for e, _ in self.history]
        what = "channel mean" if self.channel is None else f"channel {self.channel}"  # short: 2 layers fit it
        return {
            name: render_sheet(
                self.images[i],
                [maps[i] for _, maps in self.history],
                epochs,
                title=f"{name} by epoch ({what})",
                cell=self.cell,
                cmap=self.cmap,
            )
            for i, name in enumerate(self.names)
        }

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """In a notebook the callback shows its sheets so far (one per input), drawn from :attr:`history`."""
        n = len(self.history)
        if not n:
            return display.bundle(f"FeatureMapsCallback: no epoch recorded yet ({len(self.names)} inputs)", [])
        text = f"FeatureMapsCallback: {len(self.names)} inputs, {n} epochs recorded (last: {self.history[-1][0]})"
        return display.bundle(text, list(self.sheets().items()))


#: the maps a FeatureMapsCallback with ``out`` has drawn, kept beside its sheets for a resumed run
HISTORY_FILE = "maps.npz"


def save_history(path: str | Path, history: list[tuple[int, list[dict[str, np.ndarray]]]]) -> Path:
    """Write a callback's :attr:`~FeatureMapsCallback.history` as float16 arrays named
    ``<epoch>/<input index>/<layer>`` (the layer order kept by an ``order`` array)."""
    arrays: dict[str, np.ndarray] = {}
    layers: list[str] = []
    for epoch, per_image in history:
        for i, maps in enumerate(per_image):
            for layer, m in maps.items():
                if layer not in layers:
                    layers.append(layer)
                arrays[f"{epoch}/{i}/{layers.index(layer)}"] = np.asarray(m, np.float16)
    return save_npz(path, order=np.array(layers), **arrays)


def load_history(path: str | Path, up_to: int | None = None) -> list[tuple[int, list[dict[str, np.ndarray]]]]:
    """:func:`save_history`'s file as a history (epochs after ``up_to`` left out: a run killed after drawing
    an epoch and before its checkpoint draws it again); an absent or damaged file is an empty history."""
    try:
        with np.load(path, allow_pickle=False) as z:
            layers = [str(v) for v in z["order"]]
            table: dict[int, dict[int, dict[str, np.ndarray]]] = {}
            for key in z.files:
                if key == "order":
                    continue
                e, i, k = (int(v) for v in key.split("/"))
                table.setdefault(e, {}).setdefault(i, {})[layers[k]] = z[key].astype(np.float32)
    except (OSError, ValueError, KeyError, IndexError, EOFError):
        return []
    return [(e, [table[e][i] for i in sorted(table[e])]) for e in sorted(table) if up_to is None or e <= up_to]
