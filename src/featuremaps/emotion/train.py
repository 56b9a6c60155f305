"""``featuremaps train``: the FER2013 emotion recipe (VGG-16, ResNet-18 or MobileNetV2), with checkpoints
that survive being killed.

Recipe after Khaireddin & Chen 2021 ("Facial Emotion Recognition: State of the Art Performance on FER2013"):
SGD with Nesterov momentum, lr 0.01, batch 64, weight decay 5e-4, strong augmentation; here with a cosine
learning-rate decay over ``--epochs``. Every random draw is a function of (seed, epoch): the batch order and
augmentation of epoch ``e`` use seed ``seed + e``, and the dropout layers' random state is reset from
(seed, epoch) when the epoch begins, so a run resumed from its last checkpoint follows the uninterrupted
run's trajectory exactly (the backend's kernels permitting: on CPU, TensorFlow's and torch's are).
``crop=44``: one random 44x44 crop + flip per face and epoch instead of the affine/erasing augmentation (the
recipe of the published VGG results), the network taking 44x44 input; validation on the centre crop.
Optional label smoothing (Szegedy et al. 2016). Model selection on PublicTest only; PrivateTest is left for
``featuremaps evaluate``.

Files in ``OUT``: ``run.json`` (the run's mark, first), ``last.keras`` (model + optimizer, every epoch),
``best.keras`` (best PublicTest accuracy),
``state.json``, ``log.csv``, ``curves.png`` (drawn by :func:`featuremaps.charts.render_curves`, no
matplotlib), and ``maps/<emotion>.png``: the epoch x layer sheets of one PublicTest face per emotion
(:class:`featuremaps.callbacks.FeatureMapsCallback`). Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from featuremaps import __version__
from featuremaps.callbacks import HISTORY_FILE, FeatureMapsCallback, load_history
from featuremaps.charts import render_curves
from featuremaps.emotion import data as fer
from featuremaps.emotion import model as emotion
from featuremaps.emotion.augment import augment_batch, centre_crop, random_crop_flip
from featuremaps.emotion.model import ARCHS, EMOTIONS
from featuremaps.errors import UserError
from featuremaps.frameworks.keras.loaders import keras_file_problem
from featuremaps.io import (
    TEMP_PATTERN,
    atomic_path,
    check_output_folder,
    check_writable,
    ensure_dir,
    save_json,
    save_png,
    save_text,
)

log = logging.getLogger(__name__)


def lr_at(epoch: int, epochs: int, base_lr: float, warmup: int = 1, floor: float | None = None) -> float:
    """The learning rate of epoch ``epoch`` (0-based) of ``epochs``: a linear warm-up over ``warmup`` epochs
    (``base_lr * (e + 1) / (warmup + 1)``), then a cosine decay.

    ``floor`` a fraction (the recipe since wave 3: 0): the cosine is taken at each epoch's middle,
    ``t = (e - warmup + 1/2) / (epochs - warmup)``, and falls towards ``floor * base_lr``, reached at the
    end of the last epoch. ``floor`` None (runs started before it was recorded): the old schedule, the
    cosine reaching 1% of ``base_lr`` at the start of the last epoch.

    Example::

        [round(lr_at(e, 6, 0.1, warmup=2, floor=0.0), 4) for e in range(6)]  # 0.0333 0.0667 0.0962 0.0691 ...
    """
    if epoch < warmup:
        return base_lr * (epoch + 1) / (warmup + 1)
    if floor is None:
        t = (epoch - warmup) / max(1, epochs - warmup - 1)
        return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))
    t = (epoch - warmup + 0.5) / max(1, epochs - warmup)
    return base_lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _dataset_class():

    class FaceBatches(keras.utils.PyDataset):
        """Shuffled, augmented batches; epoch ``e`` always uses seed ``seed + e`` (resumable).

        ``crop``: random ``crop`` x ``crop`` crops + flip instead of the affine augmentation; ``classes``:
        one-hot labels with that many classes (for label smoothing) instead of class indices.
        """

        def __init__(self, x, y, batch_size, seed, epoch=0, augment=True, crop=None, classes=None):
            super().__init__()
            self.x, self.y, self.batch_size, self.seed, self.epoch = x, y, batch_size, seed, epoch
            self.augment, self.crop, self.classes = augment, crop, classes
            self._order()

        def _order(self):
            self.rng = np.random.default_rng(self.seed + self.epoch)
            self.perm = self.rng.permutation(len(self.y))

        def __len__(self):
            return math.ceil(len(self.y) / self.batch_size)

        def __getitem__(self, i):
            idx = self.perm[i * self.batch_size : (i + 1) * self.batch_size]
            xb = self.x[idx].astype(np.float32) / 255.0
            rng = np.random.default_rng((self.seed, self.epoch, i))
            if self.crop:
                xb = random_crop_flip(xb, self.crop, rng) if self.augment else centre_crop(xb, self.crop)
            elif self.augment:
                xb = augment_batch(xb, rng)
            yb = self.y[idx]
            if self.classes:
                yb = np.eye(self.classes, dtype=np.float32)[yb]
            return xb[..., None], yb

        def on_epoch_end(self):
            self.epoch += 1
            self._order()

    return FaceBatches


def _reseed_callback(seed: int):
    """Make epoch ``e``'s dropout masks a function of (seed, e), whether the run went through or was resumed at
    ``e``: reset the model's random-state variables (its seed generators: ``model.variables`` that are not
    weights, hence not in checkpoints; TensorFlow and JAX draw from them) and the backend's global generator
    (torch's dropout of an unseeded layer draws from it) when each epoch begins."""

    class Reseed(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            rng = np.random.default_rng((seed, epoch))
            keras.utils.set_random_seed(int(rng.integers(0, 2**31 - 1)))
            weights = {id(v) for v in self.model.weights}
            for v in [v for v in self.model.variables if id(v) not in weights]:
                value = np.zeros(tuple(v.shape), dtype=v.dtype)
                value.reshape(-1)[0] = rng.integers(0, 2**31 - 1)  # a seed generator's state is (seed, counter)
                v.assign(value)

    return Reseed()


def _swap_ema_callback(in_model: bool):
    """Keras' ``SwapEMAWeights(swap_on_epoch=True)``: the averaged weights in the model from each epoch's
    validation to the next epoch's start, the raw ones in the optimizer's average slots meanwhile. Two changes:
    ``in_model`` says where a resumed checkpoint has them (Keras has no setter for it), and the raw weights
    are never overwritten by the average after the last epoch (Keras' "finalize"): a run extended later with
    a larger ``--epochs`` goes on from its raw weights, as the uninterrupted longer run does."""

    class SwapEMA(keras.callbacks.SwapEMAWeights):
        def on_epoch_end(self, epoch, logs=None):
            if not self._ema_weights_in_model:
                self._swap_variables()
                self._ema_weights_in_model = True

    swap = SwapEMA(swap_on_epoch=True)
    swap._ema_weights_in_model = in_model
    return swap


#: training faces whose statistics the averaged weights' BN layers get before each validation (``--ema``)
EMA_BN_FACES = 4096


def _recalibrate_callback(faces_u8: np.ndarray, side: int, seed: int, n: int):
    """Before each validation, once the averaged weights are in the model (``SwapEMAWeights`` runs first), set
    the BN statistics to theirs (:func:`featuremaps.emotion.model.recalibrate_batch_norm`) on ``n`` training
    faces, always the same ones (centre crops). The statistics training kept belong to the raw weights: in
    wave 3's ResNet run (``--ema 0.998``, lr 0.1) the averaged weights validated with them at 23-44% on
    PublicTest over epochs 3-13 while training accuracy rose from 46% to 62%. The checkpoint then holds the
    averaged weights with their own statistics; training on renews the statistics from its batches within a
    few dozen steps."""
    pick = np.random.default_rng((seed, 7)).permutation(len(faces_u8))[:n]
    x = faces_u8[pick].astype(np.float32) / 255.0
    x = centre_crop(x, side)[..., None]

    class Recalibrate(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            emotion.recalibrate_batch_norm(self.model, x)

    return Recalibrate()


def _checkpoint_callback(out: Path, epochs: int, state: dict):

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            val = float(logs.get("val_accuracy", float("nan")))
            state["epoch"] = epoch + 1
            state["epochs"] = epochs
            took = {"seconds": round(time.monotonic() - self.t0, 1)} if hasattr(self, "t0") else {}
            # seconds: the epoch's wall time (training, validation, the maps), before this checkpoint's writes
            entry = {k: float(v) for k, v in logs.items()} | {"epoch": epoch + 1} | took
            state.setdefault("history", []).append(entry)
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


#: The mark a new run writes into its folder before anything else: ``{"featuremaps": VERSION}``.
RUN_MARK = "run.json"
#: What a training run writes into its folder (and nothing else).
#: The lock a run holds on its folder while it lives (``flock``): a second run into the folder is refused.
RUN_LOCK = ".featuremaps.lock"
RUN_FILES = (RUN_MARK, "best.keras", "last.keras", "log.csv", "state.json", "curves.png", "maps", RUN_LOCK)


def lock_run(folder: Path) -> int:
    """Hold the lock of the run folder ``folder`` (an exclusive ``flock`` on its :data:`RUN_LOCK`); returns
    the descriptor to pass to :func:`unlock_run`. Another run holding it: a one-line UserError."""
    path = folder / RUN_LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot lock the run folder {folder}: {e.strerror or e}; choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise UserError(
                f"{folder} is being written by another featuremaps train run"
                f"{f' (process {holder})' if holder.isdigit() else ''}; wait for it to end or choose another --out"
            ) from None
        try:  # the lock file the last holder removed on its way out is not the one to hold: open the new one
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.ftruncate(fd, 0)
                os.pwrite(fd, str(os.getpid()).encode(), 0)
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def unlock_run(folder: Path, fd: int | None) -> None:
    """Release :func:`lock_run`'s lock (its file removed first, while still held)."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(folder / RUN_LOCK)
    os.close(fd)


def _run_leftovers(folder: Path) -> bool:
    """True if ``folder`` is what a run killed before its first checkpoint left: its mark (``run.json`` with a
    ``"featuremaps"`` key) and nothing but the files a run writes. A folder of a user's own ``log.csv`` is not."""
    try:
        if all(e.name == RUN_LOCK for e in folder.iterdir()):
            return True  # empty but for a run's lock
        mark = json.loads((folder / RUN_MARK).read_text(encoding="utf-8"))
        return (
            isinstance(mark, dict)
            and "featuremaps" in mark
            and all(e.name in RUN_FILES or TEMP_PATTERN.match(e.name) for e in folder.iterdir())
        )
    except (OSError, ValueError):
        return False


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
    save_png(path, render_curves(history))


def _initial_model(
    init: str | None,
    faces: np.ndarray,
    width: float,
    calibration: int = 4096,
    arch: str = "vgg16",
    side: int = 48,
    weight_decay: float = 0.0,
):
    """The BN model to train and a note on where its weights came from (None: random, He init)."""

    shape = (side, side, 1)
    if not init:
        model = emotion.build_emotion_model(
            arch, input_shape=shape, batch_norm=True, width=width, weight_decay=weight_decay
        )
        return model, None
    if arch != "vgg16":
        raise UserError(f"--init works with --arch vgg16 only (no trained {arch} is shipped); drop --init")
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
        problem = keras_file_problem(path)
        if problem:  # Keras would say "File not found" for this file that exists
            raise UserError(f"--init {init} {problem}")
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
        return emotion.unfold_batch_norm(
            folded, sample, width=width, input_shape=shape, weight_decay=weight_decay
        ), note
    except ValueError as e:  # another architecture: a missing layer or a weight of another shape
        raise UserError(
            f"--init {init} does not fit the emotion VGG-16 at width {width} ({e}); pass weights saved from it"
        ) from None


def _one_face_per_emotion(split) -> tuple[np.ndarray, list[str]]:
    """The first face of each emotion in a split (uint8 (k, 48, 48)) and the emotions' names."""
    idx = [int(np.flatnonzero(split.y == c)[0]) for c in range(len(EMOTIONS)) if (split.y == c).any()]
    return split.x[idx], [EMOTIONS[int(split.y[i])] for i in idx]


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
    arch: str | None = None,
    crop: int | None = None,
    weight_decay: float = 5e-4,
    label_smoothing: float = 0.0,
    maps_every: int = 1,
    warmup: int = 1,
    ema: float = 0.0,
    chosen_by: dict | None = None,
) -> dict:
    """Train (or resume) an emotion model; returns the state dict (also in ``OUT/state.json``).

    ``arch``: ``vgg16`` (default), ``resnet`` or ``mobilenet`` (:func:`featuremaps.emotion.build_emotion_model`);
    on ``resume`` the run's own (another one is refused).
    ``init`` starts a new run from trained weights instead of random ones: ``"bundled"`` (the shipped
    model) or an inference-form ``.npz``/``.keras`` file, unfolded back to the BN form (:func:`_initial_model`).
    ``crop``: train on random ``crop`` x ``crop`` crops + flips (the model takes that input size).
    ``weight_decay``: torch's SGD weight decay (an L2 penalty ``wd / 2 * |w|^2`` on the conv and dense
    kernels, passing through the momentum; none on BN, biases or depthwise kernels; runs started before
    wave 3 keep Keras' decoupled decay on every weight, as saved in their optimizer); ``label_smoothing``: the
    cross-entropy's targets ``(1 - s) onehot + s / 7``. ``precision="bfloat16"``: mixed precision for this
    run only (the global Keras policy is restored afterwards). ``warmup``: epochs of linear warm-up before
    the cosine decay to zero (:func:`lr_at`). ``ema``: keep an exponential moving average of the weights
    with this momentum (e.g. 0.998; 0: none), validated, selected and checkpointed in place of the raw
    weights (Polyak averaging; Keras' ``use_ema`` + ``SwapEMAWeights``). ``chosen_by``: how the backend and
    precision were picked (the CLI's speed probe, :meth:`featuremaps.emotion.probe.Choice.record`), kept in
    the recipe. ``maps_every``: feature-map sheets of one
    PublicTest face per emotion every that many epochs (0: none). On ``resume`` the recipe stored in
    ``state.json`` wins over these arguments (except ``epochs``).

    Example::

        state = train("fer2013.tar.gz", "runs/resnet", arch="resnet", crop=44, epochs=60)
    """

    out = check_writable(out)  # created once data and weights are loaded: bad input leaves no empty folder
    lock = [lock_run(out) if out.is_dir() else None]  # one run per folder; a new folder is locked once made
    try:
        return _checked_train(
            data_path, out, epochs, batch_size, lr, resume, seed, skip_bad, precision, limit, verbose,
            width, init, status, arch, crop, weight_decay, label_smoothing, maps_every, lock, warmup, ema, chosen_by,
        )  # fmt: skip
    finally:
        unlock_run(out, lock[0])


def _checked_train(
    data_path, out, epochs, batch_size, lr, resume, seed, skip_bad, precision, limit, verbose,
    width, init, status, arch, crop, weight_decay, label_smoothing, maps_every, lock, warmup, ema, chosen_by,
) -> dict:  # fmt: skip
    state_path = out / "state.json"
    state: dict = {}
    if arch is not None and arch not in ARCHS:
        raise UserError(f"unknown architecture '{arch}'; use one of {', '.join(ARCHS)}")
    if crop is not None and not 16 <= crop <= fer.SIDE:
        raise UserError(f"--crop {crop} must be between 16 and {fer.SIDE} (the faces are {fer.SIDE}x{fer.SIDE})")
    if not 0 <= label_smoothing < 1:
        raise UserError(f"--label-smoothing {label_smoothing} must be in [0, 1); 0.1 is usual")
    if weight_decay < 0:
        raise UserError(f"--weight-decay {weight_decay} must be 0 or more; 5e-4 is usual")
    if warmup < 0:
        raise UserError(f"--warmup {warmup} must be 0 or more (epochs of warm-up); 2-3 is usual")
    if precision not in ("float32", "bfloat16"):
        raise UserError(f"precision '{precision}': use float32 or bfloat16 (the CLI's auto runs a speed probe)")
    if not 0 <= ema < 1:
        raise UserError(f"--ema {ema} must be in [0, 1): 0 for none, 0.998 or 0.999 usual")
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
        recipe = state["recipe"]
        trained_on, here = recipe.get("backend"), keras.backend.backend()
        if trained_on and trained_on != here:  # its optimizer state belongs to that backend's variables
            raise UserError(
                f"{out} was trained on Keras' {trained_on} backend and this process runs {here}; resume it on "
                f"{trained_on} (train --resume without --backend picks it; from Python set "
                f"KERAS_BACKEND={trained_on} before importing Keras)"
            )
        trained_arch = recipe.get("arch", "vgg16")
        if arch is not None and arch != trained_arch:
            raise UserError(
                f"{out} is a {trained_arch} run and --arch {arch} was given; --resume continues the run's own "
                f"architecture: drop --arch (or pass --arch {trained_arch}), or train {arch} with another --out"
            )
        arch = trained_arch
        crop, label_smoothing = recipe.get("crop"), float(recipe.get("label_smoothing", 0.0))
        precision = recipe.get("precision", precision)
        seed, batch_size = int(recipe.get("seed", seed)), int(recipe.get("batch_size", batch_size))
    elif state_path.exists():
        raise UserError(f"{out} already holds a training run; pass --resume to continue it or another --out")
    else:  # a new run: into a new or empty folder, or one a run killed before its first checkpoint left
        check_output_folder(out, _run_leftovers, "a featuremaps training run")
    arch = arch or "vgg16"

    before = keras.config.dtype_policy()  # restored in finally: no global side effect outlives the run
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    try:
        return _train(
            data_path, out, state, epochs, batch_size, lr, resume, seed, skip_bad, precision, limit, verbose,
            width, init, arch, crop, weight_decay, label_smoothing, maps_every, status, lock, warmup, ema,
            chosen_by,
        )  # fmt: skip
    finally:
        keras.config.set_dtype_policy(before)


def _train(
    data_path, out, state, epochs, batch_size, lr, resume, seed, skip_bad, precision, limit, verbose,
    width, init, arch, crop, weight_decay, label_smoothing, maps_every, status, lock, warmup, ema, chosen_by,
) -> dict:  # fmt: skip
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
    side = crop or fer.SIDE

    if resume:
        try:
            model = keras.models.load_model(out / "last.keras")
        except Exception as e:  # a cut or foreign file: Keras raises many types
            raise UserError(
                f"{out / 'last.keras'} cannot be loaded ({type(e).__name__}); the run cannot be resumed: "
                "start a new one with another --out (or --init FILE from its best.keras)"
            ) from None
    else:
        model, init_note = _initial_model(init, tr.x, width, arch=arch, side=side, weight_decay=weight_decay)
        opt = keras.optimizers.SGD(
            learning_rate=lr, momentum=0.9, nesterov=True, use_ema=bool(ema), ema_momentum=ema or 0.99
        )
        if label_smoothing:
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        else:
            loss = "sparse_categorical_crossentropy"
        model.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
        state = {
            "recipe": {
                "arch": arch,
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "optimizer": "SGD nesterov momentum 0.9",
                "weight_decay": weight_decay,
                "weight_decay_form": "L2 wd/2*|w|^2 on conv and dense kernels (torch SGD's), none on BN/biases",
                "label_smoothing": label_smoothing,
                "warmup": warmup,
                "lr_floor": 0.0,
                "ema": ema,
                "ema_bn_faces": EMA_BN_FACES if ema else 0,
                "schedule": f"{warmup} linear warm-up epochs, then cosine to 0 (lr_at)",
                "precision": precision,
                "backend": keras.backend.backend(),
                "width": width,
                "crop": crop,
                "input_side": side,
                **({"pools": emotion.pools_of(model)} if arch == "vgg16" else {}),
                "augmentation": (
                    f"one random {crop}x{crop} crop + horizontal flip per face and epoch; centre crop for validation"
                    if crop
                    else "flip, shift 10%, rotate 10 deg, zoom 10%, random erasing p=0.5"
                ),
            },
            "classes": list(EMOTIONS),
            "train_faces": len(tr),
            "val_faces": len(va),
        }
        if init_note:
            state["recipe"]["init"] = init_note
        if chosen_by:
            state["recipe"]["chosen_by"] = chosen_by
    ensure_dir(out)
    if lock[0] is None:  # a folder made now: locked, then looked at again (another run may have begun there)
        lock[0] = lock_run(out)
        if not resume and (out / "state.json").exists():
            raise UserError(f"{out} already holds a training run; pass --resume to continue it or another --out")
        if not resume and any(e.name != RUN_LOCK for e in out.iterdir()) and not _run_leftovers(out):
            raise UserError(f"--out {out} is a folder featuremaps did not make; choose another --out")
    start = int(state.get("epoch", 0))
    if resume:
        trim_log(out / "log.csv", start)
    else:  # a new run: its mark first; the rows of a killed run's log.csv (its own file) must not precede its own
        save_json(out / RUN_MARK, {"featuremaps": __version__})
        (out / "log.csv").unlink(missing_ok=True)
    state["recipe"]["epochs"] = epochs
    classes = len(EMOTIONS) if label_smoothing else None
    batches = _dataset_class()(tr.x, tr.y, batch_size, seed, epoch=start, crop=crop, classes=classes)
    x_val = va.x.astype(np.float32) / 255.0
    x_val = (centre_crop(x_val, crop) if crop else x_val)[..., None]
    y_val = np.eye(len(EMOTIONS), dtype=np.float32)[va.y] if classes else va.y
    recipe = state["recipe"]
    schedule = dict(warmup=int(recipe.get("warmup", 1)), floor=recipe.get("lr_floor"))
    callbacks = [
        _reseed_callback(seed),
        keras.callbacks.LearningRateScheduler(lambda e, _: lr_at(e, epochs, recipe["lr"], **schedule)),
        keras.callbacks.CSVLogger(str(out / "log.csv"), append=True),
    ]
    if recipe.get("ema"):
        # validation, the maps and the checkpoints see the averaged weights: swapped in at each epoch's end
        # (a checkpoint holds them in the model and the raw ones in the optimizer) and out at the next begin
        swap = _swap_ema_callback(in_model=bool(resume))  # a resumed checkpoint has the average in the model
        callbacks.append(swap)
        if recipe.get("ema_bn_faces"):  # after the swap: the averaged weights' own BN statistics
            callbacks.append(_recalibrate_callback(tr.x, side, seed, int(recipe["ema_bn_faces"])))
    if maps_every:
        faces, names = _one_face_per_emotion(va)
        faces = faces.astype(np.float32) / 255.0
        faces = (centre_crop(faces, crop) if crop else faces)[..., None]
        # a resumed run draws on from the maps the run drew so far (its sheets show every epoch, not the last ones)
        before = load_history(out / "maps" / HISTORY_FILE, up_to=start) if resume else []
        callbacks.append(FeatureMapsCallback(faces, every=maps_every, out=out / "maps", names=names, history=before))
    callbacks.append(_checkpoint_callback(out, epochs, state))  # last: state.json points at finished files
    model.fit(
        batches,
        validation_data=(x_val, y_val),
        batch_size=batch_size,
        epochs=epochs,
        initial_epoch=start,
        shuffle=False,  # FaceBatches shuffles with its own per-epoch seed; Keras' shuffle draws from global state
        callbacks=callbacks,
        verbose=verbose,
    )
    return state
