"""The FER2013 emotion models: a VGG-16 for 48x48 grayscale faces (shipped), and two siblings for
architecture comparisons, a ResNet-18-style network and a MobileNetV2-style one (``build_emotion_model``).

Layer names follow ``keras.applications.VGG16`` (``block1_conv1`` ... ``block5_conv3``) so feature maps line
up with the ImageNet model. It is trained with batch normalisation (conv -> BN -> ReLU, Ioffe & Szegedy 2015)
and shipped with each BN folded into its conv (``fold_batch_norm``); in training, BN is Keras' computed by one
fused kernel on TensorFlow (``norm.FusedBatchNormalization``: 1.6x faster steps on AMX, same results). The shipped
model's conv layers carry their ReLU like Keras' VGG16, so the maps featuremaps shows are post-activation, as for
the ImageNet model, and the predictions are those of the trained network (to float rounding).

The siblings follow the same convention (BN form for training, folded form for shipping and for the
grids), with layer names that read in a grid: ``stem_conv``, ``stage2_block1_conv1``, ``stage2_block1_shortcut``
(ResNet), ``block3_expand``, ``block3_depthwise``, ``block3_project`` (MobileNetV2). Each architecture has
its own weights and card file (``emotion_<arch>.weights.npz``, ``emotion_<arch>.card.json``).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers

from featuremaps.emotion.norm import FusedBatchNormalization
from featuremaps.emotion.shipped import (
    ARCHS,
    EMOTIONS,
    INPUT_SHAPE,
    card_file,
    data_path,
    model_card,
    shipped_weights_available,
    weights_file,
)
from featuremaps.errors import UserError
from featuremaps.io import atomic_path

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
#: how the VGG-16's 2x2 pools treat an odd map (:func:`build_emotion_vgg16`)
POOLS = ("ceil", "floor")
#: ResNet-18 stages: (filters, blocks, stride of the first block); 48 -> 24 -> 12 -> 6 -> 3 px
RESNET18_STAGES = ((64, 2, 2), (128, 2, 2), (256, 2, 2), (512, 2, 2))
#: MobileNetV2 (Sandler et al. 2018) inverted residuals: (expansion t, filters c, repeats n, stride s)
MOBILENETV2_BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def build_emotion_vgg16(
    input_shape=INPUT_SHAPE,
    num_classes: int = len(EMOTIONS),
    dropout: float = 0.4,
    batch_norm: bool = False,
    width: float = 1.0,
    weight_decay: float = 0.0,
    pools: str = "ceil",
):
    """VGG-16 (13 conv 3x3 in 5 blocks, max pooling, dense 512-512 head with dropout); input in [0, 1].

    The last pool takes the maximum over the whole final map (3x3 at 48 px), so every position reaches the
    head; Keras' 2x2 pool there would drop the bottom row and right column of a 3x3 map. For the same reason
    the 2x2 pools after blocks 1-4 round up (``pools="ceil"``, padding ``same``: an odd map's last row and
    column are pooled on their own): at 40 px block 4's maps are 5x5, and a flooring pool (``"floor"``, Keras'
    default, the form of the models shipped before 2026-12-09) keeps 2x2 of them, so their bottom row and right
    column never reach the output. The two are the same network where every map is even (48 px).

    ``batch_norm=True`` is the training form (conv -> BN -> ReLU); the default is the inference form with
    ReLU inside each conv, which :func:`fold_batch_norm` fills from a trained BN model. ``width`` scales
    the filter counts (tests use a narrow copy; the shipped model is width 1). ``weight_decay`` (training
    form): an L2 penalty on the conv and dense kernels as torch's SGD ``weight_decay`` (coupled), none on
    BN or biases.
    """

    if pools not in POOLS:
        raise UserError(f"pools '{pools}' is not one of {', '.join(POOLS)}")
    inputs = keras.Input(shape=input_shape, name="face")
    x = inputs
    for b, (filters, n) in enumerate(VGG16_BLOCKS, start=1):
        f = max(4, int(round(filters * width)))
        for i in range(1, n + 1):
            if batch_norm:
                x = layers.Conv2D(
                    f,
                    3,
                    padding="same",
                    use_bias=False,
                    kernel_initializer="he_normal",
                    kernel_regularizer=_decay(weight_decay),
                    name=f"block{b}_conv{i}",
                )(x)
                x = FusedBatchNormalization(momentum=0.9, name=f"block{b}_bn{i}")(x)
                x = layers.Activation("relu", name=f"block{b}_relu{i}")(x)
            else:
                x = layers.Conv2D(f, 3, padding="same", activation="relu", name=f"block{b}_conv{i}")(x)
        if b < len(VGG16_BLOCKS):
            x = layers.MaxPooling2D(2, padding="same" if pools == "ceil" else "valid", name=f"block{b}_pool")(x)
        else:
            # the whole final map (see the docstring): a 2x2 pool of a 3x3 map blanks CAMs over the mouth
            x = layers.GlobalMaxPooling2D(keepdims=True, name=f"block{b}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    units = max(16, int(round(512 * width)))
    reg = _decay(weight_decay) if batch_norm else None
    x = layers.Dense(units, activation="relu", kernel_regularizer=reg, name="fc1")(x)
    x = layers.Dropout(dropout, name="drop1")(x)
    x = layers.Dense(units, activation="relu", kernel_regularizer=reg, name="fc2")(x)
    x = layers.Dropout(dropout, name="drop2")(x)
    # float32 output: stable softmax under mixed precision
    outputs = layers.Dense(
        num_classes, activation="softmax", dtype="float32", kernel_regularizer=reg, name="predictions"
    )(x)
    return keras.Model(inputs, outputs, name="emotion_vgg16")


def _decay(weight_decay: float):
    """The kernel regularizer of weight decay ``weight_decay`` as torch's SGD applies it (``grad += wd * w``,
    coupled, so it passes through the momentum): an L2 penalty ``wd / 2 * sum(w**2)``. None for 0."""
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def _conv_unit(x, filters, kernel, stride, name, act, batch_norm, depthwise=False, weight_decay=0.0):
    """conv -> BN -> act (training form) or one conv with bias and ``act`` (inference form, BN folded in).

    The BN of conv ``name`` is ``name + "_bn"``; ``act`` None leaves the unit linear (before an Add).
    ``weight_decay`` (training form): an L2 penalty on the conv kernel (:func:`_decay`), none on depthwise
    kernels (9 weights a channel: decaying them hurts MobileNets, Sandler et al. 2018), BN or biases.
    """
    kw = dict(strides=stride, padding="same", name=name)
    if depthwise:
        make = lambda **k: layers.DepthwiseConv2D(kernel, depthwise_initializer="he_normal", **kw, **k)  # noqa: E731
    else:
        make = lambda **k: layers.Conv2D(filters, kernel, kernel_initializer="he_normal", **kw, **k)  # noqa: E731
    if not batch_norm:
        return make(activation=act)(x)
    x = (make(use_bias=False) if depthwise else make(use_bias=False, kernel_regularizer=_decay(weight_decay)))(x)
    x = FusedBatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.Activation(act, name=f"{name}_{act}")(x) if act else x


def _head(x, num_classes, dropout, weight_decay=0.0):
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="drop")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", dtype="float32", kernel_regularizer=_decay(weight_decay), name="predictions"
    )(x)
    return outputs


def build_emotion_resnet(
    input_shape=INPUT_SHAPE,
    num_classes: int = len(EMOTIONS),
    dropout: float = 0.2,
    batch_norm: bool = False,
    width: float = 1.0,
    weight_decay: float = 0.0,
):
    """A ResNet-18 (He et al. 2016, "Deep Residual Learning"), sized for 48x48 faces.

    A 3x3 stem at full resolution (no 7x7/stride-2 stem and max pool: they would leave a 48 px face 12 px
    wide before the first block), then four stages of two basic blocks (3x3 conv, 3x3 conv, identity or
    1x1 projection shortcut), the first block of each stage striding by 2: maps of 24, 12, 6 and 3 px,
    global average pooling, dropout, softmax. About 0.3 GMAC per face (the VGG-16: 0.7).

    A strided projection is written as ``<block>_shortcut_subsample`` (a 1x1 pool, stride 2: every other
    pixel) then ``<block>_shortcut`` (1x1 conv, stride 1): the same function and weight shapes as one 1x1
    stride-2 conv, which TensorFlow's oneDNN kernels train into heap corruption (BENCHMARKS.md, issue 29). A
    checkpoint saved with that older form loads as saved (a ``.keras`` file holds its layers) and
    :func:`fold_batch_norm` maps it onto this form by layer name.

    Example::

        model = build_emotion_resnet(batch_norm=True)   # train this, ship fold_batch_norm(model)
    """
    inputs = keras.Input(shape=input_shape, name="face")
    c = lambda f: max(4, int(round(f * width)))  # noqa: E731
    wd = weight_decay if batch_norm else 0.0
    x = _conv_unit(inputs, c(64), 3, 1, "stem_conv", "relu", batch_norm, weight_decay=wd)
    for s, (filters, blocks, stride) in enumerate(RESNET18_STAGES, start=1):
        for b in range(1, blocks + 1):
            st = stride if b == 1 else 1
            name = f"stage{s}_block{b}"
            shortcut = x
            if st != 1 or x.shape[-1] != c(filters):
                # the 1x1 stride-2 projection as a subsampling (a 1x1 pool) then a stride-1 1x1 conv: the same
                # function and weights, without oneDNN's strided 1x1 weight-gradient kernel, which corrupts
                # TensorFlow's heap in training when channels are not multiples of 16 (issue 29)
                if st != 1:
                    shortcut = layers.AveragePooling2D(1, strides=st, name=f"{name}_shortcut_subsample")(x)
                shortcut = _conv_unit(shortcut, c(filters), 1, 1, f"{name}_shortcut", None, batch_norm, weight_decay=wd)
            y = _conv_unit(x, c(filters), 3, st, f"{name}_conv1", "relu", batch_norm, weight_decay=wd)
            y = _conv_unit(y, c(filters), 3, 1, f"{name}_conv2", None, batch_norm, weight_decay=wd)
            x = layers.Add(name=f"{name}_add")([y, shortcut])
            x = layers.Activation("relu", name=f"{name}_out")(x)
    return keras.Model(inputs, _head(x, num_classes, dropout, wd), name="emotion_resnet")


def build_emotion_mobilenet(
    input_shape=INPUT_SHAPE,
    num_classes: int = len(EMOTIONS),
    dropout: float = 0.2,
    batch_norm: bool = False,
    width: float = 1.0,
    weight_decay: float = 0.0,
):
    """A MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks") for 48 px.

    Stem 3x3 conv (stride 1 instead of 2: small faces), then 17 inverted residual blocks: 1x1 ``expand``
    (x6, ReLU6), 3x3 ``depthwise`` (ReLU6), linear 1x1 ``project``, with an identity shortcut where shape
    allows; strides give maps of 48, 24, 12, 6 and 3 px; a 1x1 ``head_conv`` (1280), global average
    pooling, dropout, softmax.

    Example::

        model = build_emotion_mobilenet(batch_norm=True, width=0.5)
    """
    inputs = keras.Input(shape=input_shape, name="face")
    c = lambda f: max(4, int(round(f * width)))  # noqa: E731
    wd = weight_decay if batch_norm else 0.0
    x = _conv_unit(inputs, c(32), 3, 1, "stem_conv", "relu6", batch_norm, weight_decay=wd)
    k = 0
    for t, filters, n, stride in MOBILENETV2_BLOCKS:
        for i in range(n):
            k += 1
            name = f"block{k}"
            st = stride if i == 0 else 1
            y = x
            if t != 1:
                y = _conv_unit(y, int(x.shape[-1]) * t, 1, 1, f"{name}_expand", "relu6", batch_norm, weight_decay=wd)
            y = _conv_unit(y, None, 3, st, f"{name}_depthwise", "relu6", batch_norm, depthwise=True)
            y = _conv_unit(y, c(filters), 1, 1, f"{name}_project", None, batch_norm, weight_decay=wd)
            x = layers.Add(name=f"{name}_add")([y, x]) if st == 1 and x.shape[-1] == y.shape[-1] else y
    x = _conv_unit(x, c(1280), 1, 1, "head_conv", "relu6", batch_norm, weight_decay=wd)
    return keras.Model(inputs, _head(x, num_classes, dropout, wd), name="emotion_mobilenet")


BUILDERS = {"vgg16": build_emotion_vgg16, "resnet": build_emotion_resnet, "mobilenet": build_emotion_mobilenet}


def build_emotion_model(arch: str = "vgg16", **kwargs):
    """The emotion network ``arch`` (``vgg16``, ``resnet``, ``mobilenet``); keyword arguments as its builder's."""
    if arch not in BUILDERS:
        raise UserError(f"unknown architecture '{arch}'; use one of {', '.join(ARCHS)}")
    return BUILDERS[arch](**kwargs)


