"""``featuremaps cam``: class activation maps for images and folders, written to disk.

For each image, ``OUT/<image-stem>/cam/`` (written as a temporary folder and renamed: complete or absent)
holds

* ``panel.png``: the input (or face crop) and each map blended over it, a row per method, a column per class,
  each labelled with the class name and its probability;
* ``<method>_<class>.png`` the heatmap, ``<method>_<class>_overlay.png`` it blended over the model input,
  ``<method>_<class>_face.png`` blended over the face crop (emotion model, when a face was cropped);
* ``input.png`` (what the network saw), ``face.png`` (the face crop), ``cam.npz`` (raw maps at the layer's
  resolution under ``<method>/<class>``, upsampled [0, 1] maps under ``<method>/<class>/up``, ``probs``) and
  ``cam.json`` (model, target layer, classes, probabilities, file names).

``featuremaps show`` rewrites ``OUT/<image-stem>/`` but keeps its ``cam/``: the two commands share a folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from featuremaps import __version__
from featuremaps.cam import heatmap_rgb, overlay, resolve_class, upsample
from featuremaps.cam.engine import cam_engine
from featuremaps.display import p_equals
from featuremaps.draw import INK, MUTED, Canvas, colorbar_height, fit_text, line_height, title_block
from featuremaps.images import load_image
from featuremaps.io import (
    atomic_dir,
    check_replaceable,
    made_by_featuremaps,
    safe_name,
    save_json,
    save_npz,
    save_png,
    unique_names,
)
from featuremaps.pipeline import model_title, percent, prediction_of, prepare
from featuremaps.render import colormap, resize_rgb

log = logging.getLogger(__name__)

DISPLAY = 224  # smallest side drawn (FER faces are 48x48)


def _display(rgb: np.ndarray, side: int = DISPLAY) -> np.ndarray:

    h, w = rgb.shape[:2]
    s = max(1.0, side / max(h, w))
    return resize_rgb(rgb, (round(h * s), round(w * s))) if s > 1 else rgb


def render_panel(
    image: np.ndarray,
    rows: list[tuple[str, list]],
    cmap: str = "jet",
    cell: int = 176,
    title: str = "",
    subtitle: str = "",
) -> np.ndarray:
    """A grid: the image, then one overlay per result; ``rows`` = [(method, [CamResult, ...]), ...].

    Each overlay is captioned with its class (``(predicted)`` for the top class) and probability, which is
    never cut: a long class name is shortened before it. An all-zero map is hatched and labelled. The title
    and subtitle wrap, so a long model or image name never hides the prediction.
    """

    fs = 14
    ncol = 1 + max(len(r) for _, r in rows)
    lab_h = line_height(fs + 1) + line_height(fs) + 4
    width = max(8 + ncol * (cell + 6), 620)
    tb = title_block(width - 12, title, subtitle, size=fs + 4, sub_size=fs)
    head_h = tb.height + 10
    bar_h = colorbar_height(fs - 1) + 10
    height = head_h + len(rows) * (cell + lab_h + 6) + bar_h + 6
    c = Canvas.blank(height, width)
    img = resize_rgb(image, (cell, cell)) if image.shape[:2] != (cell, cell) else image
    tb.draw(c, 6, 4)
    for i, (method, results) in enumerate(rows):
        y = head_h + i * (cell + lab_h + 6)
        c.paste(img, (4, y + lab_h))
        c.text((6, y + 2), fit_text(method, fs + 2, cell - 4), fs + 2, INK)
        c.text((6, y + line_height(fs + 1) + 2), "input", fs, MUTED)
        for j, r in enumerate(results, start=1):
            x = 4 + j * (cell + 6)
            if r.heatmap_up.any():  # all zeros: the map is 0, or float noise next to its activations
                c.paste(overlay(img, r.heatmap_up, cmap=cmap), (x, y + lab_h))
            else:
                c.mark_blank((x, y + lab_h), (cell, cell), "map all zero", fs - 2)
            name = r.class_name or f"class {r.class_index}"
            top = r.probs is not None and int(np.argmax(r.probs)) == r.class_index
            c.text((x + 2, y + 2), fit_text(name + (" (predicted)" if top else ""), fs + 1, cell - 4), fs + 1, INK)
            p = p_equals(r.probability) if r.probability is not None else ""
            c.text((x + 2, y + line_height(fs + 1) + 2), p, fs, MUTED)
    yb = height - bar_h + 4
    c.colorbar(8, yb, min(260, width - 300), colormap(cmap), 0.0, 1.0, size=fs - 1, label="map / its own max", ticks=5)
    return c.rgb


class CamRunner:
    """Runs the cam command for many images with one model, reusing the cut model per input shape."""

    def __init__(
        self,
        lm,
        methods: list[str],
        layer=None,
        target_class=None,
        all_classes=False,
        cmap="jet",
        input_shape=None,
        resize="crop",
        face_crop=None,
        max_pixels=None,
        top_classes: int = 10,
    ):
        self.lm, self.methods, self.layer_spec = lm, methods, layer
        self.top_classes = top_classes
        self.target_class, self.all_classes, self.cmap = target_class, all_classes, cmap
        self.input_shape, self.resize = input_shape, resize
        self.face_crop, self.max_pixels = face_crop, max_pixels
        self._engines: dict[tuple, object] = {}

    def engine(self, shape):

        if shape not in self._engines:
            if len(self._engines) >= 2:
                self._engines.pop(next(iter(self._engines)))
            self._engines[shape] = cam_engine(self.lm.model, shape, self.layer_spec)
        return self._engines[shape]

    def check(self, shape) -> None:
        """Fail on a bad layer/class before any image is read or file written."""

        eng = self.engine(shape)
        resolve_class(self.target_class, self.lm.classes, eng.n_classes)

    def classes_for(self, eng, x: np.ndarray) -> list[int] | None:
        """Class indices to explain: the ``top_classes`` most probable with ``all_classes``, else the target."""
        names = self.lm.classes if self.lm.classes and len(self.lm.classes) == eng.n_classes else None
        if not self.all_classes:
            c = resolve_class(self.target_class, names, eng.n_classes)
            return None if c is None else [c]
        if eng.n_classes <= self.top_classes:
            return list(range(eng.n_classes))
        probs = eng.forward(x[None])[0]
        return [int(c) for c in np.argsort(-probs, kind="stable")[: self.top_classes]]

    def run(
        self,
        path: Path,
        out_root: Path,
        name: str | None = None,
        progress=None,
        passes=None,
        kept: list[str] | None = None,
    ) -> tuple[Path, list]:
        """CAMs of one image into ``out_root/name/cam/``; ``progress(i, n, "method for class")`` is called
        before each map, ``passes(i, n, what)`` within Score-CAM's and Ablation-CAM's many model runs. The
        user's entries found in the replaced ``cam/`` and kept are appended to ``kept``."""

        image_folder = out_root / (name or safe_name(path.stem))
        if image_folder.exists() and not made_by_featuremaps(image_folder):
            check_replaceable(image_folder)  # never write cam/ into a user's folder: one line, untouched
        folder = check_replaceable(image_folder / "cam", inputs=[path])

        kw = {"max_pixels": self.max_pixels} if self.max_pixels else {}
        rgb = load_image(path, **kw)
        prep = prepare(self.lm, rgb, input_shape=self.input_shape, face_crop=self.face_crop, resize=self.resize)
        eng = self.engine(prep.x.shape)
        names = self.lm.classes if self.lm.classes and len(self.lm.classes) == eng.n_classes else None
        cls = self.classes_for(eng, prep.x)
        results = eng.run(prep.x, self.methods, cls, names, progress=progress, passes=passes)
        shown = _display(prep.shown)
        face = prep.face if prep.face_box is not None and prep.face is not None else None
        pred = prediction_of(self.lm, results[0].probs)
        lay = eng.layer
        title = f"{model_title(self.lm)} - {path.name} - {lay.label} {lay.name}"
        if pred:
            title += f" - predicted: {pred[0]['class']} ({percent(pred[0]['probability'])})"
        shown_classes = ""
        if self.all_classes and len(results) and eng.n_classes > len({r.class_index for r in results}):
            shown_classes = f"the {len({r.class_index for r in results})} most probable of {eng.n_classes} classes; "
        if getattr(self.lm, "random_weights", False):
            shown_classes = "random weights: classes and probabilities are noise; " + shown_classes
        sub = shown_classes + (
            f"score: {'pre-softmax logit' if eng.score == 'logit' else 'model output'}; maps blended over "
            f"{'the face crop' if face is not None else 'the model input'}; colormap {self.cmap}"
        )
        rows = [(m, [r for r in results if r.method == m]) for m in self.methods]
        panel = render_panel(
            _display(face if face is not None else prep.shown, 176), rows, cmap=self.cmap, title=title, subtitle=sub
        )
        entries, arrays = [], {"probs": results[0].probs.astype(np.float32)}
        with atomic_dir(folder, inputs=[path], kept=kept) as tmp:
            save_png(tmp / "panel.png", panel)
            save_png(tmp / "input.png", prep.shown)
            if face is not None:
                save_png(tmp / "face.png", face)
            classes = {r.class_index: r.class_name or f"class{r.class_index}" for r in results}
            cnames = dict(zip(classes, unique_names(safe_name(n) for n in classes.values()), strict=True))
            for r in results:
                cname = cnames[r.class_index]
                key = f"{r.method}/{cname}"
                stem = f"{safe_name(r.method)}_{cname}"
                big = upsample(r.heatmap_up, shown.shape[:2])
                files = {"heatmap": f"{stem}.png", "overlay": f"{stem}_overlay.png"}
                save_png(tmp / files["heatmap"], heatmap_rgb(big, self.cmap))
                save_png(tmp / files["overlay"], overlay(shown, big, cmap=self.cmap))
                if face is not None:
                    files["overlay_face"] = f"{stem}_face.png"
                    save_png(tmp / files["overlay_face"], overlay(face, r.heatmap_up, cmap=self.cmap))
                arrays[key] = r.heatmap
                arrays[f"{key}/up"] = r.heatmap_up
                entries.append(
                    {
                        "method": r.method,
                        "class_index": r.class_index,
                        "class": r.class_name,
                        "probability": r.probability,
                        "map_shape": list(r.heatmap.shape),
                        "map_max": float(r.heatmap.max()),
                        "npz_key": key,
                        "npz_key_upsampled": f"{key}/up",
                        "files": files,
                    }
                )
            save_npz(tmp / "cam.npz", **arrays)
            save_json(
                tmp / "cam.json",
                {
                    "featuremaps": __version__,
                    "image": str(path),
                    "model": {
                        "name": self.lm.name,
                        "source": self.lm.source,
                        "input_shape": list(prep.x.shape),
                        "random_weights": bool(getattr(self.lm, "random_weights", False)),
                    },
                    "preprocessing": {
                        "resize": prep.resize,
                        "scaling": self.lm.preprocess,
                        "face_crop": prep.face_box is not None,
                        "face_box_xywh": prep.face_box,
                    },
                    "target_layer": {
                        "label": lay.label,
                        "name": lay.name,
                        "type": lay.kind,
                        "default": self.layer_spec is None,
                        "output_shape": list(results[0].heatmap.shape) + [lay.channels],
                    },
                    "score": eng.score,
                    "prediction": pred,
                    "maps": entries,
                    "normalisation": "PNGs and <key>/up: min-max scaled to [0, 1] per map; npz <key>: raw",
                    "files": {
                        "panel": "panel.png",
                        "input": "input.png",
                        "npz": "cam.npz",
                        **({"face": "face.png"} if face is not None else {}),
                    },
                },
            )
        return folder, results
