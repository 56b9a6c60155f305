"""The crops of the atlas' top images: the part of each image that its channel's strongest position sees.

The atlas ranks images by a channel's spatial mean and keeps no positions (its streaming pass computes means
only). After the reduction, only the top images of the channels the figures draw (``channels x 9`` per layer,
at most) are read again and forwarded once more, in batches, to find each channel's maximum on each of its
images; the crop is the receptive field of that position (:mod:`featuremaps.receptive`, the same boxes and
cropping as ``patterns``' exemplars and the explorer's hover) on the image as the model was fed. Where the
framework gives no receptive field for a layer the box is the whole image, and the note says why; where the
field of every position covers the whole image (deep layers) the box is the whole image without a forward pass,
so only the images of the layers that need it are forwarded, and only as deep as the deepest of those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featuremaps.errors import UserError
from featuremaps.pipeline import fit_centred
from featuremaps.receptive import MERGE_NOTE, TRANSPOSED_NOTE, adapter_fields, crop_box, peaks, whole_box


@dataclass
class TopCrops:
    """One layer's crops: ``boxes[ch][t]`` ``{top, left, bottom, right}`` (inclusive pixels of the image as the
    model was fed, :func:`fitted`; cut it with :func:`featuremaps.receptive.crop`) for each drawn channel ``ch``
    and its ``t``-th top image, None where there is no image or it could not be read again; ``note`` is empty
    when the layer has a receptive field, else why its boxes are whole images."""

    boxes: dict[int, list[dict | None]]
    note: str = ""
    approximate: str = ""  # where the layer's field is approximated (a branching graph), what the fields say


def fitted(images: list[np.ndarray], shape, centre: bool = False) -> np.ndarray:
    """uint8-valued images (any size, grey or RGB) as the model is fed them before its preprocessing: (B, H, W, C)
    float32 0-255, stretched to ``shape`` (H, W, C) as the atlas does; with ``centre`` (an emotion model trained
    with ``--crop``: :func:`featuremaps.pipeline.sees_centre`), stretched to 48 px and cut to their centre
    ``shape``, as ``show`` feeds it."""
    h, w, ch = shape
    if ch == 1 and not centre and all(im.ndim == 2 and im.shape == (h, w) for im in images):
        return np.stack(images).astype(np.float32)[..., None]
    rgb = [np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im for im in images]
    return np.stack([fit_centred(im, shape, "stretch", centre) for im in rgb])


def locate(
    ad,
    convs: list,
    wanted: list[dict[int, np.ndarray]],
    read,
    shape,
    preprocess,
    batch_size: int = 64,
    centre: bool = False,
) -> list[TopCrops]:
    """Crops of the top images of the chosen channels of each layer, from one more forward pass over them.

    Args:
        ad: the model's adapter (forward passes only: ONNX models too)
        convs: the atlas' conv layers (``ConvLayer``)
        wanted: per layer, ``{channel: top image ids}`` (ids < 0 are empty slots)
        read: ``read(id)`` the image as uint8 (a UserError when it cannot be read: that tile stays empty)
        shape: the model's input (H, W, C)
        preprocess: the model's preprocessing of 0-255 pixels
        batch_size: images per forward pass (every layer's maps of a batch are held at once)
        centre: the model sees the centre of each image fitted to 48 px (:func:`fitted`)
    """
    h, w = shape[:2]
    rf = adapter_fields(ad, convs)
    sizes = ad.layer_shapes(shape)
    out, located = [], []
    for j, (c, want) in enumerate(zip(convs, wanted, strict=True)):
        note = "" if c.label in rf.fields else (rf.note or "no receptive field for this layer")
        field = rf.fields.get(c.label)
        mh, mw = sizes[c.name][:2]
        everywhere = field is None or (
            field.box(0, 0, h, w) == whole_box(h, w) == field.box(mh - 1, mw - 1, h, w)
        )  # then every position sees the whole image: no need to find the maximum
        boxes = {ch: [whole_box(h, w) if everywhere and i >= 0 else None for i in ids] for ch, ids in want.items()}
        approx = rf.note if field is not None and any(n in rf.note for n in (MERGE_NOTE, TRANSPOSED_NOTE)) else ""
        out.append(TopCrops(boxes, note, approx))
        if not everywhere:
            located.append(j)
    wanted = [want if j in located else {} for j, want in enumerate(wanted)]
    ids = sorted({int(i) for want in wanted for v in want.values() for i in v if i >= 0})
    for b0 in range(0, len(ids), batch_size):
        part, pixels = [], []
        for i in ids[b0 : b0 + batch_size]:
            try:
                pixels.append(read(i))
                part.append(i)
            except UserError:
                continue  # read once already, unreadable now (a file removed since): its tile stays empty
        if not part:
            continue
        x = fitted(pixels, shape, centre)
        row = {i: b for b, i in enumerate(part)}
        # the same layers for every batch: one graph (Keras caches it by the names)
        maps, _ = ad.forward(np.asarray(preprocess(x.copy()), np.float32), [convs[j].name for j in located])
        for j in located:
            _, ys, xs = peaks(np.asarray(maps[convs[j].name]))
            field = rf.fields.get(convs[j].label)
            for ch, v in wanted[j].items():
                for t, i in enumerate(v):
                    b = row.get(int(i))
                    if b is None:
                        continue
                    out[j].boxes[ch][t] = crop_box(field, ys[b, ch], xs[b, ch], h, w)
    return out
