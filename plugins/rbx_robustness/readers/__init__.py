"""Readers for corruption and perturbation benchmarks, each reading the layout
its authors distribute (``docs/datasets.md#imagenet-c``), lazily.

========================  =========================================================
module                    dataset
========================  =========================================================
``imagenet_c``            ImageNet-C: ``<root>/[<category>/]<corruption>/<severity>/<wnid>/*.JPEG``
``cifar_c``               CIFAR-10-C / CIFAR-100-C: ``<root>/<corruption>.npy`` + ``labels.npy``
``imagenet_p``            ImageNet-P: ``<root>/<perturbation>/<wnid>/<val_stem>.mp4`` (PyAV)
``cifar_p``               CIFAR-10-P / CIFAR-100-P: ``<root>/<perturbation>.npy``
``cure_tsr``              CURE-TSR: ``<root>/Real_Test/{ChallengeFree,<Challenge>-<level>}/*.bmp``
``cure_or``               CURE-OR: ``<root>/<NN_challenge>/[Level_<L>/]…/b_d_o_OOO_TT_L.jpg``
========================  =========================================================

Each module has a :class:`robustbench_x.api.Dataset` subclass and a
``build(name=..., options=..., config_file=...)`` factory with ``OPTION_KEYS``
and ``REQUIRED_KEYS``. Layout problems raise
:class:`~rbx_robustness.readers._common.DatasetLayoutError` (a ``ConfigError``)
naming the path and the fix; a file that cannot be decoded raises
:class:`~rbx_robustness.readers._common.UndecodableFileError` naming the file.
"""

from rbx_robustness.readers._common import DatasetLayoutError, UndecodableFileError

__all__ = ["DatasetLayoutError", "UndecodableFileError"]
