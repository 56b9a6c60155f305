"""The keras.applications models by name: every constructor, its family's preprocessing and input size.

Plain data, no framework import: ``featuremaps --help`` lists the names without loading Keras.
A model's name is its constructor's name in lower case (``NASNetMobile`` -> ``nasnetmobile``); ``_`` is
ignored when a name is looked up (``mobilenet_v3_small`` works too).
"""

from __future__ import annotations

#: family (the keras.applications module whose ``preprocess_input`` the family uses) -> constructors and
#: each one's default input side (the size its ImageNet weights were trained at)
FAMILIES: dict[str, dict[str, int]] = {
    "vgg16": {"VGG16": 224},
    "vgg19": {"VGG19": 224},
    "resnet": {"ResNet50": 224, "ResNet101": 224, "ResNet152": 224},
    "resnet_v2": {"ResNet50V2": 224, "ResNet101V2": 224, "ResNet152V2": 224},
    "inception_v3": {"InceptionV3": 299},
    "inception_resnet_v2": {"InceptionResNetV2": 299},
    "xception": {"Xception": 299},
    "mobilenet": {"MobileNet": 224},
    "mobilenet_v2": {"MobileNetV2": 224},
    "mobilenet_v3": {"MobileNetV3Small": 224, "MobileNetV3Large": 224},
    "densenet": {"DenseNet121": 224, "DenseNet169": 224, "DenseNet201": 224},
    "nasnet": {"NASNetMobile": 224, "NASNetLarge": 331},
    "efficientnet": {f"EfficientNetB{i}": s for i, s in enumerate((224, 240, 260, 300, 380, 456, 528, 600))},
    "efficientnet_v2": {
        "EfficientNetV2B0": 224,
        "EfficientNetV2B1": 240,
        "EfficientNetV2B2": 260,
        "EfficientNetV2B3": 300,
        "EfficientNetV2S": 384,
        "EfficientNetV2M": 480,
        "EfficientNetV2L": 480,
    },
    "convnext": {
        "ConvNeXtTiny": 224,
        "ConvNeXtSmall": 224,
        "ConvNeXtBase": 224,
        "ConvNeXtLarge": 224,
        "ConvNeXtXLarge": 224,
    },
}

#: name -> (keras.applications constructor, preprocessing module, default input side)
APPLICATIONS: dict[str, tuple[str, str, int]] = {
    ctor.lower(): (ctor, module, side) for module, ctors in FAMILIES.items() for ctor, side in ctors.items()
}


def application_key(spec: str) -> str:
    """The registry key a user's model name would have (``MobileNet_V2`` -> ``mobilenetv2``)."""
    return spec.lower().replace("_", "")


def _prefix(names: list[str]) -> str:
    p = names[0]
    for n in names[1:]:
        while not n.startswith(p):
            p = p[:-1]
    return p


def summary() -> str:
    """Every name, one family at a time, shared beginnings written once:
    ``vgg16, vgg19, resnet50|101|152, ..., convnexttiny|small|base|large|xlarge``."""
    parts = []
    for ctors in FAMILIES.values():
        names = [c.lower() for c in ctors]
        if len(names) == 1:
            parts.append(names[0])
            continue
        p = _prefix(names)
        parts.append(p + "|".join(n[len(p) :] for n in names))
    return ", ".join(parts)
