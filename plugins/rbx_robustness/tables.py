"""The ImageNet-C / -P benchmark tables: severities, corruption and perturbation
lists, and AlexNet's errors, flip probabilities and top-5 distances that
normalise CE, FR and T5D.

Sources: Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR 2019, §4.1-4.2, App. B-E, and the
reference code in hendrycks/robustness (``ImageNet-C/test.py``,
``ImageNet-P/test.py``, ``ImageNet-P/cifar-p-eval.py``); each table names its
own source. The readers, the engine and the evaluators take their lists from
here, so a corruption is named the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "SEVERITIES",
    "IMAGENET_C_TEST",
    "IMAGENET_C_EXTRA",
    "IMAGENET_C_ALL",
    "ALEXNET_ERR",
    "ALEXNET_CLEAN_ERR",
    "IMAGENET_P_TEST",
    "IMAGENET_P_EXTRA",
    "IMAGENET_P_ALL",
    "CIFAR_P_TEST",
    "ALEXNET_FP",
    "ALEXNET_UT5D",
]


#: ImageNet-C severities, one folder each (``ImageNet-C/test.py``: ``range(1, 6)``).
SEVERITIES = (1, 2, 3, 4, 5)

#: The 15 test corruptions, in ``ImageNet-C/test.py`` order; mCE averages over these.
IMAGENET_C_TEST = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip

#: The 4 extra ("validation") corruptions, one per category (paper App. B); not in mCE.
IMAGENET_C_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")

IMAGENET_C_ALL = IMAGENET_C_TEST + IMAGENET_C_EXTRA

#: torchvision AlexNet (``alexnet-owt-4df8aa71.pth``) top-1 error per corruption,
#: severities 1..5 (hendrycks/robustness README "AlexNet ImageNet-C Error",
#: commit 76d9393; issue #10). CE_c divides by the mean (equivalently the sum) of a row.
ALEXNET_ERR: Mapping[str, tuple[float, ...]] = MappingProxyType({
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
    "speckle_noise": (0.66192, 0.74440, 0.90246, 0.94548, 0.97268),
    "gaussian_blur": (0.54732, 0.70444, 0.82574, 0.89864, 0.95940),
    "spatter": (0.47196, 0.62194, 0.75052, 0.84132, 0.90182),
    "saturate": (0.59342, 0.65514, 0.51174, 0.70834, 0.82260),
})  # fmt: skip

#: AlexNet clean top-1 error (torchvision acc@1 56.522 %; docs/metrics.md#alexnet-normalisers). 0.4348, not
#: the paper's rounded 43.5 %: only 0.4348 reproduces the paper's relative-CE table.
ALEXNET_CLEAN_ERR = 0.4348

#: The 10 ImageNet-P test perturbations (paper §4.2; ``make_imagenet_p.py`` "Test Data").
IMAGENET_P_TEST = (
    "gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
    "brightness", "translate", "rotate", "tilt", "scale",
)  # fmt: skip

#: The 4 ImageNet-P validation perturbations; not in mFR / mT5D.
IMAGENET_P_EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "shear")

IMAGENET_P_ALL = IMAGENET_P_TEST + IMAGENET_P_EXTRA

#: CIFAR-10/100-P evaluation list (``ImageNet-P/cifar-p-eval.py``): spatter replaces snow.
CIFAR_P_TEST = (
    "gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "spatter",
    "brightness", "translate", "rotate", "tilt", "scale",
)  # fmt: skip

#: AlexNet flip probability (fraction), difficulty 1 (clovaai/assembled-cnn
#: ``mce/eval_robustness.py::ALEXNET_FP``; paper App. E in percent).
ALEXNET_FP: Mapping[str, float] = MappingProxyType({
    "gaussian_noise": 0.23653, "shot_noise": 0.30062, "motion_blur": 0.09297,
    "zoom_blur": 0.05942, "snow": 0.11928, "brightness": 0.04889,
    "translate": 0.11007, "rotate": 0.13104, "tilt": 0.07050, "scale": 0.23531,
    "speckle_noise": 0.18649, "gaussian_blur": 0.02775, "spatter": 0.05053,
    "shear": 0.10658,
})  # fmt: skip

#: AlexNet unnormalised top-5 distance, difficulty 1 (paper App. E).
ALEXNET_UT5D: Mapping[str, float] = MappingProxyType({
    "gaussian_noise": 4.77, "shot_noise": 5.76, "motion_blur": 1.93,
    "zoom_blur": 1.34, "snow": 2.42, "brightness": 1.19, "translate": 2.63,
    "rotate": 2.95, "tilt": 1.75, "scale": 4.48, "speckle_noise": 3.89,
    "gaussian_blur": 0.70, "spatter": 1.26, "shear": 2.48,
})  # fmt: skip