def arch_of(model) -> str:
    """``vgg16``/``resnet``/``mobilenet`` from a model built here (by its name)."""
    name = model.name.removeprefix("emotion_")
    return name if name in BUILDERS else "vgg16"


def pools_of(model) -> str:
    """``ceil`` or ``floor``: how a VGG-16 built here pools an odd map (:func:`build_emotion_vgg16`)."""
    same = [layer.padding == "same" for layer in model.layers if isinstance(layer, layers.MaxPooling2D)]
    return "ceil" if same and all(same) else "floor"


def _bn_of(model, conv_name: str):
    """The BN layer after conv ``conv_name`` in a training-form model (VGG: ``block1_bn1``; others: ``<conv>_bn``)."""
    names = {layer.name for layer in model.layers}
    for cand in (conv_name.replace("_conv", "_bn"), f"{conv_name}_bn"):
        if cand != conv_name and cand in names and isinstance(model.get_layer(cand), layers.BatchNormalization):
            return model.get_layer(cand)
    return None


def recalibrate_batch_norm(model, faces: np.ndarray, batch_size: int = 256) -> None:
    """Set every BN layer's moving statistics to those of the model's current weights on ``faces``.

    Averaged weights (``train --ema``, or SWA) never ran with the BN statistics training kept, which belong
    to the raw weights of the last steps. As SWA's ``bn_update`` (Izmailov et al. 2018), the model runs on
    ``faces`` (float32 in [0, 1], (N, H, W, 1) at the model's input size) in training mode, where each BN
    normalises with the batch's own statistics, and each BN's momentum is set to ``(k - 1) / k`` for the
    ``k``-th batch: the stored statistics become the plain average over all batches, whatever their order
    (FER2013's splits are sorted by class: with Keras' momentum of 0.9 the last batches, all ``surprise``,
    would decide them). Dropout runs too but changes no statistic here (the networks drop only after the
    last BN). The BN layers' momentum is restored afterwards.
    """
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    kept = [layer.momentum for layer in norms]
    try:
        for k, i in enumerate(range(0, len(faces), batch_size), start=1):
            for layer in norms:
                layer.momentum = (k - 1) / k
            model(faces[i : i + batch_size], training=True)
    finally:
        for layer, m in zip(norms, kept, strict=True):
            layer.momentum = m


