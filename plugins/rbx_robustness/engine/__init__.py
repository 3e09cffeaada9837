"""Batched ImageNet-C (and CIFAR-C / Tiny-ImageNet-C preset) corruption engine and ImageNet-P sequence generator (pure torch).

``corrupt(batch, name, severity, generator)`` applies one of the 19 ImageNet-C
corruptions; ``sequence(image, name, generator)`` builds an ImageNet-P
perturbation sequence; ``build_c`` / ``build_p`` write ImageNet-C/-P layout
trees.  See the module docstrings for the published sources, parameters and
every deviation from them.
"""

from .corruptions import (
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    PRESETS,
    TEST_CORRUPTIONS,
    CorruptionSpec,
    Preset,
    corrupt,
    frost_source,
    set_frost_images,
)
from .perturbations import (
    PERTURBATIONS,
    TEST_PERTURBATIONS,
    VALIDATION_PERTURBATIONS,
    PerturbationSpec,
    sequence,
    sequence_batch,
)

__all__ = [
    "CORRUPTIONS",
    "CorruptionSpec",
    "EXTRA_CORRUPTIONS",
    "PERTURBATIONS",
    "PRESETS",
    "Preset",
    "PerturbationSpec",
    "TEST_CORRUPTIONS",
    "TEST_PERTURBATIONS",
    "VALIDATION_PERTURBATIONS",
    "build_c",
    "build_p",
    "corrupt",
    "frost_source",
    "sequence",
    "sequence_batch",
    "set_frost_images",
]


def __getattr__(name):  # build helpers import PIL / PyAV lazily
    if name in ("build_c", "build_p"):
        from . import build

        return getattr(build, name)
    raise AttributeError(name)
