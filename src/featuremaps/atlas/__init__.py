"""``featuremaps atlas``: which channels respond to which class, over a whole labelled dataset.

For every chosen conv layer and channel it keeps the mean activation per class (the spatial mean of the
channel's map, averaged over the images of the class) and the 9 images that activate the channel most
(dataset examples, as OpenAI Microscope and the deep visualization toolbox show them), drawn cropped to the
receptive field around the channel's maximum on each, as ``patterns`` draws its exemplars.

Data are streamed in batches through one compiled intermediate model whose outputs are the spatial means of
the conv layers (never the maps themselves), and folded into running per-class sums and fixed-size top-k
tables: memory does not grow with the dataset. Those statistics (:class:`AtlasStats`) are a mergeable
reduction, so the same atlas can be computed in parts and merged: ``featuremaps.atlas.ray`` does that on Ray
Data, with :class:`BatchReducer` (the per-worker half) in every actor. Data sources include manifests (CSV or
Parquet of image paths/URIs and labels); unreadable images are counted, named and skipped.

Class selectivity index of a channel (Morcos et al. 2018): with ``mu_max`` its largest class mean and
``mu_rest`` the mean of its other class means, ``SI = (mu_max - mu_rest) / (mu_max + mu_rest)``: 0 when it
responds to all classes alike, 1 when it responds to one class only (defined for non-negative, post-ReLU
activations; 0 where the denominator is not positive). A PyTorch or ONNX conv layer's maps are its raw output,
before the BatchNorm and ReLU that follow, so class means can be negative: the index is then taken over the
class means clipped at 0, which keeps it in [0, 1] (unclipped, a channel with class means -0.9 and 1.0 would
score 19). Class means themselves are never clipped.

The package, by what each module does: ``sources`` (class folders, FER2013, manifests: :class:`Source`),
``manifests`` (reading a CSV or Parquet manifest of image paths or URIs and labels), ``stats``
(:class:`AtlasStats`, the selectivity index, :class:`BatchReducer`, :func:`compute_atlas`, :class:`AtlasResult`,
which draws its own class x channel heatmaps with :mod:`featuremaps.charts`), ``figures`` (the top-image pictures),
``crops`` (after the reduction, one more forward pass over the drawn top images to cut each to the receptive field
around its channel's maximum: :func:`add_crops`), ``writing`` (``atlas.json``, ``atlas.npz``, ``index.html``) and
``ray`` (the same reduction on Ray Data; imported only by ``--engine ray``, never by this package).
"""

from featuremaps.atlas.crops import TopCrops, locate
from featuremaps.atlas.figures import duplicate_note, preferred_class, render_top_images
from featuremaps.atlas.sources import Source, open_source
from featuremaps.atlas.stats import (
    MAX_BAD_NAMES,
    SHOW_CHANNELS,
    SI_FLOOR,
    TOP_K,
    AtlasResult,
    AtlasStats,
    BatchReducer,
    add_crops,
    atlas_input_shape,
    compute_atlas,
    finish,
    most_selective,
    pixel_digest,
    selectivity,
)
from featuremaps.atlas.writing import LIST_CHANNELS, summary, write_atlas

__all__ = [
    "LIST_CHANNELS",
    "MAX_BAD_NAMES",
    "SHOW_CHANNELS",
    "SI_FLOOR",
    "TOP_K",
    "AtlasResult",
    "AtlasStats",
    "BatchReducer",
    "Source",
    "TopCrops",
    "add_crops",
    "atlas_input_shape",
    "compute_atlas",
    "duplicate_note",
    "finish",
    "locate",
    "most_selective",
    "open_source",
    "pixel_digest",
    "preferred_class",
    "render_top_images",
    "selectivity",
    "summary",
    "write_atlas",
]