def fold_batch_norm(trained, width: float = 1.0):
    """The inference form of a ``batch_norm=True`` emotion model (any of :data:`ARCHS`): each BN folded into
    the conv before it.

    For conv output ``z = W*x`` and BN ``g (z - m) / sqrt(v + eps) + b``: ``W' = W s``, ``bias' = b - m s``
    with ``s = g / sqrt(v + eps)``; the activation after the BN moves into the conv. Depthwise kernels
    (kh, kw, C, 1) are scaled per input channel, which is their output channel. Exact up to float rounding.

    Example::

        shipped = fold_batch_norm(keras.models.load_model("runs/emotion/best.keras"))
    """
    arch = arch_of(trained)
    model = build_emotion_model(
        arch,
        input_shape=tuple(trained.inputs[0].shape[1:]),
        num_classes=int(trained.outputs[0].shape[-1]),
        width=width,
        **({"pools": pools_of(trained)} if arch == "vgg16" else {}),
    )
    for layer in model.layers:
        if not layer.get_weights():
            continue
        src = trained.get_layer(layer.name)
        bn = _bn_of(trained, layer.name) if isinstance(layer, layers.Conv2D | layers.DepthwiseConv2D) else None
        if bn is not None:
            (kernel,) = [np.asarray(w, np.float64) for w in src.get_weights()]
            gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
            scale = gamma / np.sqrt(var + bn.epsilon)
            if isinstance(layer, layers.DepthwiseConv2D):  # (kh, kw, C, multiplier): output channel c*m + j
                kernel = (kernel.reshape(*kernel.shape[:2], -1) * scale).reshape(kernel.shape)
            else:
                kernel = kernel * scale
            layer.set_weights([kernel.astype(np.float32), (beta - mean * scale).astype(np.float32)])
        else:
            layer.set_weights([np.asarray(w, np.float32) for w in src.get_weights()])
    return model


