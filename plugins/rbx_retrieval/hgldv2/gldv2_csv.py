"""Readers for the Google Landmarks v2 (v2.1) CSV files, exactly as distributed.

Layout (``docs/datasets.md#hgldv2``; cvdfoundation/google-landmark
README; tensorflow/models delf ``dataset_file_io.py``):

=================================  ==========================================
file                               columns
=================================  ==========================================
``train_clean.csv``                ``landmark_id, images`` (space-separated train ids)
``train_label_to_category.csv``    ``landmark_id, category`` (Commons category URL)
``index.csv``                      ``id``
``index_image_to_landmark.csv``    ``id, landmark_id``
``index_label_to_category.csv``    ``landmark_id, category``
``test.csv``                       ``id``
``retrieval_solution_v2.1.csv``    ``id, images, Usage``
=================================  ==========================================

Index landmark ids are a **different id space** from train landmark ids.

A retrieval-solution row is *ignored* if ``Usage == "Ignored"`` (the official
``ReadSolution``) **or** ``images == "None"`` (SupRank ``gldv2.py``);
otherwise ``Usage`` must be ``Public`` or ``Private`` (anything else raises,
as upstream). Image ids are 16 lower-case hex characters.

Every reader raises :class:`GLDv2FormatError` (a ``ValueError``) naming the
file, the column and the 1-based line (the header is line 1) on malformed
input. Files are read with every field as a string (no NaN/number guessing),
so ``"None"`` and ids survive verbatim.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "GLDv2FormatError",
    "FILES",
    "read_train_clean",
    "read_label_to_category",
    "read_id_list",
    "read_index_image_to_landmark",
    "read_retrieval_solution",
    "commons_title",
]

FILES = {
    "train_clean": "train_clean.csv",
    "train_label_to_category": "train_label_to_category.csv",
    "index": "index.csv",
    "index_image_to_landmark": "index_image_to_landmark.csv",
    "index_label_to_category": "index_label_to_category.csv",
    "test": "test.csv",
    "retrieval_solution": "retrieval_solution_v2.1.csv",
}

_ID = re.compile(r"[0-9a-f]{16}")
_ID_LIST = r"[0-9a-f]{16}( [0-9a-f]{16})*"
_INT = r"[0-9]+"
USAGES = ("Public", "Private", "Ignored")


class GLDv2FormatError(ValueError):
    """A GLDv2 CSV file is missing, or malformed; the message names file, column and line."""


def _read(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise GLDv2FormatError(f"{path}: file not found (expected the GLDv2 file {path.name} with columns {', '.join(columns)})")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise GLDv2FormatError(f"{path}: not a readable CSV file: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise GLDv2FormatError(f"{path}: empty file; expected a header with columns {', '.join(columns)}") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise GLDv2FormatError(
            f"{path}: missing column {missing[0]!r} (header has {', '.join(map(repr, df.columns))}; "
            f"expected {', '.join(columns)})"
        )
    return df


def _fail_rows(path: Path, column: str, df: pd.DataFrame, bad: np.ndarray, what: str) -> None:
    rows = np.flatnonzero(bad)
    if rows.size:
        r = int(rows[0])
        value = df[column].iloc[r]
        more = f" ({rows.size} bad rows in total)" if rows.size > 1 else ""
        raise GLDv2FormatError(f"{path}: column {column!r}, line {r + 2}: expected {what}, got {value!r}{more}")


def _check_int(path, df, column):
    _fail_rows(path, column, df, ~df[column].str.fullmatch(_INT).to_numpy(bool), "a non-negative integer")
    return df[column].astype(np.int64)


def _check_ids(path, df, column):
    _fail_rows(path, column, df, ~df[column].str.fullmatch(_ID.pattern).to_numpy(bool), "a 16-character hex image id")


def _check_unique(path, df, column, key):
    dup = key.duplicated().to_numpy()
    _fail_rows(path, column, df, dup, f"unique values ({column} repeated)")


def read_train_clean(path) -> pd.DataFrame:
    """``train_clean.csv`` exploded to one row per image: ``id, landmark_id`` in file order."""
    path = Path(path)
    df = _read(path, ("landmark_id", "images"))
    landmark = _check_int(path, df, "landmark_id")
    _check_unique(path, df, "landmark_id", landmark)
    _fail_rows(path, "images", df, ~df["images"].str.fullmatch(_ID_LIST).to_numpy(bool),
               "a space-separated list of 16-character hex image ids")
    images = df["images"].str.split(" ")
    out = pd.DataFrame({"landmark_id": landmark, "id": images}).explode("id", ignore_index=True)
    dup = out["id"].duplicated()
    if dup.any():
        first = out["id"][dup].iloc[0]
        raise GLDv2FormatError(f"{path}: column 'images': image id {first!r} is listed more than once")
    return out[["id", "landmark_id"]].astype({"id": str, "landmark_id": np.int64})


def read_label_to_category(path) -> pd.DataFrame:
    """``*_label_to_category.csv``: ``landmark_id, category, title`` where ``title`` is the
    Commons page title parsed from the URL (``None`` when the category is empty)."""
    path = Path(path)
    df = _read(path, ("landmark_id", "category"))
    landmark = _check_int(path, df, "landmark_id")
    _check_unique(path, df, "landmark_id", landmark)
    titles = []
    for i, url in enumerate(df["category"].tolist()):
        url = url.strip()
        if not url:
            titles.append(None)
            continue
        title = commons_title(url)
        if title is None:
            raise GLDv2FormatError(
                f"{path}: column 'category', line {i + 2}: expected a Wikimedia Commons URL like "
                f"'http://commons.wikimedia.org/wiki/Category:Name', got {url!r}"
            )
        titles.append(title)
    return pd.DataFrame(
        {
            "landmark_id": landmark,
            "category": pd.Series(df["category"].str.strip().tolist(), dtype=object),
            "title": pd.Series(titles, dtype=object),
        }
    )


def commons_title(url: str) -> str | None:
    """``http://commons.wikimedia.org/wiki/Category:Tour_Saint-Nicolas`` -> ``Category:Tour Saint-Nicolas``.

    Percent-decoding, ``_`` -> space (MediaWiki title form). ``None`` if the
    URL is not a ``/wiki/<title>`` page URL.
    """
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.path.startswith("/wiki/"):
        return None
    title = unquote(parts.path[len("/wiki/"):]).replace("_", " ").strip()
    title = re.sub(r"\s+", " ", title)
    return title or None


def read_id_list(path) -> pd.Series:
    """``index.csv`` / ``test.csv``: the ``id`` column (validated, unique), as strings."""
    path = Path(path)
    df = _read(path, ("id",))
    _check_ids(path, df, "id")
    _check_unique(path, df, "id", df["id"])
    return df["id"].astype(str).reset_index(drop=True)


def read_index_image_to_landmark(path) -> pd.DataFrame:
    """``index_image_to_landmark.csv``: ``id, landmark_id`` (index landmark id space)."""
    path = Path(path)
    df = _read(path, ("id", "landmark_id"))
    _check_ids(path, df, "id")
    _check_unique(path, df, "id", df["id"])
    landmark = _check_int(path, df, "landmark_id")
    return pd.DataFrame({"id": df["id"].astype(str), "landmark_id": landmark})


def read_retrieval_solution(path) -> pd.DataFrame:
    """``retrieval_solution_v2.1.csv``: ``id, images (list), usage, ignored, line``.

    ``ignored`` = ``Usage == "Ignored"`` or ``images == "None"``; non-ignored
    rows must list at least one valid index id.
    """
    path = Path(path)
    df = _read(path, ("id", "images", "Usage"))
    _check_ids(path, df, "id")
    _check_unique(path, df, "id", df["id"])
    usage = df["Usage"]
    _fail_rows(path, "Usage", df, ~usage.isin(USAGES).to_numpy(bool), "one of Public, Private, Ignored")
    ignored = (usage == "Ignored") | (df["images"] == "None")
    valid = df["images"].str.fullmatch(_ID_LIST).to_numpy(bool)
    _fail_rows(path, "images", df, ~(valid | ignored.to_numpy(bool)),
               "a space-separated list of 16-character hex index ids (or 'None' for an ignored query)")
    images = [s.split(" ") if not ign else [] for s, ign in zip(df["images"].tolist(), ignored.tolist())]
    return pd.DataFrame(
        {
            "id": df["id"].astype(str),
            "images": images,
            "usage": usage.astype(str),
            "ignored": ignored.to_numpy(bool),
            "line": np.arange(2, len(df) + 2),
        }
    )
