"""``featuremaps atlas --engine ray``: the same atlas, computed by a pool of Ray Data actors.

The data set becomes a Ray dataset of small rows (image id, label, and the image's path/URI, or its pixels
when the source is already in memory, like the FER2013 archive), cut into blocks of whole batches. Ray Data's
``map_batches`` hands each block to a callable class, :class:`AtlasActor`, that loads the model once per actor
and folds the block into one :class:`~featuremaps.atlas.AtlasStats`, which it emits as the block's only output
row. The driver merges these partials (the same :meth:`~featuremaps.atlas.AtlasStats.merge` the local atlas'
statistics obey) as they stream in, and shows the progress. No per-image activation vector leaves an actor:
per block, what crosses the network is the block's rows in and one partial out (``8 n_classes + 12 k`` bytes
per channel; 0.7 MB for the emotion VGG-16's 4,224 channels), whatever the block's size. The top images are
re-read by id on the driver only for the final sheets (and forwarded once more there, to crop them to the
receptive field around each channel's maximum: at most ``layers x 6 x 9`` images).

Blocks are whole multiples of the batch size and each actor cuts them into batches from their start, so every
image is forwarded in the same batch as in the local run: activations, top-k ids and class means match it.

Ray is an optional dependency (``pip install 'featuremaps[ray]'``): only this module imports it, and only the
``--engine ray`` command imports this module.
"""

from __future__ import annotations

import logging
import math
import pickle
import socket
import warnings
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import ray
import ray.data
import ray.exceptions
from ray.data.extensions import ArrowTensorArray

from featuremaps.atlas.manifests import read_image
from featuremaps.atlas.sources import Source
from featuremaps.atlas.stats import AtlasResult, AtlasStats, BatchReducer, add_crops, atlas_input_shape, finish
from featuremaps.errors import UserError
from featuremaps.frameworks import adapter, load_model_state, model_state

BLOCK_BATCHES = 16  # at most this many batches per block (one partial per block)
BLOCKS_PER_ACTOR = 4  # at least this many blocks per actor when the data allow it (balance, progress)
CONNECT_TIMEOUT_S = 5.0


class AtlasActor:
    """Ray Data callable class: the model loads once per actor; each call folds one block into one partial.

    ``load_model()`` builds the model (architecture, preprocessing, class names); its weights are then set to
    the driver's (``weights``: [ObjectRef of ``frameworks.model_state``]), so every actor computes exactly the driver's
    model, even one with random weights.

    Input batch (one whole block): ``id`` and ``label`` (B,) int64, and ``path`` (B,) strings or ``pixels``
    (B, H, W[, 3]) uint8. Output: one row, ``partial`` (the pickled AtlasStats) and ``rows`` (B).
    """

    def __init__(
        self,
        load_model,
        weights: list,
        shape: tuple,
        layers,
        n_classes: int,
        batch_size: int,
        gpu=False,
        max_pixels: int | None = None,
    ):
        lm = load_model()
        load_model_state(lm.model, ray.get(weights[0]))  # the driver's weights: random ones (--weights none) too
        if gpu:  # TensorFlow takes a visible GPU by itself (the Keras adapter's to_gpu does nothing)
            adapter(lm.model).to_gpu()
        self.reducer = BatchReducer(lm, shape, layers, n_classes)
        self.batch_size = batch_size
        self.max_pixels = max_pixels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, labels = np.asarray(batch["id"], np.int64), np.asarray(batch["label"], np.int64)
        if "pixels" in batch:
            pixels = batch["pixels"]

            def read(p):
                return np.asarray(pixels[p], np.uint8)
        else:
            paths = batch["path"]

            def read(p):
                return read_image(str(paths[p]), self.max_pixels)

        stats = self.reducer.new_stats()
        for b0 in range(0, ids.size, self.batch_size):
            sl = slice(b0, b0 + self.batch_size)
            self.reducer.reduce(stats, ids[sl], labels[sl], lambda p, b0=b0: read(b0 + p))
        return {
            "partial": np.array([pickle.dumps(stats, protocol=5)], dtype=object),
            "rows": np.array([ids.size], np.int64),
        }