def unfold_batch_norm(
    folded, faces: np.ndarray, width: float = 1.0, batch_size: int = 128, input_shape=None, weight_decay: float = 0.0
):
    """The training form of an inference-form model, with the same outputs: a warm start for more training.

    The inverse of :func:`fold_batch_norm` is not unique; this one keeps each conv kernel ``W'`` and sets
    each BN to the statistics of ``z = W' * x`` measured on ``faces`` (uint8 (N, 48, 48)): ``m``, ``v`` =
    the channel mean and variance, ``g = sqrt(v + eps)``, ``b = bias' + m``. Then ``BN(z) = z + bias'``
    exactly with the stored statistics, and nearly so with batch statistics in training, so training
    resumes where the folded model is instead of from a disturbed network.

    ``input_shape`` builds the training model for another input size (``(44, 44, 1)`` for random crops; the
    weights do not depend on it, nor on the pools, which round up as in every new build); ``faces`` are then
    centre-cropped to it for the statistics. VGG-16 only.
    ``weight_decay``: the training model's L2 penalty (:func:`build_emotion_vgg16`).
    """

    shape = tuple(input_shape or folded.inputs[0].shape[1:])
    model = build_emotion_vgg16(
        shape, int(folded.outputs[0].shape[-1]), batch_norm=True, width=width, weight_decay=weight_decay
    )
    dy, dx = (faces.shape[1] - shape[0]) // 2, (faces.shape[2] - shape[1]) // 2
    faces = faces[:, dy : dy + shape[0], dx : dx + shape[1]]
    convs = [layer for layer in model.layers if layer.name.startswith("block") and "_conv" in layer.name]
    for layer in model.layers:
        if not layer.get_weights() or "_bn" in layer.name:
            continue
        src = folded.get_layer(layer.name)
        if layer in convs:
            kernel, bias = src.get_weights()
            layer.set_weights([kernel])
            bn = model.get_layer(layer.name.replace("_conv", "_bn"))  # identity + bias until measured
            one = np.ones_like(bias)
            bn.set_weights([one, bias, np.zeros_like(bias), one - bn.epsilon])
        else:
            layer.set_weights(src.get_weights())
    probe = keras.Model(model.inputs, [layer.output for layer in convs])
    sums = [np.zeros((2, layer.filters)) for layer in convs]  # per channel: sum of z, sum of z^2
    count = np.zeros(len(convs))
    for i in range(0, len(faces), batch_size):  # in batches: all maps of 4k faces would take ~10 GB
        x = faces[i : i + batch_size, ..., None].astype(np.float32) / 255.0
        for j, z in enumerate(probe.predict_on_batch(x)):
            z = np.asarray(z, np.float64).reshape(-1, z.shape[-1])
            sums[j] += (z.sum(0), (z * z).sum(0))
            count[j] += len(z)
    for layer, (s1, s2), n in zip(convs, sums, count, strict=True):
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
        bn = model.get_layer(layer.name.replace("_conv", "_bn"))
        bias = bn.get_weights()[1]
        bn.set_weights([w.astype(np.float32) for w in (np.sqrt(var + bn.epsilon), bias + mean, mean, var)])
    return model


