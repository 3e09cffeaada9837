"""The embedded digits under corruptions (``embedded-digits-c``) and
perturbation sequences (``embedded-digits-p``): built-in, no download.

Both start from the embedded default's in-distribution test digits
(:class:`rbx_datasets.embedded.EmbeddedDigits`, classes 0–5, 8×8 grayscale)
and put them through one pipeline so that the corruptions have pixels to act
on:

1. upsample 8×8 → 32×32 with nearest-neighbour (uint8), so that the model's own
   bilinear resize back to 8×8 recovers the digit (bilinear upsampling blurs it:
   the clean error of the built-in CNN rose from 1 % to 17 %);
2. replicate to 3 channels, float in [0, 1];
3. corrupt with :func:`rbx_robustness.engine.corrupt` (the published 224-px
   ImageNet-C parameters, applied unchanged at 32 px: the blurs, the
   geometric shifts and the weather layers are therefore strong), or build a
   perturbation sequence with :func:`rbx_robustness.engine.sequence_batch`
   (frames at 32 px, no crop);
4. quantise to uint8 as the published generators did (truncation; rounding for
   pixelate / JPEG and for the sequences' frames, as ``build_c`` / ``build_p``)
   and convert back to grayscale with Pillow's ``L`` conversion
   (ITU-R 601-2 luma).

The images are stored at 32×32; the built-in CNN resizes them to 8×8 itself
(bilinear). The **clean ``id`` subset goes through the same pipeline without
step 3**, so errors and clean-vs-corrupted detection compare like with like.
The 8 → 32 → 8 round trip blurs the digits: the built-in CNN's accuracy is
about 83 % on the pipeline's clean ``id`` against 99 % on the raw 8×8 test
digits (seed 0).

``train`` / ``val`` are the embedded default's own sources, untouched, so the
built-in CNN is the same network as on ``embedded-digits`` (its shipped weights
are keyed by ``fingerprint("train")``, which is the same), and the label space
is the same (``embedded-digits-0to5``).

``embedded-digits-c``
    ``id`` and ``c/<corruption>/<severity>`` for the 15 ImageNet-C test
    corruptions × severities 1..5 (75 subsets), each holding
    :data:`C_IMAGES` of the 383 ID test digits (evenly spaced in test-set
    order; a subsample that keeps a corruption run of every prediction method
    within about a minute on 2 CPU cores). Sample ids ``digits/<i>`` (``id``)
    and ``<corruption>/<severity>/digits/<i>``, ``i`` the index in
    scikit-learn's digits. Corruption ``c`` at severity ``s`` is seeded from
    ``seed_for("embedded-digits-c", c, s)`` (all images drawn at once).

``embedded-digits-p``
    ``p/<perturbation>`` for the 10 ImageNet-P test perturbations, each
    :data:`P_SEQUENCES` sequences (one per ID test digit, evenly spaced) of
    31 frames (translate 41), sequence-major, sample id
    ``<perturbation>/digits/<i>#<frame>``, as the ImageNet-P reader; ``id``
    holds the sequences' clean digits (the pipeline without step 3).
    Perturbation ``p`` is seeded from ``seed_for("embedded-digits-p", p)``.

Cache: the generated uint8 arrays are written once per machine to
``$RBX_CACHE_DIR/embedded-c/<key>.npz`` (``embedded-p/`` for the sequences),
``np.savez`` to a temporary file then ``os.replace`` (atomic; a file lock
keeps concurrent processes from generating twice), and read back with
``allow_pickle=False``. ``<key>`` hashes this module's recipe, the source
of the engine (:func:`rbx_robustness.engine.build.engine_digest`), the frost
photographs (:func:`rbx_robustness.engine.frost_source`: the photographs of
``torch-uncertainty-assets`` by default) and the source digits, so a changed
engine or other frost photographs regenerate, and the subsets' fingerprints
(hashes of the stored pixels) change with them. Generation takes a few
seconds (fog dominates).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from rbx_datasets.embedded import ArraySource, EmbeddedDigits
from robustbench_x.api import Dataset, atomic_write
from rbx_robustness.tables import IMAGENET_C_TEST, IMAGENET_P_TEST, SEVERITIES

__all__ = [
    "EmbeddedDigitsC",
    "EmbeddedDigitsP",
    "build_c",
    "build_p",
    "C_IMAGES",
    "P_SEQUENCES",
    "SIZE",
    "pipeline_clean",
    "to_gray",
]

VERSION_C = "embedded-digits-c-v1"
VERSION_P = "embedded-digits-p-v1"
#: Side of the images the engine sees (and that are stored).
SIZE = 32
#: ID test digits per corrupted subset (of 383).
C_IMAGES = 128
#: Sequences per perturbation (one per digit).
P_SEQUENCES = 30


# --------------------------------------------------------------------------- pipeline


def pipeline_clean(images: np.ndarray) -> np.ndarray:
    """(N, 8, 8) uint8 -> (N, SIZE, SIZE) uint8: nearest-neighbour upsampling (step 1)."""
    return np.stack([np.asarray(Image.fromarray(im, mode="L").resize((SIZE, SIZE), Image.NEAREST)) for im in images])


def _to_float3(gray: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(gray)).float().div_(255.0)[:, None].expand(-1, 3, -1, -1).contiguous()


def to_gray(x, mode: str = "floor") -> np.ndarray:
    """(..., 3, H, W) float in [0, 1] -> (..., H, W) uint8: quantise like the published
    generators (``floor``: ``np.uint8(x * 255)``; ``round``), then Pillow's ``L``
    conversion ``(19595 R + 38470 G + 7471 B + 2**15) >> 16``."""
    import torch

    v = x.clamp(0.0, 1.0) * 255.0
    v = torch.round(v) if mode == "round" else torch.floor(v + 1e-4)
    rgb = v.to(torch.int64)
    r, g, b = rgb.unbind(dim=-3)
    return ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16).to(torch.uint8).numpy()


def _spaced(n_total: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_total - 1, num=min(k, n_total)).round().astype(np.int64))


def _cache_key(version: str, recipe: dict, source: ArraySource) -> str:
    h = hashlib.sha256(version.encode())
    h.update(json.dumps(recipe, sort_keys=True).encode())
    from rbx_robustness.engine import frost_source
    from rbx_robustness.engine.build import engine_digest

    h.update(engine_digest().encode())
    if "corruptions" in recipe:  # the frost photographs are part of what generated the data
        h.update(frost_source().encode())
    h.update(np.ascontiguousarray(source.images).tobytes())
    h.update(np.asarray(source.labels, dtype=np.int64).tobytes())
    h.update("\n".join(source.ids).encode())
    return h.hexdigest()[:20]


def _load_or_generate(path: Path, generate, expected: set[str]) -> dict[str, np.ndarray]:
    """Read ``path`` (np.load, no pickles); otherwise generate and write it atomically."""
    from filelock import FileLock

    def read() -> dict[str, np.ndarray] | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):
            return None  # damaged: regenerate
        return arrays if set(arrays) == expected else None

    arrays = read()
    if arrays is not None:
        return arrays
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        arrays = read()
        if arrays is not None:
            return arrays
        arrays = generate()
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
    return arrays


def _hash(version: str, subset: str, source: ArraySource) -> str:
    h = hashlib.sha256(version.encode())
    h.update(subset.encode())
    h.update(np.ascontiguousarray(source.images).tobytes())
    h.update(np.asarray(source.labels, dtype=np.int64).tobytes())
    h.update("\n".join(source.ids).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- datasets


class _Embedded(Dataset):
    task = "robustness"  # pairs with the robustness suites only (rbx_robustness.TASK)
    classes = list(EmbeddedDigits.classes)
    version = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self._base = EmbeddedDigits()
        self._fingerprints: dict[str, str] = {}

    # train / val: the embedded default's own sources and fingerprints
    def subsets(self) -> list[str]:
        return ["train", "val", "id", *self._generated_names()]

    def samples(self, subset: str) -> ArraySource:
        if subset in ("train", "val"):
            return self._base.samples(subset)
        try:
            return self._sources[subset]
        except KeyError:
            raise KeyError(f"{self.name} has no subset {subset!r}; it has {self.subsets()}") from None

    def fingerprint(self, subset: str) -> str:
        if subset in ("train", "val"):
            return self._base.fingerprint(subset)
        if subset not in self._fingerprints:
            self._fingerprints[subset] = _hash(self.version, subset, self.samples(subset))
        return self._fingerprints[subset]

    def _generated_names(self) -> list[str]:
        raise NotImplementedError

    @cached_property
    def _sources(self) -> dict[str, ArraySource]:
        raise NotImplementedError

    def _source_digits(self, k: int) -> ArraySource:
        test = self._base.samples("id")
        keep = _spaced(len(test), k)
        return ArraySource(test.images[keep], np.asarray(test.labels)[keep], [test.ids[i] for i in keep])

    def cache_path(self) -> Path:
        raise NotImplementedError


class EmbeddedDigitsC(_Embedded):
    """``embedded-digits-c`` (module docstring)."""

    provides = frozenset({"train_split", "val_split", "corruptions"})
    robustness_benchmark = "embedded-digits-c"
    version = VERSION_C
    corruptions = IMAGENET_C_TEST
    severities = SEVERITIES

    def __init__(self, name: str = "embedded-digits-c", n_images: int = C_IMAGES) -> None:
        super().__init__(name)
        self.n_images = int(n_images)

    def _generated_names(self) -> list[str]:
        return [f"c/{c}/{s}" for c in self.corruptions for s in self.severities]

    def _recipe(self) -> dict:
        return {"size": SIZE, "upsample": "pil-nearest", "images": self.n_images, "corruptions": list(self.corruptions), "severities": list(self.severities)}

    def cache_path(self) -> Path:
        from robustbench_x.api import cache_root

        return cache_root() / "embedded-c" / f"{_cache_key(VERSION_C, self._recipe(), self._source_digits(self.n_images))}.npz"

    def _generate(self) -> dict[str, np.ndarray]:
        import torch

        from rbx_robustness.engine import CORRUPTIONS, corrupt
        from rbx_robustness.engine.build import seed_for

        digits = self._source_digits(self.n_images)
        clean = pipeline_clean(digits.images)
        x = _to_float3(clean)
        arrays = {"id": clean, "labels": np.asarray(digits.labels, dtype=np.int64), "index": np.array([int(i.split("/")[-1]) for i in digits.ids])}
        for c in self.corruptions:
            out = np.empty((len(self.severities), len(clean), SIZE, SIZE), dtype=np.uint8)
            for k, s in enumerate(self.severities):
                g = torch.Generator().manual_seed(seed_for("embedded-digits-c", c, int(s)))
                out[k] = to_gray(corrupt(x, c, int(s), g), CORRUPTIONS[c].quantize)
            arrays[c] = out
        return arrays

    @cached_property
    def _sources(self) -> dict[str, ArraySource]:
        arrays = _load_or_generate(self.cache_path(), self._generate, {"id", "labels", "index", *self.corruptions})
        labels, index = arrays["labels"], arrays["index"]
        sources = {"id": ArraySource(arrays["id"], labels, [f"digits/{i}" for i in index])}
        for c in self.corruptions:
            for k, s in enumerate(self.severities):
                sources[f"c/{c}/{s}"] = ArraySource(arrays[c][k], labels, [f"{c}/{s}/digits/{i}" for i in index])
        return sources


class EmbeddedDigitsP(_Embedded):
    """``embedded-digits-p`` (module docstring)."""

    provides = frozenset({"train_split", "val_split", "perturbations"})
    robustness_benchmark = "embedded-digits-p"
    version = VERSION_P
    perturbations = IMAGENET_P_TEST

    def __init__(self, name: str = "embedded-digits-p", n_sequences: int = P_SEQUENCES) -> None:
        super().__init__(name)
        self.n_sequences = int(n_sequences)

    def _generated_names(self) -> list[str]:
        return [f"p/{p}" for p in self.perturbations]

    def _recipe(self) -> dict:
        return {"size": SIZE, "upsample": "pil-nearest", "sequences": self.n_sequences, "perturbations": list(self.perturbations), "difficulty": 1}

    def cache_path(self) -> Path:
        from robustbench_x.api import cache_root

        return cache_root() / "embedded-p" / f"{_cache_key(VERSION_P, self._recipe(), self._source_digits(self.n_sequences))}.npz"

    def _generate(self) -> dict[str, np.ndarray]:
        import torch

        from rbx_robustness.engine import sequence_batch
        from rbx_robustness.engine.build import seed_for

        digits = self._source_digits(self.n_sequences)
        clean = pipeline_clean(digits.images)
        x = _to_float3(clean)
        arrays = {"id": clean, "labels": np.asarray(digits.labels, dtype=np.int64), "index": np.array([int(i.split("/")[-1]) for i in digits.ids])}
        for p in self.perturbations:
            g = torch.Generator().manual_seed(seed_for("embedded-digits-p", p))
            arrays[p] = to_gray(sequence_batch(x, p, g, crop=None, difficulty=1), "round")  # (m, T, SIZE, SIZE)
        return arrays

    @cached_property
    def _sources(self) -> dict[str, ArraySource]:
        arrays = _load_or_generate(self.cache_path(), self._generate, {"id", "labels", "index", *self.perturbations})
        labels, index = arrays["labels"], arrays["index"]
        sources = {"id": ArraySource(arrays["id"], labels, [f"digits/{i}" for i in index])}
        for p in self.perturbations:
            frames = arrays[p]
            m, t = frames.shape[:2]
            ids = [f"{p}/digits/{i}#{j}" for i in index for j in range(t)]
            sources[f"p/{p}"] = ArraySource(frames.reshape(m * t, SIZE, SIZE), np.repeat(labels, t), ids)
        return sources

    def sequence_length(self, perturbation: str) -> int:
        return 41 if perturbation == "translate" else 31


def build_c(name: str = "embedded-digits-c", options: dict | None = None, config_file: str | None = None) -> EmbeddedDigitsC:
    return EmbeddedDigitsC()


def build_p(name: str = "embedded-digits-p", options: dict | None = None, config_file: str | None = None) -> EmbeddedDigitsP:
    return EmbeddedDigitsP()
