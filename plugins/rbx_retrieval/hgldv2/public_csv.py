"""The public H-GLDv2 hierarchy files (``docs/datasets.md#hgldv2``):
``train_label_to_hierarchical.csv`` and ``index_label_to_hierarchical.csv``,
columns ``landmark_id, category, supercategory, hierarchical_label,
natural_or_human_made``.

Meaning used here (SupRank reads internal files ``*_label_to_subcategory_with_clusters.csv``
with ``landmark_id, cluster, overall_cluster``; the mapping is [INFERRED] in
``docs/datasets.md#hgldv2``): ``supercategory`` = the Wikimedia sub-category mined for
the landmark (stored as ``instance_of``), ``hierarchical_label`` = the cluster
(level 1, our ``supercategory``), ``natural_or_human_made`` = level 2.

Validation (each failure raises :class:`~.gldv2_csv.GLDv2FormatError` naming
file, column and line):

* the five columns exist; ``landmark_id`` is a unique non-negative integer;
* levels are consistent: a row with ``natural_or_human_made`` has a
  ``hierarchical_label`` and vice versa, and every ``hierarchical_label`` has
  one ``natural_or_human_made`` value across both files (a tree);
* coverage: every landmark of the split (``train_clean.csv`` /
  ``index_image_to_landmark.csv``) has a row (``require_full_coverage=False``
  turns missing rows into "no hierarchy", counted in the manifest).

A row whose ``hierarchical_label`` is empty (or ``nan``) is a landmark without
a cluster (SupRank drops its images with ``remove_nan=True``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .gldv2_csv import GLDv2FormatError, _check_int, _check_unique, _read

__all__ = ["HIERARCHY_FILES", "read_hierarchical_csv", "check_consistency", "check_coverage"]

HIERARCHY_FILES = {"train": "train_label_to_hierarchical.csv", "index": "index_label_to_hierarchical.csv"}
COLUMNS = ("landmark_id", "category", "supercategory", "hierarchical_label", "natural_or_human_made")


def _clean(series: pd.Series) -> pd.Series:
    s = series.str.strip()
    return s.mask(s.str.lower().isin(["", "nan", "none", "null"]))


def read_hierarchical_csv(path) -> pd.DataFrame:
    """``landmark_id, category, instance_of, supercategory, natural_or_human_made, line``
    (missing values as ``None``)."""
    path = Path(path)
    df = _read(path, COLUMNS)
    landmark = _check_int(path, df, "landmark_id")
    _check_unique(path, df, "landmark_id", landmark)
    cluster = _clean(df["hierarchical_label"])
    top = _clean(df["natural_or_human_made"])
    for col, bad, other in (
        ("natural_or_human_made", cluster.notna() & top.isna(), "hierarchical_label"),
        ("hierarchical_label", cluster.isna() & top.notna(), "natural_or_human_made"),
    ):
        rows = np.flatnonzero(bad.to_numpy())
        if rows.size:
            r = int(rows[0])
            raise GLDv2FormatError(
                f"{path}: column {col!r}, line {r + 2}: empty while {other!r} is {df[other].iloc[r]!r} "
                f"(inconsistent levels; {rows.size} such rows)"
            )
    out = pd.DataFrame(
        {
            "landmark_id": landmark,
            "category": df["category"].str.strip(),
            "instance_of": _clean(df["supercategory"]),
            "supercategory": cluster,
            "natural_or_human_made": top,
            "line": np.arange(2, len(df) + 2),
        }
    )
    return out.astype(object).where(out.notna(), None).astype({"landmark_id": np.int64, "line": np.int64})


def check_consistency(tables: dict[str, tuple[Path, pd.DataFrame]]) -> dict[str, str]:
    """Every cluster has one top-level value across all files; returns ``cluster -> top level``."""
    seen: dict[str, tuple[str, Path, int]] = {}
    for _, (path, df) in tables.items():
        rows = df[df["supercategory"].notna()]
        for cluster, top, line in zip(rows["supercategory"], rows["natural_or_human_made"], rows["line"]):
            if cluster in seen and seen[cluster][0] != top:
                first = seen[cluster]
                raise GLDv2FormatError(
                    f"{path}: column 'natural_or_human_made', line {line}: hierarchical_label {cluster!r} is {top!r} "
                    f"but {first[1]} line {first[2]} says {first[0]!r} (a cluster must have one parent)"
                )
            seen.setdefault(cluster, (top, path, int(line)))
    return {c: v[0] for c, v in seen.items()}


def check_coverage(path: Path, df: pd.DataFrame, landmarks: np.ndarray, split_file: str, *, required: bool) -> int:
    """Landmarks of the split without a row; raises if ``required``; returns how many."""
    missing = np.setdiff1d(np.unique(landmarks), df["landmark_id"].to_numpy())
    if missing.size and required:
        shown = ", ".join(str(x) for x in missing[:5])
        raise GLDv2FormatError(
            f"{path}: column 'landmark_id': {missing.size} landmark(s) of {split_file} have no row (e.g. {shown}); "
            "pass require_full_coverage=False to treat them as landmarks without a hierarchy"
        )
    return int(missing.size)
