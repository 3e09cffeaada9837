"""Group Wikidata "instance of" labels into super-categories.

**This differs from the original pipeline** (``docs/datasets.md#hgldv2``): the
released SupRank code maps Wikimedia sub-categories to clusters with a manually
curated CSV and fills the gaps with zero-shot CLIP (ViT-L-14,
``laion2b_s32b_b82k``) plus a per-landmark majority vote; the paper's Wikidata
scraping + CLIP text-embedding K-means is not released. Here the embedding is
deterministic and offline, so a build is reproducible without a GPU or model
weights:

1. the distinct labels are sorted (input order never depends on fetch order);
2. embedding = TF-IDF of character n-grams (``analyzer="char_wb"``,
   ``ngram_range=(3, 5)``, ``sublinear_tf=True``) -> ``TruncatedSVD``
   (``n_components = min(64, n_labels - 1, n_features - 1)``,
   ``random_state=seed``) -> L2 normalisation (so K-means ~ cosine);
3. ``KMeans(n_clusters=min(n_superclasses, n_labels), n_init=10,
   random_state=seed)`` on the labels, unweighted (each distinct concept
   counts once);
4. a cluster is named after its most frequent member label (number of
   landmarks carrying it; ties: alphabetical);
5. the **mapping file** overrides: a label it lists goes to the
   super-category it names (a new name, or an existing cluster name, which
   merges); clusters are then renamed from their remaining members;
6. super-category ids are ``0..K-1`` in sorted name order (SupRank's
   ``enumerate(sorted(unique))`` convention).

Character n-grams group labels by spelling ("church", "parish church",
"catholic church") rather than meaning ("mosque" and "church" fall apart
unless a mapping file joins them): edit the mapping file to fix a cluster.

Mapping file (YAML ``.yaml``/``.yml`` or CSV ``.csv``)::

    # YAML: super-category name -> list of "instance of" labels
    supercategories:
      religious building: [church, mosque, cathedral, parish church]
    natural_or_human_made:           # optional, per super-category
      religious building: human-made

    # CSV: one row per label; the third column is optional
    instance_of,supercategory,natural_or_human_made
    mosque,religious building,human-made

Labels are matched case-insensitively, with whitespace collapsed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .keywords import is_natural

__all__ = ["MappingFile", "load_mapping", "cluster_labels", "embed_labels", "natural_levels", "EMBEDDING", "LEVEL_NAMES"]

EMBEDDING = {
    "method": "tfidf-char-ngrams+truncated-svd+kmeans",
    "tfidf": {"analyzer": "char_wb", "ngram_range": [3, 5], "sublinear_tf": True, "lowercase": True},
    "svd": {"n_components_max": 64, "algorithm": "randomized"},
    "kmeans": {"n_init": 10, "weighted": False},
    "differs_from_original": "original: curated Wikimedia sub-category -> cluster CSV + zero-shot CLIP ViT-L-14 (docs/datasets.md#hgldv2)",
}
LEVEL_NAMES = ("human-made", "natural")


def _norm(label: str) -> str:
    return re.sub(r"\s+", " ", str(label)).strip().casefold()


@dataclass
class MappingFile:
    """Overrides read from the user-editable mapping file."""

    supercategory_of: dict[str, str] = field(default_factory=dict)  # normalised label -> name
    natural_of: dict[str, str] = field(default_factory=dict)  # super-category name -> level name
    path: str | None = None


def _level(value, where: str) -> str:
    v = str(value).strip().lower().replace("_", "-")
    if v in ("human made", "humanmade"):
        v = "human-made"
    if v not in LEVEL_NAMES:
        raise ValueError(f"{where}: natural_or_human_made must be 'natural' or 'human-made', got {value!r}")
    return v


def load_mapping(path) -> MappingFile:
    """Read a YAML or CSV mapping file (format in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: mapping file not found")
    out = MappingFile(path=str(path))

    def add(label, name, where):
        key = _norm(label)
        name = re.sub(r"\s+", " ", str(name)).strip()
        if not key or not name:
            raise ValueError(f"{where}: empty label or super-category name")
        if key in out.supercategory_of and out.supercategory_of[key] != name:
            raise ValueError(
                f"{where}: label {label!r} is mapped to both {out.supercategory_of[key]!r} and {name!r}"
            )
        out.supercategory_of[key] = name

    def set_level(name, value, where):
        level = _level(value, where)
        name = re.sub(r"\s+", " ", str(name)).strip()
        if name in out.natural_of and out.natural_of[name] != level:
            raise ValueError(f"{where}: super-category {name!r} is both {out.natural_of[name]!r} and {level!r}")
        out.natural_of[name] = level

    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: invalid YAML: {exc}") from exc
        if not isinstance(data, dict) or not set(data) <= {"supercategories", "natural_or_human_made"}:
            raise ValueError(f"{path}: expected top-level keys 'supercategories' and/or 'natural_or_human_made'")
        sup = data.get("supercategories") or {}
        if not isinstance(sup, dict):
            raise ValueError(f"{path}: key 'supercategories' must map a super-category name to a list of labels")
        for name, labels in sup.items():
            if isinstance(labels, str) or not isinstance(labels, list):
                raise ValueError(f"{path}: key 'supercategories.{name}' must be a list of labels")
            for label in labels:
                add(label, name, f"{path}: key 'supercategories.{name}'")
        nat = data.get("natural_or_human_made") or {}
        if not isinstance(nat, dict):
            raise ValueError(f"{path}: key 'natural_or_human_made' must map a super-category name to natural/human-made")
        for name, value in nat.items():
            set_level(name, value, f"{path}: key 'natural_or_human_made.{name}'")
    elif path.suffix.lower() == ".csv":
        import pandas as pd

        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        for col in ("instance_of", "supercategory"):
            if col not in df.columns:
                raise ValueError(f"{path}: missing column {col!r} (expected instance_of, supercategory[, natural_or_human_made])")
        for i, row in enumerate(df.to_dict("records")):
            where = f"{path}: line {i + 2}"
            add(row["instance_of"], row["supercategory"], where)
            if row.get("natural_or_human_made", "").strip():
                set_level(row["supercategory"], row["natural_or_human_made"], where + ", column 'natural_or_human_made'")
    else:
        raise ValueError(f"{path}: mapping file must be .yaml, .yml or .csv")
    return out


def embed_labels(labels: list[str], seed: int) -> np.ndarray:
    """Deterministic offline text embedding of ``labels`` (rows L2-normalised)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    cfg = EMBEDDING["tfidf"]
    x = TfidfVectorizer(
        analyzer=cfg["analyzer"], ngram_range=tuple(cfg["ngram_range"]), sublinear_tf=cfg["sublinear_tf"],
        lowercase=cfg["lowercase"], dtype=np.float64,
    ).fit_transform(labels)
    n_comp = min(EMBEDDING["svd"]["n_components_max"], len(labels) - 1, x.shape[1] - 1)
    if n_comp >= 1:
        z = TruncatedSVD(n_components=n_comp, algorithm="randomized", random_state=seed).fit_transform(x)
    else:
        z = x.toarray()
    return normalize(z)


def _name(members: Mapping[str, int]) -> str:
    return min(members, key=lambda label: (-members[label], label))


def cluster_labels(
    label_weights: Mapping[str, int], n_superclasses: int, seed: int, mapping: MappingFile | None = None
) -> dict[str, str]:
    """``label -> super-category name`` for every label (module docstring, steps 1-5).

    ``label_weights``: number of landmarks carrying each label (naming only).
    """
    from sklearn.cluster import KMeans

    if n_superclasses < 1:
        raise ValueError(f"n_superclasses must be >= 1, got {n_superclasses}")
    labels = sorted(label_weights)
    if not labels:
        return {}
    k = min(int(n_superclasses), len(labels))
    if k == len(labels):
        assignment = list(range(len(labels)))
    else:
        z = embed_labels(labels, seed)
        assignment = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(z).tolist()
    overrides = mapping.supercategory_of if mapping else {}
    clusters: dict[int, dict[str, int]] = defaultdict(dict)
    result: dict[str, str] = {}
    for label, c in zip(labels, assignment):
        forced = overrides.get(_norm(label))
        if forced is not None:
            result[label] = forced
        else:
            clusters[c][label] = int(label_weights[label])
    for members in clusters.values():
        name = _name(members)
        for label in members:
            result[label] = name
    return result


def natural_levels(
    members: Mapping[str, Mapping[str, int]], mapping: MappingFile | None = None
) -> dict[str, str]:
    """``super-category -> "natural" | "human-made"``: strict landmark-weighted
    majority of :func:`~.keywords.is_natural` over its member labels, unless the
    mapping file says otherwise."""
    out = {}
    overrides = mapping.natural_of if mapping else {}
    for name, labels in members.items():
        if name in overrides:
            out[name] = overrides[name]
            continue
        nat = sum(w for label, w in labels.items() if is_natural(label))
        total = sum(labels.values())
        out[name] = "natural" if 2 * nat > total else "human-made"
    return out
