"""First-party plugin: vision-language models (open_clip), the CLIP OOD /
domain-generalisation benchmarks, and the CLIP methods MCM, GL-MCM, CoOp and GalLoP.

This module only lists specs; it imports neither torch nor open_clip, so
``rbx list`` stays cheap (checked by a subprocess test).

Models
    ``openclip:<arch>/<pretrained>`` (e.g. ``openclip:ViT-B-16/openai``) or a
    ``models:`` entry with ``type: openclip`` (see :mod:`rbx_vlm.model`).
    Provides ``vlm``, ``logits`` (zero-shot ``τ·cos(image, "a photo of a {class}")``),
    ``features`` (the L2-normalised global image embedding) and ``embeddings``;
    its label space adapts to the dataset's classes (``label_space=None``).

Methods (``docs/methods.md#clip-methods``; every one requires ``vlm``, the learned ones also
``train_split``, so on a non-VLM model they are *skipped* with the hint of
``robustbench_x.plan.HINTS``)

==================  ===============  =============================================================
name                module           definition
==================  ===============  =============================================================
``mcm``             :mod:`.mcm`      ``max_k softmax(cos/T)_k``, T = 1 on raw cosines
``gl-mcm``          :mod:`.mcm`      MCM + λ·max over patches and classes of the per-patch MCM
``zeroshot-msp``    :mod:`.mcm`      zero-shot CLIP classifier ``softmax(τ·cos)``, its max (baseline)
``coop``            :mod:`.coop`     16 learned context vectors, few-shot, CE at τ
``gallop``          :mod:`.gallop`   global + local prompts, sparse top-k, GL-MCM score
==================  ===============  =============================================================

Datasets (:mod:`rbx_vlm.datasets`, ``docs/datasets.md#imagenet``): ``imagenet`` (wnid
train/val trees, MOS OOD sets as ``ood:``, the shifted ImageNets as ``dg:``),
and the stand-alone types ``imagenet-v2``, ``imagenet-sketch``, ``imagenet-a``,
``imagenet-r``.

Suite ``dg``: top-1 accuracy on ``id`` and every ``dg/*`` subset, from the
methods' ``prediction`` (ImageNet-A/-R predictions restricted to their 200
classes, see :mod:`rbx_vlm.datasets`).
"""

from __future__ import annotations

from robustbench_x import hookimpl
from robustbench_x.api import DatasetSpec, MethodSpec, ModelSpec, SuiteSpec

__all__ = ["rbx_models", "rbx_methods", "rbx_datasets", "rbx_suites"]

_LEARNED = ("score", "confidence", "probs", "prediction")
_BICUBIC = (
    "Images are resized with CLIP's own bicubic interpolation; the official evaluation scripts resize with torchvision's "
    "default bilinear, so published tables can differ slightly."
)


@hookimpl
def rbx_models() -> list[ModelSpec]:
    return [
        ModelSpec(
            "openclip",
            factory="rbx_vlm.model:build",
            provides={"vlm", "logits", "features", "embeddings"},
            label_space=None,
            family=True,
            option_keys={"arch", "pretrained", "checkpoint", "options", "label_space"},
            option_types={"quick_gelu": "bool"},
            key_types={"pretrained": "str"},
            summary="openclip:<arch>/<pretrained>; open_clip hub weights or a local checkpoint; zero-shot logits over the dataset's classes",
            deviations=("CLIP runs in fp32 on every device; the papers' code runs it in fp16 on GPU, so scores can differ in the last digits.",),
        )
    ]


