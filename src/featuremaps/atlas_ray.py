"""The old module path of :mod:`featuremaps.atlas.ray` (the atlas on Ray Data), kept importable: its names,
re-exported. New code imports ``featuremaps.atlas.ray``."""

from featuremaps.atlas.ray import (
    BLOCK_BATCHES,
    BLOCKS_PER_ACTOR,
    CONNECT_TIMEOUT_S,
    AtlasActor,
    actor_options,
    block_rows,
    check_address,
    compute_atlas_ray,
    connect,
    default_actors,
    to_dataset,
)

__all__ = [
    "BLOCK_BATCHES",
    "BLOCKS_PER_ACTOR",
    "CONNECT_TIMEOUT_S",
    "AtlasActor",
    "actor_options",
    "block_rows",
    "check_address",
    "compute_atlas_ray",
    "connect",
    "default_actors",
    "to_dataset",
]
