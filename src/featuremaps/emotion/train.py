"""``featuremaps train``: the FER2013 VGG-16 recipe, with checkpoints that survive being killed.

Recipe after Khaireddin & Chen 2021 ("Facial Emotion Recognition: State of the Art Performance on FER2013"):
SGD with Nesterov momentum, lr 0.01, batch 64, strong augmentation; here with a cosine learning-rate decay
over ``--epochs`` (deterministic per epoch, so ``--resume`` continues the same schedule; a resumed run is not
bit-identical to an uninterrupted one: the augmentation's random state is not restored). Model selection on
PublicTest only; PrivateTest is left for ``featuremaps evaluate``.

Files in ``OUT``: ``last.keras`` (model + optimizer, every epoch), ``best.keras`` (best PublicTest accuracy),
``state.json``, ``log.csv``, ``curves.png``. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from featuremaps.emotion import data as fer
from featuremaps.emotion import model as emotion
from featuremaps.emotion.augment import augment_batch
from featuremaps.emotion.model import EMOTIONS
from featuremaps.errors import UserError
from featuremaps.io import atomic_path, check_writable, ensure_dir, save_json, save_text

log = logging.getLogger(__name__)


def lr_at(epoch: int, epochs: int, base_lr: float, warmup: int = 1) -> float:
    """Linear warm-up for ``warmup`` epochs, then cosine decay to 1% of ``base_lr`` at the last epoch."""
    if epoch < warmup:
        return base_lr * (epoch + 1) / (warmup + 1)
    t = (epoch - warmup) / max(1, epochs - warmup - 1)
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _dataset_class():

    class FaceBatches(keras.utils.PyDataset):
        """Shuffled, augmented batches; epoch ``e`` always uses seed ``seed + e`` (resumable)."""

        def __init__(self, x, y, batch_size, seed, epoch=0, augment=True):
            super().__init__()
            self.x, self.y, self.batch_size, self.seed, self.epoch = x, y, batch_size, seed, epoch
            self.augment = augment
            self._order()

        def _order(self):
            self.rng = np.random.default_rng(self.seed + self.epoch)
            self.perm = self.rng.permutation(len(self.y))

        def __len__(self):
            return math.ceil(len(self.y) / self.batch_size)

        def __getitem__(self, i):
            idx = self.perm[i * self.batch_size : (i + 1) * self.batch_size]
            xb = self.x[idx].astype(np.float32) / 255.0
            if self.augment:
                xb = augment_batch(xb, np.random.default_rng((self.seed, self.epoch, i)))
            return xb[..., None], self.y[idx]

        def on_epoch_end(self):
            self.epoch += 1
            self._order()

    return FaceBatches


def _checkpoint_callback(out: Path, epochs: int, state: dict):

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            val = float(logs.get("val_accuracy", float("nan")))
            state["epoch"] = epoch + 1
            state["epochs"] = epochs
            state.setdefault("history", []).append({k: float(v) for k, v in logs.items()} | {"epoch": epoch + 1})
            if val > state.get("best_val_accuracy", -1.0):
                state["best_val_accuracy"] = val
                state["best_epoch"] = epoch + 1
                with atomic_path(out / "best.keras") as tmp:
                    os.replace(tmp, tmp + ".keras")
                    self.model.save(tmp + ".keras")
                    os.replace(tmp + ".keras", tmp)
            with atomic_path(out / "last.keras") as tmp:
                os.replace(tmp, tmp + ".keras")
                self.model.save(tmp + ".keras")
                os.replace(tmp + ".keras", tmp)
            save_json(out / "state.json", state)  # written last: it points at complete files only
            _plot_curves(state["history"], out / "curves.png")

    return Checkpoint()


def trim_log(path: Path, epochs_done: int) -> None:
    """Drop ``log.csv`` rows of epochs after the last checkpoint (a run killed between the CSV row and the
    checkpoint wrote its row already): the resumed run writes them again, once."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    if not lines:
        return
    keep = [lines[0]]
    for ln in lines[1:]:
        head = ln.split(",", 1)[0].strip()
        if head.isdigit() and int(head) >= epochs_done:  # CSVLogger's epoch column is 0-based
            continue
        keep.append(ln)
    if len(keep) != len(lines):
        save_text(path, "".join(keep))


