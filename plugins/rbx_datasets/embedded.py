"""The embedded default benchmark, built only from data shipped inside installed
packages, so every suite runs on a fresh machine with no download.

* In-distribution: scikit-learn's handwritten digits (``load_digits``: 1,797
  8×8 images, UCI optdigits test set) of classes 0–5, split per class with a
  fixed seed into train 50 % / val 15 % / test 35 %.
* ``ood/digits-6to9`` (near-OOD): the held-out digit classes 6–9, same source
  and resolution (semantic shift only).
* ``ood/photos`` (far-OOD): 8×8 grayscale patches of scikit-learn's two sample
  photographs (``load_sample_images``: china, flower).
* ``ood/textures`` (far-OOD): 8×8 patches of scikit-image's brick, grass and
  gravel textures (``skimage.data``).

Shifted test sets for failure prediction and calibration, after FD-Shifts'
study types (Jaeger et al., "A Call to Reflect on Evaluation Practices for
Failure Detection in Image Classification", ICLR 2023, §3: i.i.d.,
covariate shift, new-class shift); the i.i.d. set is ``id``:

* ``shift/covariate``: the 383 ID test digits, each under Gaussian noise, blur
  and low contrast (:mod:`rbx_datasets.shifts`; 1,149 images, severity 1–3
  cycling along the test set, seeded with :data:`SHIFT_SEED`). Labels are the
  digits': a failure is a misclassification.
* ``shift/new-class``: the ID test digits together with the held-out digits
  6–9 (383 + 714 images). The held-out ones have label −1, a class the model
  does not know, so every one of them is a failure whatever it predicts; as in
  FD-Shifts' new-class studies the i.i.d. samples are mixed in, so that the
  failure ranking has correct predictions to rank against.

Patches are crops of side 16–64 px at seeded random positions, resized to 8×8
with bilinear filtering and stretched to the digits' intensity range, so that
the far-OOD sets are not trivially separable by brightness alone.

The splits do not depend on the run's seed: a seed changes the model and the
methods, never the data.
"""

from __future__ import annotations

import hashlib
from functools import cached_property

import numpy as np
from PIL import Image

from robustbench_x.api import Dataset, SampleSource

ID_CLASSES = (0, 1, 2, 3, 4, 5)
SPLIT_SEED = 20240607
PATCHES_PER_SET = 400
SHIFT_SEED = 20261207
VERSION = "embedded-digits-v1"


class ArraySource(SampleSource):
    """Samples held as a uint8 array (N, H, W) of grayscale images."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, ids: list[str]) -> None:
        self.images, self.labels, self.ids = images, labels, ids

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return Image.fromarray(self.images[i], mode="L"), int(self.labels[i]), self.ids[i]


def _digits_uint8() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images / 16.0 * 255.0).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def _patches(photos: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, 8, 8), dtype=np.uint8)
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(rng.integers(16, 65))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((8, 8), Image.BILINEAR)
        arr = np.asarray(crop, dtype=np.float64)
        lo, hi = arr.min(), arr.max()
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        out[i] = np.round(arr).astype(np.uint8)
    return out


def _shifted(test: ArraySource, new_class: ArraySource) -> dict[str, ArraySource]:
    from rbx_datasets.shifts import covariate_set

    images, meta = covariate_set(test.images, SHIFT_SEED)
    labels = np.asarray([test.labels[i] for _, _, i in meta])
    ids = [f"{kind}/{severity}/{test.ids[i]}" for kind, severity, i in meta]
    mixed = ArraySource(
        np.concatenate([test.images, new_class.images]),
        np.concatenate([test.labels, new_class.labels]),
        [*test.ids, *new_class.ids],
    )
    return {"shift/covariate": ArraySource(images, labels, ids), "shift/new-class": mixed}


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


class EmbeddedDigits(Dataset):
    name = "embedded-digits"
    task = "classification"
    classes = [str(c) for c in ID_CLASSES]
    provides = frozenset({"train_split", "val_split", "ood_subsets"})

    def __init__(self) -> None:
        self._fingerprints: dict[str, str] = {}

    @cached_property
    def _subsets(self) -> dict[str, ArraySource]:
        rng = np.random.default_rng(SPLIT_SEED)
        images, labels = _digits_uint8()
        index = np.arange(len(labels))
        parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "id": []}
        for c in ID_CLASSES:
            members = rng.permutation(index[labels == c])
            n_train, n_val = int(0.5 * len(members)), int(0.15 * len(members))
            parts["train"].append(members[:n_train])
            parts["val"].append(members[n_train : n_train + n_val])
            parts["id"].append(members[n_train + n_val :])
        subsets: dict[str, ArraySource] = {}
        for split, chunks in parts.items():
            idx = np.sort(np.concatenate(chunks))
            subsets[split] = ArraySource(images[idx], labels[idx], [f"digits/{i}" for i in idx])
        near = index[~np.isin(labels, ID_CLASSES)]
        subsets["ood/digits-6to9"] = ArraySource(images[near], np.full(len(near), -1), [f"digits/{i}" for i in near])

        from sklearn.datasets import load_sample_images
        from skimage import data as skdata

        photos = [_gray(img) for img in load_sample_images().images]
        textures = [np.asarray(getattr(skdata, name)(), dtype=np.uint8) for name in ("brick", "grass", "gravel")]
        for name, pool in (("photos", photos), ("textures", textures)):
            patches = _patches(pool, PATCHES_PER_SET, rng)
            subsets[f"ood/{name}"] = ArraySource(patches, np.full(len(patches), -1), [f"{name}/{i}" for i in range(len(patches))])
        subsets.update(_shifted(subsets["id"], subsets["ood/digits-6to9"]))
        return subsets

    def subsets(self) -> list[str]:
        return list(self._subsets)

    def samples(self, subset: str) -> ArraySource:
        try:
            return self._subsets[subset]
        except KeyError:
            raise KeyError(f"embedded-digits has no subset {subset!r}; it has {sorted(self._subsets)}") from None

    def fingerprint(self, subset: str) -> str:
        if subset not in self._fingerprints:
            self._fingerprints[subset] = self._hash(subset)
        return self._fingerprints[subset]

    def _hash(self, subset: str) -> str:
        source = self.samples(subset)
        h = hashlib.sha256(VERSION.encode())
        h.update(subset.encode())
        h.update(np.ascontiguousarray(source.images).tobytes())
        h.update(np.ascontiguousarray(source.labels).astype(np.int64).tobytes())
        return h.hexdigest()[:16]


def build(name: str = "embedded-digits", options: dict | None = None, config_file: str | None = None) -> EmbeddedDigits:
    return EmbeddedDigits()