def shipped_build(arch: str, card: dict | None) -> dict:
    """The builder's keyword arguments for the shipped model ``arch`` from its card: ``input_shape`` from the
    card's ``input_side`` (a model trained with ``--crop 44`` takes the face's centre 44x44), ``width`` and, for
    the VGG-16, ``pools``. A card without them (the bundled VGG-16's before these fields existed) gives the
    48 px, width 1 model with flooring pools."""
    card = card or {}
    side, width = card.get("input_side", INPUT_SHAPE[0]), card.get("width", 1.0)
    if card.get("arch", arch) != arch or not isinstance(side, int) or not 16 <= side <= INPUT_SHAPE[0]:
        raise UserError(
            f"the shipped {card_file(arch)} does not describe a {arch} with a 16-{INPUT_SHAPE[0]} px input "
            f"(arch {card.get('arch')!r}, input_side {side!r}); reinstall featuremaps or ship the model again"
        )
    if not isinstance(width, int | float) or not width > 0:
        raise UserError(f"the shipped {card_file(arch)} has width {width!r}; reinstall featuremaps")
    build = {"input_shape": (side, side, INPUT_SHAPE[2]), "width": float(width)}
    if arch == "vgg16":  # a card without "pools" is a model trained with flooring pools
        pools = card.get("pools", "floor")
        if pools not in POOLS:
            raise UserError(f"the shipped {card_file(arch)} has pools {pools!r}; reinstall featuremaps")
        build["pools"] = pools
    return build


