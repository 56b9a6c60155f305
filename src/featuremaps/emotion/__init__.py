"""The emotion models: the FER2013 VGG-16 and its ResNet/MobileNetV2 siblings (``model``), their data
(``data``), augmentation (``augment``),
training (``train``) and evaluation (``evaluate``)."""

from featuremaps.emotion.model import (
    ARCHS,
    EMOTIONS,
    INPUT_SHAPE,
    build_emotion_mobilenet,
    build_emotion_model,
    build_emotion_resnet,
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
    "ARCHS",
    "EMOTIONS",
    "INPUT_SHAPE",
    "build_emotion_mobilenet",
    "build_emotion_model",
    "build_emotion_resnet",
    "build_emotion_vgg16",
    "fold_batch_norm",
    "load_emotion_model",
    "load_weights_npz",
    "model_card",
    "save_weights_npz",
    "shipped_weights_available",
    "unfold_batch_norm",
]
