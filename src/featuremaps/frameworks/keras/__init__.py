"""Keras 3 models behind featuremaps' model protocol: graph replay and split (``graph``), layer discovery
(``featuremaps.layers``), receptive fields (``receptive``)."""
