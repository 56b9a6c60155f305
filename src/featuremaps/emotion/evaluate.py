"""``featuremaps evaluate``: accuracy, per-class precision/recall/F1 and confusion matrices on FER2013.

Test-time augmentation (``--tta``) averages the softmax over ten views of each face: the face and its
mirror image, each also shifted by 2 pixels in the four directions (the shifts stand in for the ten-crop
of Khaireddin & Chen 2021, since the network takes the whole 48x48 face). A model trained on random crops
(``featuremaps train --crop 44``, input 44x44) sees the centre crop, and with ``--tta`` the ten-crop: the
four corners and the centre, each also mirrored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from keras import ops

from featuremaps import __version__, models
from featuremaps.charts import render_confusion
from featuremaps.emotion.augment import centre_crop, ten_crop
from featuremaps.emotion.model import EMOTIONS, INPUT_SHAPE
from featuremaps.errors import UserError
from featuremaps.io import check_output_folder, save_json, save_png


def metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy, confusion matrix (rows true, columns predicted) and per-class precision, recall, F1."""
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": float(tp.sum() / max(1, cm.sum())),
        "confusion": cm,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": cm.sum(1),
    }


def tta_views(x: np.ndarray, shift: int = 2) -> list[np.ndarray]:
    """Ten views of an (N, H, W, 1) batch: identity and 4 shifts (edge-padded), each also mirrored."""
    views = []
    pad = np.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    h, w = x.shape[1:3]
    for base in (x, x[:, :, ::-1]):
        pb = pad if base is x else pad[:, :, ::-1]
        views.append(base)
        for dy, dx in ((-shift, 0), (shift, 0), (0, -shift), (0, shift)):
            views.append(pb[:, shift + dy : shift + dy + h, shift + dx : shift + dx + w])
    return views


def predict(model, faces_u8: np.ndarray, tta: bool = False, batch_size: int = 256, progress=None) -> np.ndarray:
    """Softmax outputs (N, classes) for (N, 48, 48) uint8 faces, optionally averaged over the TTA views.

    ``progress(i, n, label)`` is called before each batch and once at the end (``i == n``). A model whose
    input is smaller than the faces (trained with ``--crop``) gets the centre crop, or with ``tta`` the
    ten-crop (:func:`~featuremaps.emotion.augment.ten_crop`).
    """
    x = faces_u8[..., None].astype(np.float32) / 255.0
    side = model.inputs[0].shape[1] if getattr(model, "inputs", None) else None
    if side and side < x.shape[1]:
        views = ten_crop(x, side) if tta else [centre_crop(x, side)]
    else:
        views = tta_views(x) if tta else [x]
    out = None
    steps = [(k, i) for k in range(len(views)) for i in range(0, len(x), batch_size)]
    done = 0
    for v in views:
        chunks = []
        for i in range(0, len(v), batch_size):
            if progress:
                progress(done, len(steps), f"batch {done + 1}")
            chunks.append(ops.convert_to_numpy(model(v[i : i + batch_size], training=False)))
            done += 1
        probs = np.concatenate(chunks)
        out = probs if out is None else out + probs
    if progress:
        progress(len(steps), len(steps), None)
    return out / len(views)


def load_for_eval(spec: str | None):
    """The emotion model to evaluate: shipped (default), a .keras file, or .npz weights."""
    if spec and not spec.endswith(".npz") and models.resolve_name(spec).kind == "application":
        raise UserError(
            f"evaluate measures the emotion model on FER2013; {spec} is an ImageNet model: pass emotion, "
            "a trained run's best.keras or its .npz"
        )
    if spec and spec.endswith(".npz"):
        if not Path(spec).is_file():
            raise UserError(f"weights file {spec} does not exist; check the path")
        lm = models.load("emotion", weights=spec)
    else:
        lm = models.load(spec or "emotion")
    shape = tuple(lm.input_shape or ())
    try:
        n_out = int(lm.model.outputs[0].shape[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        n_out = None
    if not lm.is_emotion and (
        shape[:3] not in (INPUT_SHAPE, (None, None, 1), (None, None, None)) or n_out != len(EMOTIONS)
    ):
        raise UserError(
            f"{spec} is not an emotion model (input {shape}, {n_out} outputs; evaluate needs 48x48x1 faces in and "
            f"{len(EMOTIONS)} emotion scores out); pass the bundled model, a run's best.keras or its .npz"
        )
    return lm.model, lm.source


def evaluate(model, data, splits=("PublicTest", "PrivateTest"), tta: bool = False, progress=None) -> dict:
    """Metrics per split; ``progress(split) -> callable(i, n, label)`` gives each split its progress callback."""
    res = {}
    for s in splits:
        part = data[s]
        probs = predict(model, part.x, tta=tta, progress=progress(s) if progress else None)
        res[s] = metrics(part.y, probs.argmax(1), len(EMOTIONS))
    return res


def is_own_output(folder: Path) -> bool:
    """A folder ``evaluate`` wrote: its ``metrics.json`` has a ``"featuremaps"`` key (or, written before that
    key existed, evaluate's own keys)."""
    p = folder / "metrics.json"
    if p.is_symlink() or not p.is_file():
        return False
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and ("featuremaps" in obj or {"model", "data", "tta", "classes"} <= obj.keys())


def check_output(out) -> Path:
    """``--out``: a new or empty folder, or one holding evaluate's own output (else a UserError), checked
    before minutes of loading."""
    return check_output_folder(out, is_own_output, "a folder of evaluate's output (its metrics.json)")


def write_evaluation(out: Path, results: dict, *, model: str, data, tta: bool) -> None:
    """``confusion_<split>.png`` per split and ``metrics.json`` (the model, data, options and each split's
    metrics) in ``out``, a folder :func:`check_output` accepted."""
    tag = " (TTA)" if tta else ""
    report = {
        "featuremaps": __version__,
        "model": model,
        "data": str(data),
        "tta": bool(tta),
        "classes": list(EMOTIONS),
    }
    for s, m in results.items():
        title = f"{s}{tag}: accuracy {m['accuracy']:.2%}"
        save_png(out / f"confusion_{s}.png", render_confusion(m["confusion"], list(EMOTIONS), title))
        report[s] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in m.items()}
    save_json(out / "metrics.json", report)
