"""The RobustBench protocol as data: per dataset type, the threat models and ε,
the samples and the preprocessing that make a run comparable with the
published leaderboard (RobustBench/robustbench ``robustbench/eval.py``
``benchmark``, ``robustbench/data.py``, the ``model_info`` JSON files, commit
78fcc9e48a07a861268f295a777b975f25155964):

* CIFAR-10: ℓ∞ ε = 8/255 and ℓ2 ε = 0.5; CIFAR-100: ℓ∞ ε = 8/255; both on the
  whole test set (10,000 images), preprocessing ``ToTensor`` only;
* ImageNet: ℓ∞ ε = 4/255 on the 5,000 validation images listed in
  ``robustbench/helper_files/imagenet_test_image_ids.txt`` (shipped here as
  ``protocol/imagenet_test_image_ids.txt``, same bytes), preprocessing
  ``Res256Crop224`` (Resize 256, CenterCrop 224, ToTensor), RobustBench's
  default (some published models use another; their ``model_info`` does not
  say which).

The built-in digits are not a RobustBench dataset; their ε is ours, measured on
the built-in CNN (``docs/tasks.md``, "Adversarial robustness").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rbx_attacks.threat import Budget

IMAGENET_IDS = Path(__file__).parent / "protocol" / "imagenet_test_image_ids.txt"
IMAGENET_IDS_SOURCE = "RobustBench/robustbench robustbench/helper_files/imagenet_test_image_ids.txt@78fcc9e48a07a861268f295a777b975f25155964"


@dataclass(frozen=True)
class Protocol:
    """How one dataset type is evaluated: ε per norm, the preprocessing that
    makes the [0, 1] image (None: the model's own transform, inverted), the
    file listing the evaluated sample ids (None: the whole ``id`` subset) and
    the RobustBench dataset name (None: not a RobustBench dataset)."""

    eps: dict[str, str]
    preprocessing: str | None = None
    sample_list: Path | None = None
    robustbench: str | None = None

    def budget(self, norm: str) -> Budget | None:
        return Budget.parse(norm, self.eps[norm]) if norm in self.eps else None


#: Dataset type (``type:`` in datasets.yaml, or the built-in dataset's name) → protocol.
PROTOCOLS: dict[str, Protocol] = {
    "cifar10": Protocol({"Linf": "8/255", "L2": "0.5"}, "ToTensor", robustbench="cifar10"),
    "cifar100": Protocol({"Linf": "8/255"}, "ToTensor", robustbench="cifar100"),
    "imagenet": Protocol({"Linf": "4/255"}, "Res256Crop224", IMAGENET_IDS, robustbench="imagenet"),
    # Ours, measured on the built-in CNN (docs/tasks.md): 8x8 grey digits.
    "embedded-digits": Protocol({"Linf": "0.1", "L2": "0.5"}),
}


def protocol_for(dataset_type: str | None) -> Protocol | None:
    return PROTOCOLS.get(dataset_type or "")


def sample_list(path: Path) -> list[str]:
    """The sample ids listed in ``path`` (one per line, blank lines ignored)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the protocol's sample list is missing; reinstall robustbench_x "
                                f"(the file is {IMAGENET_IDS_SOURCE})")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def select(sample_ids: list[str], wanted: list[str]) -> list[int]:
    """Indices of ``sample_ids`` listed in ``wanted``, in dataset order. An id
    matches a listed ``<wnid>/<file>`` when it is that path or ends with it
    (a dataset rooted one level higher, ``val/<wnid>/<file>``)."""
    listed = set(wanted)
    out = []
    for i, sid in enumerate(sample_ids):
        parts = sid.replace("\\", "/").split("/")
        if sid in listed or "/".join(parts[-2:]) in listed:
            out.append(i)
    return out