def save_weights_npz(model, path: str | Path, dtype=np.float16) -> None:
    """Store every weight by layer name (float16 by default: half the size, same accuracy to 0.1 points)."""
    arrays = {}
    for layer in model.layers:
        for j, w in enumerate(layer.get_weights()):
            arrays[f"{layer.name}/{j}"] = np.asarray(w).astype(dtype)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_weights_npz(model, path) -> None:
    """Inverse of :func:`save_weights_npz`, by layer name; any Keras backend."""
    with np.load(path) as data:
        for layer in model.layers:
            n = len(layer.get_weights())
            if n == 0:
                continue
            ws = [data[f"{layer.name}/{j}"].astype(np.float32) for j in range(n)]
            layer.set_weights(ws)


def load_emotion_model(arch: str = "vgg16"):
    """The shipped, trained emotion model ``arch`` (UserError if this install has no weights for it).

    Example::

        model = load_emotion_model()            # the FER2013 VGG-16
        model = load_emotion_model("resnet")    # once emotion_resnet.weights.npz ships

    Built as its card says (:func:`shipped_build`): a model shipped from a ``--crop 44`` run takes 44x44
    input (the face's centre crop, as in its validation), a ``--width`` run its own filter counts.
    """
    if arch not in BUILDERS:
        raise UserError(f"unknown emotion architecture '{arch}'; use one of {', '.join(ARCHS)}")
    if not shipped_weights_available(arch):
        if arch != "vgg16":
            raise UserError(
                f"the emotion-{arch} model is not trained/shipped yet; train one with 'featuremaps train --arch "
                f"{arch} --data fer2013.tar.gz' and pass its best.keras file with --model"
            )
        raise UserError(
            "the bundled emotion model weights are missing from this install; "
            "reinstall featuremaps or pass --model vgg16"
        )
    model = build_emotion_model(arch, **shipped_build(arch, model_card(arch)))
    with data_path(weights_file(arch)).open("rb") as f:
        load_weights_npz(model, f)
    return model