def _plot_curves(history: list[dict], path: Path) -> None:
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:  # plotting is optional
        return
    ep = [h["epoch"] for h in history]
    fig = Figure(figsize=(9, 3.5), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    for key, label in (("loss", "train (augmented)"), ("val_loss", "PublicTest")):
        ax1.plot(ep, [h.get(key, np.nan) for h in history], marker="o", label=label)
    for key, label in (("accuracy", "train (augmented)"), ("val_accuracy", "PublicTest")):
        ax2.plot(ep, [h.get(key, np.nan) for h in history], marker="o", label=label)
    ax1.set(title="loss", xlabel="epoch")
    ax2.set(title="accuracy", xlabel="epoch")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def _initial_model(init: str | None, faces: np.ndarray, width: float, calibration: int = 4096):
    """The BN model to train and a note on where its weights came from (None: random, He init)."""

    if not init:
        return emotion.build_emotion_vgg16(batch_norm=True, width=width), None
    if init == "bundled":
        folded, card = emotion.load_emotion_model(), emotion.model_card() or {}
        note = {
            "from": "bundled",
            "epochs_before": card.get("epochs_trained"),
            "PrivateTest_before": (card.get("accuracy") or {}).get("PrivateTest"),
        }
    else:
        path = Path(init)
        if not path.is_file():
            raise UserError(f"--init {init}: no such file; pass 'bundled' or an emotion .npz/.keras weights file")
        try:
            if path.suffix == ".npz":
                folded = emotion.build_emotion_vgg16(width=width)
                emotion.load_weights_npz(folded, path)
            else:
                folded = keras.models.load_model(path, compile=False)
        except Exception as e:
            raise UserError(
                f"--init {init} is not an emotion model's weights ({e}); pass a file saved from "
                "featuremaps (shipped .npz or a fold of best.keras)"
            ) from None
        note = {"from": str(path)}
    if any(layer.name.endswith("_bn1") for layer in folded.layers):
        raise UserError(f"--init {init} is a training checkpoint (with BN); continue it with --resume instead")
    rng = np.random.default_rng(0)
    sample = faces[rng.permutation(len(faces))[:calibration]]
    try:
        return emotion.unfold_batch_norm(folded, sample, width=width), note
    except ValueError as e:  # another architecture: a missing layer or a weight of another shape
        raise UserError(
            f"--init {init} does not fit the emotion VGG-16 at width {width} ({e}); pass weights saved from it"
        ) from None


def train(
    data_path: str,
    out: str | Path,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 0.01,
    resume: bool = False,
    seed: int = 0,
    skip_bad: bool = False,
    precision: str = "float32",
    limit: int | None = None,
    verbose: int = 1,
    width: float = 1.0,
    init: str | None = None,
    status=None,
) -> dict:
    """Train (or resume) the emotion model; returns the state dict (also in ``OUT/state.json``).

    ``init`` starts a new run from trained weights instead of random ones: ``"bundled"`` (the shipped
    model) or an inference-form ``.npz``/``.keras`` file, unfolded back to the BN form (:func:`_initial_model`).
    """

    out = check_writable(out)  # created once data and weights are loaded: bad input leaves no empty folder
    state_path = out / "state.json"
    state: dict = {}
    if resume and init:
        raise UserError("--init starts a new run and --resume continues one; drop one of them")
    if resume:
        if not state_path.is_file() or not (out / "last.keras").is_file():
            raise UserError(f"nothing to resume in {out} (no state.json/last.keras); drop --resume to start")
        try:
            state = json.loads(state_path.read_text())
            if not isinstance(state, dict) or "recipe" not in state:
                raise ValueError("no recipe")
        except (ValueError, OSError) as e:
            raise UserError(
                f"{state_path} is damaged ({type(e).__name__}); the run cannot be resumed: start a new one with "
                "another --out (or --init FILE from its best.keras)"
            ) from None
        if state.get("epoch", 0) >= epochs:
            raise UserError(f"{out} already has {state['epoch']} epochs; pass a larger --epochs to go on")
    elif state_path.exists():
        raise UserError(f"{out} already holds a training run; pass --resume to continue it or another --out")

    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    if status:
        status(f"reading FER2013 from {data_path}")
    t0 = time.monotonic()
    data = fer.load(data_path, skip_bad=skip_bad, limit=limit)
    if status:
        status(f"read {sum(len(v) for v in data.splits.values())} faces in {time.monotonic() - t0:.0f} s")
    if data.skipped:
        log.warning("skipped %d bad entries, e.g. %s", len(data.skipped), data.skipped[0])
    tr, va = data["Training"], data["PublicTest"]
    keras.utils.set_random_seed(seed)

    if resume:
        try:
            model = keras.models.load_model(out / "last.keras")
        except Exception as e:  # a cut or foreign file: Keras raises many types
            raise UserError(
                f"{out / 'last.keras'} cannot be loaded ({type(e).__name__}); the run cannot be resumed: "
                "start a new one with another --out (or --init FILE from its best.keras)"
            ) from None
    else:
        model, init_note = _initial_model(init, tr.x, width)
        opt = keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        state = {
            "recipe": {
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "optimizer": "SGD nesterov momentum 0.9",
                "schedule": "1 warm-up epoch at half lr, then cosine to 1% of lr",
                "precision": precision,
                "backend": keras.backend.backend(),
                "width": width,
                "augmentation": "flip, shift 10%, rotate 10 deg, zoom 10%, random erasing p=0.5",
            },
            "classes": list(EMOTIONS),
            "train_faces": len(tr),
            "val_faces": len(va),
        }
        if init_note:
            state["recipe"]["init"] = init_note
    ensure_dir(out)
    start = int(state.get("epoch", 0))
    if resume:
        trim_log(out / "log.csv", start)
    state["recipe"]["epochs"] = epochs
    batches = _dataset_class()(tr.x, tr.y, batch_size, seed, epoch=start)
    x_val = va.x[..., None].astype(np.float32) / 255.0
    callbacks = [
        keras.callbacks.LearningRateScheduler(lambda e, _: lr_at(e, epochs, state["recipe"]["lr"])),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=True),
        _checkpoint_callback(out, epochs, state),
    ]
    model.fit(
        batches,
        validation_data=(x_val, va.y),
        batch_size=batch_size,
        epochs=epochs,
        initial_epoch=start,
        callbacks=callbacks,
        verbose=verbose,
    )
    return state