def check_address(address: str, timeout_s: float) -> None:
    """Fail in seconds, not after Ray's own minute of retries, when nothing listens at ``address``."""
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port or 10001
    except ValueError:
        host, port = None, None
    if not host:
        raise UserError(f"--address {address} is not auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError | socket.timeout) else (e.strerror or str(e))
        raise UserError(
            f"cannot reach the Ray cluster at {address} ({why} after {timeout_s:.0f} s); "
            "check --address, or start one with `ray start --head`"
        ) from None


def connect(address: str | None = None, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Join the cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``), or start a local Ray
    with all the machine's cores when None; an already initialised Ray is used as it is. True if this call
    connected (the caller then shuts it down)."""
    if ray.is_initialized():
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        ray.init(**quiet)
        return True
    if address != "auto":
        check_address(address, timeout_s)
    if address.startswith("ray://"):
        quiet.pop("include_dashboard")
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"cannot connect to the Ray cluster at {address} ({first[:160]}); "
            "check --address, or start one with `ray start --head`"
        ) from None
    return True


def actor_options(gpus_per_actor: float, local: bool) -> dict:
    """Ray options of the atlas actors. On a local Ray (``local``: started for this command) they are not
    restarted (``max_restarts=0``): Ray Data keeps each actor's constructor in the object store, and with
    restarts on (its default) Ray logs an error-level line about that on every run; a local actor that dies
    (out of memory) fails the command with Ray's message. On a cluster Ray's restarts stay, for lost nodes."""
    options = {"num_gpus": gpus_per_actor} if gpus_per_actor > 0 else {}
    if local:
        options["max_restarts"] = 0
    return options


def _user_error(e: BaseException) -> str | None:
    """The message of a UserError that an actor raised, wrapped in Ray's exceptions; None if there is none."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(cause, UserError) and not isinstance(cause, ray.exceptions.RayError):
            return str(cause)
        if type(e) is UserError:
            return str(e)
        text = str(e)  # an actor that died in __init__ keeps only the text of its traceback
        marker = f"{UserError.__module__}.{UserError.__name__}: "
        if marker in text:
            return text.split(marker, 1)[1].splitlines()[0].strip()
        e = cause if isinstance(cause, BaseException) else e.__cause__
    return None


def default_actors(gpus_per_actor: float = 0.0) -> int:
    """One actor per CPU of the cluster, or as many as its GPUs hold at ``gpus_per_actor`` each."""
    res = ray.cluster_resources()
    if gpus_per_actor > 0:
        n = int(res.get("GPU", 0) // gpus_per_actor)
        if n < 1:
            raise UserError(
                f"--gpus-per-actor {gpus_per_actor:g}: the Ray cluster has {res.get('GPU', 0):g} GPUs; "
                "lower it or leave it out to run on CPUs"
            )
        return n
    return max(1, int(res.get("CPU", 1)))


def block_rows(n: int, batch_size: int, actors: int, n_classes: int) -> int:
    """Rows per block: a whole number of batches; BLOCKS_PER_ACTOR blocks per actor when the data allow it,
    else at most max(BLOCK_BATCHES batches, 8 x n_classes images): a partial carries 8 x n_classes bytes of
    sums per channel, so with many classes (ImageNet: 1000) blocks grow to keep it well under the 4 bytes per
    channel and image that the activations it summarises would take."""
    batches = math.ceil(n / batch_size)
    most = max(BLOCK_BATCHES, math.ceil(8 * n_classes / batch_size))
    return min(most, max(1, batches // (BLOCKS_PER_ACTOR * actors))) * batch_size


def to_dataset(source: Source, index: np.ndarray, rows: int) -> ray.data.Dataset:
    """Rows (id, label, path | pixels) of the images ``index``, in blocks of ``rows`` rows."""
    tables = []
    for b0 in range(0, index.size, rows):
        ids = index[b0 : b0 + rows]
        cols = {"id": pa.array(ids, pa.int64()), "label": pa.array(source.labels[ids], pa.int64())}
        if source.arrays is not None:
            cols["pixels"] = ArrowTensorArray.from_numpy(np.ascontiguousarray(source.arrays[ids]))
        else:
            cols["path"] = pa.array([str(source.paths[int(i)]) for i in ids], pa.string())
        tables.append(pa.table(cols))
    return ray.data.from_arrow(tables)


def compute_atlas_ray(
    load_model,
    source: Source,
    *,
    lm=None,
    layers="all",
    batch_size: int = 64,
    limit: int | None = None,
    actors: int | None = None,
    gpus_per_actor: float = 0.0,
    address: str | None = None,
    input_shape: tuple | None = None,
    progress=None,
) -> AtlasResult:
    """:func:`featuremaps.atlas.compute_atlas` on Ray Data: the same result, from a pool of actors.

    ``load_model``: a picklable zero-argument callable giving the LoadedModel (each actor calls it once, e.g.
    ``functools.partial(models.load, "emotion")``; on a cluster a model file must exist on every node), whose
    weights are then replaced by the driver's, shipped once through the object store;
    ``lm``: the driver's copy (loaded with ``load_model`` if None). ``address``: None starts a local Ray for
    the call (all cores) and stops it after; ``auto`` or ``ray://HOST:PORT`` joins a cluster; an already
    initialised Ray is used as it is. ``actors``: pool size (default one per CPU, or per ``gpus_per_actor``).
    ``input_shape``: as in :func:`featuremaps.atlas.compute_atlas`.

    Example:
        >>> from functools import partial
        >>> res = compute_atlas_ray(partial(models.load, "emotion"), source, actors=8, address="auto")
    """
    lm = lm if lm is not None else load_model()
    index = source.subset(limit)
    if index.size == 0:
        raise UserError(f"the dataset {source.description} has no images; check --data and --split")
    shape = atlas_input_shape(lm, source, index, input_shape)
    driver = BatchReducer(lm, shape, layers, len(source.classes))  # layer list and empty statistics
    stats: AtlasStats = driver.new_stats()
    started = connect(address)
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # the driver draws its own bar
    try:
        n_actors = actors or default_actors(gpus_per_actor)
        weights = [ray.put(model_state(lm.model))]  # once in the object store, fetched once per actor
        rows = block_rows(index.size, batch_size, n_actors, len(source.classes))
        ds = to_dataset(source, index, rows)
        extra = actor_options(gpus_per_actor, local=started and address is None)
        with warnings.catch_warnings():  # Ray 2.60 calls max_restarts a deprecated extra, yet it has no other way
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            partials = ds.map_batches(
                AtlasActor,
                # one whole block per call -> one partial per block; Ray wants a number when actors take GPUs,
                # and the block size is that number
                batch_size=rows if gpus_per_actor > 0 else None,
                batch_format="numpy",
                fn_constructor_args=(
                    load_model,
                    weights,
                    shape,
                    layers,
                    len(source.classes),
                    batch_size,
                    gpus_per_actor > 0,
                    source.max_pixels,
                ),
                compute=ray.data.ActorPoolStrategy(size=n_actors),
                num_cpus=1,
                **extra,
            )
        done = 0
        for row in partials.iter_rows():
            stats.merge(pickle.loads(row["partial"]))
            done += int(row["rows"])
            if progress:
                progress(done, index.size)
    except Exception as e:  # a user mistake met on an actor (a model file missing on a node): one line
        cause = _user_error(e)
        if cause is None:
            raise
        raise UserError(f"on a Ray actor: {cause}") from None
    finally:
        ctx.enable_progress_bars = bars
        if started:
            ray.shutdown()
    # the crops of the drawn top images: one more forward pass over them, on the driver (which holds the source)
    return add_crops(finish(stats, driver.convs, source, shape, driver.centre), driver, source, batch_size)