@hookimpl
def rbx_methods() -> list[MethodSpec]:
    return [
        MethodSpec(
            name="mcm",
            factory="rbx_vlm.mcm:MCM",
            requires={"vlm"},
            outputs={"score", "confidence", "prediction"},
            params={"temperature": 1.0},
            summary="Maximum concept matching: max_k softmax(cos(x, 'a photo of a {k}')/T), T = 1 on raw cosines.",
            paper="Ming et al., NeurIPS 2022 (deeplearning-wisc/MCM)",
            deviations=(_BICUBIC,),
        ),
        MethodSpec(
            name="gl-mcm",
            factory="rbx_vlm.mcm:GLMCM",
            requires={"vlm"},
            outputs={"score", "confidence", "prediction"},
            params={"temperature": 1.0, "lambda_local": 1.0, "batch_size": 64},
            summary="Global-local MCM: MCM of the global embedding + λ·max over patches and classes of the per-patch softmax.",
            paper="Miyai et al., IJCV 2025 (AtsuMiyai/GL-MCM)",
            deviations=(_BICUBIC,),
        ),
        MethodSpec(
            name="zeroshot-msp",
            factory="rbx_vlm.mcm:ZeroShotMSP",
            requires={"vlm"},
            outputs=set(_LEARNED),
            params={},
            summary="Zero-shot CLIP classifier softmax(τ·cos) with its maximum as score (ImageNet-A/-R masked).",
            paper="Radford et al., ICML 2021; MSP: Hendrycks & Gimpel, ICLR 2017",
        ),
        MethodSpec(
            name="coop",
            factory="rbx_vlm.coop:CoOp",
            requires={"vlm", "train_split"},
            outputs=set(_LEARNED),
            params={
                "shots": 16,
                "n_ctx": 16,
                "ctx_init": "",
                "csc": False,
                "lr": 0.002,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "warmup_epochs": 1,
                "warmup_lr": 1e-5,
                "budget": "cpu",
                "epochs": None,
                "batch_size": None,
                "augment": True,
                "ood_score": "mcm",
                "temperature": 1.0,
            },
            summary="Context optimisation: 16 learned context vectors shared by all classes, few-shot CE; OOD score MCM on the learned prompts.",
            paper="Zhou et al., IJCV 2022 (KaiyangZhou/CoOp)",
            deviations=("CPU budget: 5 epochs at batch 32 instead of the paper's 50 to 200 epochs; prompts trained in fp32, not fp16.",),
        ),
        MethodSpec(
            name="gallop",
            factory="rbx_vlm.gallop:GalLoP",
            requires={"vlm", "train_split"},
            outputs=set(_LEARNED),
            params={
                "shots": 16,
                "n_global_prompts": 4,
                "n_local_prompts": 4,
                "topk": [5, 10, 15, 20],
                "global_dropout_p": 0.75,
                "template": "A photo of a",
                "learn_local_proj": True,
                "lr": 0.002,
                "momentum": 0.9,
                "weight_decay": 1e-2,
                "budget": "cpu",
                "epochs": None,
                "batch_size": None,
                "augment": True,
                "ood_method": "GL-MCM",
                "ood_temp_scale": 1.0,
                "lambda_local": 1.0,
            },
            summary="Global and local prompts: prompt dropout, sparse top-k local alignment, learned local projection; OOD score GL-MCM at T = 1.",
            paper="Lafon et al., ECCV 2024 (MarcLafon/gallop)",
            deviations=("CPU budget: 5 epochs at batch 32 instead of the paper's 50 or 200 epochs; trained in fp32, not fp16 autocast.",),
        ),
    ]


_ROOT_KEYS = {"root", "classes", "label_space", "extensions"}
#: datasets.yaml value forms (robustbench_x.options); ``classes`` is a class-name file.
_TYPES = {"root": "path", "classes": "path", "label_space": "str", "extensions": "names", "train": "path", "val": "path",
          "test": "path", "ood": "paths|names", "ood_root": "path", "dg": "paths"}


@hookimpl
def rbx_datasets() -> list[DatasetSpec]:
    specs = [
        DatasetSpec(
            "imagenet",
            factory="rbx_vlm.datasets:build_imagenet",
            provides={"attack_protocol"},  # rbx_attacks: RobustBench's ImageNet threat model and 5,000 images
            option_keys=_ROOT_KEYS | {"train", "val", "test", "ood", "ood_root", "dg"},
            required_keys={"root"},
            option_types=_TYPES,
            summary="ImageNet wnid trees (test = val); MOS OOD sets as ood:, ImageNet-V2/-Sketch/-A/-R as dg:",
        )
    ]
    for name, what in (
        ("imagenet-v2", "ImageNet-V2 matched-frequency: class folders 0..999 (class indices, not wnids)"),
        ("imagenet-sketch", "ImageNet-Sketch: sketch/<wnid>/ folders"),
        ("imagenet-a", "ImageNet-A: 200 wnid folders, predictions restricted to those 200 classes"),
        ("imagenet-r", "ImageNet-R: 200 wnid folders, predictions restricted to those 200 classes"),
    ):
        specs.append(
            DatasetSpec(
                name,
                factory=f"rbx_vlm.datasets:build_{name.replace('-', '_')}",
                option_keys=_ROOT_KEYS,
                required_keys={"root"},
                option_types={k: _TYPES[k] for k in _ROOT_KEYS},
                provides={"domain_shifts"},
                summary=f"{what}; stand-alone, subset id over the 1000 ImageNet classes",
            )
        )
    return specs


@hookimpl
def rbx_suites() -> list[SuiteSpec]:
    return [
        SuiteSpec(
            "dg",
            method_output="prediction",
            metrics=("accuracy",),
            headline=("accuracy",),
            subsets=("id", "dg/*"),
            dataset_requires={"domain_shifts"},
            summary="domain generalisation: top-1 accuracy on ImageNet and its shifted versions (V2, Sketch, A, R)",
        )
    ]
