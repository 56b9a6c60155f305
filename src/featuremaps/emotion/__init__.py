"""The emotion models: the FER2013 VGG-16 (``model``), its data (``data``), augmentation (``augment``),
training (``train``) and evaluation (``evaluate``)."""

from featuremaps.emotion.model import (
    EMOTIONS,
    INPUT_SHAPE,
    build_emotion_vgg16,
    fold_batch_norm,
    load_emotion_model,
    load_weights_npz,
    model_card,
    save_weights_npz,
    shipped_weights_available,
    unfold_batch_norm,
)

__all__ = [
    "EMOTIONS",
    "INPUT_SHAPE",
    "build_emotion_vgg16",
    "fold_batch_norm",
    "load_emotion_model",
    "load_weights_npz",
    "model_card",
    "save_weights_npz",
    "shipped_weights_available",
    "unfold_batch_norm",
]
