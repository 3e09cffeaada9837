"""``build_hgldv2``: the H-GLDv2 hierarchy files from the GLDv2 CSVs.

Outputs in ``out_dir`` (every file written atomically, ``manifest.json`` last,
so its presence means the build completed):

* ``train.parquet`` -- one row per ``train_clean.csv`` image, in file order;
* ``index.parquet`` -- one row per ``index.csv`` image, in file order
  (``landmark_id`` from ``index_image_to_landmark.csv``);
* ``query.parquet`` -- one row per non-ignored ``retrieval_solution_v2.1.csv``
  query, in file order, labelled with the landmark of its **first** listed
  index image (SupRank ``gldv2.py``), plus its ``usage`` (Public/Private);
* ``landmarks.parquet`` -- one row per (split, landmark): Commons title,
  Wikidata item, every "instance of" label, the chosen one, resolution status;
* ``manifest.json`` -- parameters, input and output sha256, coverage counts
  (landmarks resolved / unresolved by reason, per super-category), the
  super-category table and network statistics.

Image-table columns: ``id`` (string), ``landmark_id`` (int64; level 0),
[``usage``], ``instance_of`` (string: the landmark's "instance of" label, the
public files' ``supercategory`` column), ``supercategory_id`` (int32; level 1)
+ ``supercategory`` (name), ``natural_or_human_made_id`` (int8; level 2) +
``natural_or_human_made``. Ids are positions in the sorted names, shared by
all splits (``human-made`` = 0, ``natural`` = 1 when built afresh). A landmark
without a hierarchy has nulls in the last five columns (SupRank's
``remove_nan=True`` drops those rows; :func:`load_hgldv2_labels` does too).
Train and index landmark ids are different id spaces (GLDv2 README).

The Parquet files depend only on the inputs, the cache content, the mapping
file, ``n_superclasses`` and ``seed`` (plus library versions): an
``offline=True`` rerun from a complete cache reproduces them byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import gldv2_csv as gcsv
from .cache import JsonCache, atomic_write_bytes
from .clustering import EMBEDDING, cluster_labels, load_mapping, natural_levels
from .keywords import KEYWORDS_VERSION
from .public_csv import HIERARCHY_FILES, check_consistency, check_coverage, read_hierarchical_csv
from .wikimedia import WIKIMEDIA_CATEGORY, ApiClient, WikimediaResolver, load_dump

__all__ = ["build_hgldv2", "load_hgldv2_labels", "MANIFEST_FORMAT", "SCHEMA_VERSION"]

MANIFEST_FORMAT = "rbx-hgldv2-manifest/1"
SCHEMA_VERSION = "hgldv2/1"
_ILLEGAL_TITLE = re.compile(r"[#<>\[\]|{}\x00-\x1f\x7f]")
HIER_COLUMNS = ("instance_of", "supercategory", "natural_or_human_made")


def _obj(values) -> pd.Series:
    """An object column that keeps ``None`` (pandas >= 3 would infer ``str`` with NaN)."""
    return pd.Series(list(values), dtype=object)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- GLDv2 inputs


def _read_inputs(root: Path, need_categories: bool) -> tuple[dict[str, Any], dict[str, Path]]:
    paths = {k: root / v for k, v in gcsv.FILES.items()}
    if not need_categories:
        paths.pop("train_label_to_category")
        paths.pop("index_label_to_category")
    data: dict[str, Any] = {
        "train": gcsv.read_train_clean(paths["train_clean"]),
        "index_ids": gcsv.read_id_list(paths["index"]),
        "index_map": gcsv.read_index_image_to_landmark(paths["index_image_to_landmark"]),
        "test_ids": gcsv.read_id_list(paths["test"]),
        "solution": gcsv.read_retrieval_solution(paths["retrieval_solution"]),
    }
    if need_categories:
        data["train_cat"] = gcsv.read_label_to_category(paths["train_label_to_category"])
        data["index_cat"] = gcsv.read_label_to_category(paths["index_label_to_category"])
    sol = data["solution"]
    unknown = ~sol["id"].isin(set(data["test_ids"]))
    if unknown.any():
        r = int(np.flatnonzero(unknown.to_numpy())[0])
        raise gcsv.GLDv2FormatError(
            f"{paths['retrieval_solution']}: column 'id', line {sol['line'].iloc[r]}: "
            f"test image {sol['id'].iloc[r]!r} is not in {paths['test'].name}"
        )
    landmark_of = dict(zip(data["index_map"]["id"], data["index_map"]["landmark_id"]))
    kept = sol[~sol["ignored"]]
    q_landmarks, multi = [], 0
    for images, line in zip(kept["images"], kept["line"]):
        missing = [i for i in images if i not in landmark_of]
        if missing:
            raise gcsv.GLDv2FormatError(
                f"{paths['retrieval_solution']}: column 'images', line {line}: index image {missing[0]!r} "
                f"is not in {paths['index_image_to_landmark'].name}"
            )
        q_landmarks.append(landmark_of[images[0]])
        multi += len({landmark_of[i] for i in images}) > 1
    data["query"] = pd.DataFrame(
        {"id": kept["id"].to_numpy(), "landmark_id": np.asarray(q_landmarks, dtype=np.int64), "usage": kept["usage"].to_numpy()}
    )
    data["query_stats"] = {
        "solution_rows": int(len(sol)),
        "ignored": int(sol["ignored"].sum()),
        "queries": int(len(kept)),
        "public": int((kept["usage"] == "Public").sum()),
        "private": int((kept["usage"] == "Private").sum()),
        "listing_several_landmarks": int(multi),
    }
    index_ids = set(data["index_ids"])
    data["index_stats"] = {
        "index_images_without_landmark": int((~data["index_ids"].isin(set(landmark_of))).sum()),
        "landmark_rows_not_in_index_csv": int((~data["index_map"]["id"].isin(index_ids)).sum()),
    }
    return data, paths


# --------------------------------------------------------------------------- hierarchy: public CSVs


def _from_public_csv(hier_dir: Path, data, require_full_coverage: bool, log) -> tuple[dict[str, pd.DataFrame], dict[str, Path]]:
    tables, paths = {}, {}
    for split, name in HIERARCHY_FILES.items():
        path = hier_dir / name
        paths[f"{split}_label_to_hierarchical"] = path
        tables[split] = (path, read_hierarchical_csv(path))
    check_consistency(tables)
    split_landmarks = {"train": data["train"]["landmark_id"].to_numpy(), "index": data["index_map"]["landmark_id"].to_numpy()}
    split_files = {"train": gcsv.FILES["train_clean"], "index": gcsv.FILES["index_image_to_landmark"]}
    out = {}
    for split, (path, df) in tables.items():
        n_missing = check_coverage(path, df, split_landmarks[split], split_files[split], required=require_full_coverage)
        if n_missing:
            log(f"hgldv2: {n_missing} {split} landmark(s) have no row in {path.name}")
        lm = pd.DataFrame({"landmark_id": np.unique(split_landmarks[split])}).merge(
            df.drop(columns=["line"]), on="landmark_id", how="left"
        )
        has = lm["supercategory"].notna()
        no_row = ~lm["landmark_id"].isin(set(df["landmark_id"]))
        status = np.where(has, "public_csv", np.where(no_row, "no_row_in_hierarchy_csv", "no_hierarchical_label"))

        def strings(col, mask=None):
            vals = lm[col].tolist()
            mask = [True] * len(vals) if mask is None else mask
            return _obj(v if isinstance(v, str) and m else None for v, m in zip(vals, mask))

        n = len(lm)
        out[split] = pd.DataFrame(
            {
                "landmark_id": lm["landmark_id"].astype(np.int64).to_numpy(),
                "category": strings("category"),
                "commons_title": _obj([None] * n),
                "wikidata_item": _obj([None] * n),
                "instance_of_labels": _obj([x] if isinstance(x, str) else [] for x in lm["instance_of"].tolist()),
                "instance_of": strings("instance_of", has.tolist()),
                "supercategory": strings("supercategory"),
                "natural_or_human_made": strings("natural_or_human_made"),
                "status": _obj(status.tolist()),
            }
        )
    return out, paths


# --------------------------------------------------------------------------- hierarchy: Wikidata


def _resolve_landmarks(cats: dict[str, pd.DataFrame], resolver: WikimediaResolver, log) -> dict[str, pd.DataFrame]:
    titles = sorted({t for df in cats.values() for t in df["title"] if t and not _ILLEGAL_TITLE.search(t)})
    log(f"hgldv2: resolving {len(titles)} Commons categories")
    commons = resolver.resolve("commons", titles)
    items = {c["wikibase_item"] for c in commons.values() if c and c.get("wikibase_item")}
    log(f"hgldv2: fetching {len(items)} Wikidata items")
    entities = resolver.resolve("entity", items)
    topics = {
        e["p301"][0] for e in entities.values()
        if e and not e["missing"] and WIKIMEDIA_CATEGORY in e["p31"] and e["p301"]
    } - set(entities)
    if topics:
        log(f"hgldv2: following {len(topics)} category items to their main topic (P301)")
        entities.update(resolver.resolve("entity", topics))

    def item_classes(title):
        if not title:
            return "no_category", None, []
        if _ILLEGAL_TITLE.search(title):
            return "invalid_title", None, []
        c = commons.get(title)
        if c is None:
            return "not_in_cache", None, []
        if c["missing"]:
            return "commons_page_missing", None, []
        item = c.get("wikibase_item")
        if not item:
            return "no_wikidata_item", None, []
        e = entities.get(item)
        if e is None:
            return "not_in_cache", item, []
        if e["missing"]:
            return "wikidata_item_missing", item, []
        if WIKIMEDIA_CATEGORY in e["p31"]:
            if not e["p301"]:
                return "category_without_main_topic", item, []
            item = e["p301"][0]
            e = entities.get(item)
            if e is None:
                return "not_in_cache", item, []
            if e["missing"]:
                return "wikidata_item_missing", item, []
        p31 = [q for q in e["p31"] if q != WIKIMEDIA_CATEGORY]
        if not p31:
            return "no_instance_of", item, []
        return "ok", item, p31

    resolved_titles = {t: item_classes(t) for df in cats.values() for t in df["title"]}
    classes = sorted({q for _, _, p31 in resolved_titles.values() for q in p31})
    log(f"hgldv2: fetching labels of {len(classes)} 'instance of' classes")
    labels = resolver.resolve("label", classes)
    out = {}
    for split, df in cats.items():
        rows = []
        for landmark_id, category, title in zip(df["landmark_id"], df["category"], df["title"]):
            status, item, p31 = resolved_titles[title]
            names: list[str] = []
            if status == "ok":
                if any(labels.get(q) is None for q in p31):
                    status = "not_in_cache"
                else:
                    for q in p31:
                        lab = labels[q].get("label")
                        lab = re.sub(r"\s+", " ", lab).strip() if lab else None
                        if lab and lab not in names:
                            names.append(lab)
                    if not names:
                        status = "no_instance_of_label"
            category = category if isinstance(category, str) and category else None
            rows.append((int(landmark_id), category, title, item, names if status == "ok" else [], status))
        columns = ["landmark_id", "category", "commons_title", "wikidata_item", "instance_of_labels", "status"]
        out[split] = pd.DataFrame({c: _obj(r[i] for r in rows) for i, c in enumerate(columns)})
        out[split]["landmark_id"] = out[split]["landmark_id"].astype(np.int64)
    return out


def _assign_supercategories(landmarks: dict[str, pd.DataFrame], n_superclasses: int, seed: int, mapping) -> None:
    weights: Counter = Counter()
    for df in landmarks.values():
        for names in df["instance_of_labels"]:
            weights.update(names)
    label_to_sc = cluster_labels(weights, n_superclasses, seed, mapping)
    members: dict[str, Counter] = defaultdict(Counter)
    for df in landmarks.values():
        chosen_label, chosen_sc = [], []
        for names in df["instance_of_labels"]:
            if not names:
                chosen_label.append(None)
                chosen_sc.append(None)
                continue
            votes = Counter(label_to_sc[n] for n in names)
            best = max(votes.values())
            # majority vote; a tie goes to the super-category of the earliest statement
            sc = next(label_to_sc[n] for n in names if votes[label_to_sc[n]] == best)
            label = next(n for n in names if label_to_sc[n] == sc)
            members[sc][label] += 1
            chosen_label.append(label)
            chosen_sc.append(sc)
        df["instance_of"] = pd.Series(chosen_label, dtype=object, index=df.index)
        df["supercategory"] = pd.Series(chosen_sc, dtype=object, index=df.index)
    levels = natural_levels(members, mapping)
    for df in landmarks.values():
        df["natural_or_human_made"] = pd.Series(
            [levels[sc] if isinstance(sc, str) else None for sc in df["supercategory"]], dtype=object, index=df.index
        )


# --------------------------------------------------------------------------- outputs


def _image_table(images: pd.DataFrame, landmarks: pd.DataFrame, sc_ids: dict, top_ids: dict, split: str, extra=()):
    import pyarrow as pa

    lm = landmarks.set_index("landmark_id")
    lid = images["landmark_id"]
    known = lid.notna()
    lookup = lm.reindex(lid[known].astype(np.int64).to_numpy())

    def column(name):
        values = np.full(len(images), None, dtype=object)
        values[known.to_numpy()] = lookup[name].to_numpy(dtype=object)
        return [v if isinstance(v, str) else None for v in values]

    sc, top = column("supercategory"), column("natural_or_human_made")
    fields = [("id", pa.string()), ("landmark_id", pa.int64())]
    arrays = [
        pa.array(images["id"].tolist(), pa.string()),
        pa.array([None if pd.isna(x) else int(x) for x in lid], pa.int64()),
    ]
    for name in extra:
        fields.append((name, pa.string()))
        arrays.append(pa.array(images[name].tolist(), pa.string()))
    fields += [
        ("instance_of", pa.string()), ("supercategory_id", pa.int32()), ("supercategory", pa.string()),
        ("natural_or_human_made_id", pa.int8()), ("natural_or_human_made", pa.string()),
    ]
    arrays += [
        pa.array(column("instance_of"), pa.string()),
        pa.array([sc_ids[s] if s else None for s in sc], pa.int32()),
        pa.array(sc, pa.string()),
        pa.array([top_ids[t] if t else None for t in top], pa.int8()),
        pa.array(top, pa.string()),
    ]
    meta = {
        "rbx.schema": SCHEMA_VERSION,
        "rbx.split": split,
        "rbx.label_columns": "landmark_id,supercategory_id,natural_or_human_made_id",
    }
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def _landmark_table(landmarks: dict[str, pd.DataFrame], sc_ids: dict, top_ids: dict):
    import pyarrow as pa

    cols = defaultdict(list)
    for split in ("train", "index"):
        df = landmarks[split]
        for row in df.itertuples(index=False):
            cols["split"].append(split)
            cols["landmark_id"].append(int(row.landmark_id))
            for name in ("category", "commons_title", "wikidata_item", "instance_of", "supercategory", "natural_or_human_made", "status"):
                v = getattr(row, name)
                cols[name].append(v if isinstance(v, str) else None)
            cols["instance_of_labels"].append(list(row.instance_of_labels))
    schema = pa.schema(
        [
            ("split", pa.string()), ("landmark_id", pa.int64()), ("category", pa.string()),
            ("commons_title", pa.string()), ("wikidata_item", pa.string()),
            ("instance_of_labels", pa.list_(pa.string())), ("instance_of", pa.string()),
            ("supercategory_id", pa.int32()), ("supercategory", pa.string()),
            ("natural_or_human_made_id", pa.int8()), ("natural_or_human_made", pa.string()), ("status", pa.string()),
        ],
        metadata={"rbx.schema": SCHEMA_VERSION, "rbx.split": "landmarks"},
    )
    cols["supercategory_id"] = [sc_ids[s] if s else None for s in cols["supercategory"]]
    cols["natural_or_human_made_id"] = [top_ids[t] if t else None for t in cols["natural_or_human_made"]]
    return pa.Table.from_pydict({f.name: cols[f.name] for f in schema}, schema=schema)


def _write_parquet(table, path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return {"rows": table.num_rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def load_hgldv2_labels(out_dir, split: str, *, drop_missing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(image ids, labels (N, 3) int64)`` from a built split (``train``/``index``/``query``).

    Columns ``[landmark_id, supercategory_id, natural_or_human_made_id]``
    (column 0 finest, ``docs/datasets.md#hierarchical-labels``). Rows without a hierarchy are
    dropped (SupRank ``remove_nan=True``) unless ``drop_missing=False``, in
    which case missing values are -1.
    """
    import pyarrow.parquet as pq

    if split not in ("train", "index", "query"):
        raise ValueError(f"split must be train, index or query, got {split!r}")
    table = pq.read_table(Path(out_dir) / f"{split}.parquet")
    df = table.select(["id", "landmark_id", "supercategory_id", "natural_or_human_made_id"]).to_pandas()
    ok = df[["landmark_id", "supercategory_id", "natural_or_human_made_id"]].notna().all(axis=1)
    if drop_missing:
        df = df[ok]
    labels = df[["landmark_id", "supercategory_id", "natural_or_human_made_id"]].fillna(-1).to_numpy(np.int64)
    return df["id"].to_numpy(dtype=object), labels


# --------------------------------------------------------------------------- entry point


def build_hgldv2(
    gldv2_root,
    out_dir,
    *,
    hierarchy_csv_dir=None,
    wikidata_url: str = "https://www.wikidata.org",
    commons_url: str = "https://commons.wikimedia.org",
    offline: bool = False,
    dump_json=None,
    mapping_file=None,
    n_superclasses: int = 78,
    seed: int = 0,
    rate_limit_per_s: float = 2.0,
    max_retries: int = 6,
    cache_dir=None,
    client=None,
    log: Callable[[str], None] = print,
    batch_size: int = 50,
    backoff_base_s: float = 1.0,
    backoff_max_s: float = 120.0,
    timeout_s: float = 30.0,
    require_full_coverage: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Build the H-GLDv2 hierarchy files in ``out_dir`` and return the manifest.

    Args:
        gldv2_root: directory holding the GLDv2 CSVs (:mod:`.gldv2_csv`).
        out_dir: output directory (module docstring).
        hierarchy_csv_dir: directory with the public
            ``train_label_to_hierarchical.csv`` / ``index_label_to_hierarchical.csv``;
            when given they are validated and used, and nothing is fetched.
        wikidata_url, commons_url: API hosts (``<url>/w/api.php``).
        offline: never use the network; read the cache and ``dump_json`` only
            (landmarks missing from both are "not_in_cache").
        dump_json: user-supplied JSON dump (:func:`.wikimedia.load_dump`),
            consulted after the cache and before the network.
        mapping_file: YAML/CSV overrides of the clustering (:mod:`.clustering`).
        n_superclasses: K of K-means (78 in H-GLDv2).
        seed: seed of TruncatedSVD and K-means.
        rate_limit_per_s: token-bucket rate of HTTP requests (retries included).
        max_retries: retries per request on 429/5xx/connection errors.
        cache_dir: on-disk cache (:mod:`.cache`); default ``out_dir/wikimedia_cache``.
        client: an ``httpx.Client`` to use (the caller closes it); default: one
            built here with ``timeout_s`` and closed at the end.
        log: progress messages.
        batch_size: keys per API request (<= 50).
        backoff_base_s, backoff_max_s: exponential backoff when no Retry-After.
        require_full_coverage: public-CSV mode: every landmark must have a row.
        sleep: the sleep function (tests pass a no-op or a tiny one).
    """
    t0 = time.time()
    root, out = Path(gldv2_root), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mode = "public_csv" if hierarchy_csv_dir is not None else "wikidata"
    data, input_paths = _read_inputs(root, need_categories=mode == "wikidata")
    log(
        f"hgldv2: read {len(data['train'])} train images, {len(data['index_ids'])} index images, "
        f"{len(data['query'])} queries ({data['query_stats']['ignored']} ignored)"
    )
    network: dict[str, Any] = {}
    mapping = None
    if mode == "public_csv":
        landmarks, extra_paths = _from_public_csv(Path(hierarchy_csv_dir), data, require_full_coverage, log)
        input_paths.update(extra_paths)
    else:
        if mapping_file is not None:
            mapping = load_mapping(mapping_file)
            input_paths["mapping_file"] = Path(mapping_file)
        dump = None
        if dump_json is not None:
            dump = load_dump(dump_json)
            input_paths["dump_json"] = Path(dump_json)
        cache = JsonCache(Path(cache_dir) if cache_dir is not None else out / "wikimedia_cache", log=log)
        own_client = False
        api = None
        if not offline:
            if client is None:
                import httpx

                client = httpx.Client(timeout=timeout_s, follow_redirects=True)
                own_client = True
            api = ApiClient(
                client, rate_limit_per_s=rate_limit_per_s, max_retries=max_retries,
                backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s, sleep=sleep, log=log,
            )
        resolver = WikimediaResolver(
            cache, api=api, dump=dump, commons_url=commons_url, wikidata_url=wikidata_url,
            batch_size=batch_size, log=log,
        )
        try:
            landmarks = _resolve_landmarks({"train": data["train_cat"], "index": data["index_cat"]}, resolver, log)
        finally:
            if own_client:
                client.close()
        # landmarks that have images but no category row are unresolved too
        for split, ids in (("train", data["train"]["landmark_id"]), ("index", data["index_map"]["landmark_id"])):
            absent = np.setdiff1d(ids.unique(), landmarks[split]["landmark_id"].to_numpy())
            if absent.size:
                n_abs = len(absent)
                extra = pd.DataFrame(
                    {"landmark_id": absent.astype(np.int64), "category": _obj([None] * n_abs),
                     "commons_title": _obj([None] * n_abs), "wikidata_item": _obj([None] * n_abs),
                     "instance_of_labels": _obj([[] for _ in absent]), "status": _obj(["no_category_row"] * n_abs)}
                )
                landmarks[split] = pd.concat([landmarks[split], extra], ignore_index=True)
        _assign_supercategories(landmarks, n_superclasses, seed, mapping)
        network = {
            "requests": api.requests if api else 0,
            "retries": api.retries if api else 0,
            "rate_limit_wait_s": round(api.bucket.waited, 3) if api else 0.0,
            "entries": dict(resolver.stats),
            "cache_dir": str(cache.root),
            "cache_writes": cache.writes,
        }
        if offline and resolver.stats["unavailable"]:
            log(f"hgldv2: offline: {resolver.stats['unavailable']} look-ups are neither cached nor in the dump")

    for split in ("train", "index"):
        landmarks[split] = landmarks[split].sort_values("landmark_id", kind="stable").reset_index(drop=True)
    names = sorted({s for df in landmarks.values() for s in df["supercategory"] if isinstance(s, str)})
    tops = sorted({s for df in landmarks.values() for s in df["natural_or_human_made"] if isinstance(s, str)})
    sc_ids = {n: i for i, n in enumerate(names)}
    top_ids = {n: i for i, n in enumerate(tops)}

    index_images = pd.DataFrame({"id": data["index_ids"]})
    index_images["landmark_id"] = index_images["id"].map(
        dict(zip(data["index_map"]["id"], data["index_map"]["landmark_id"]))
    ).astype("Int64")
    tables = {
        "train": _image_table(data["train"], landmarks["train"], sc_ids, top_ids, "train"),
        "index": _image_table(index_images, landmarks["index"], sc_ids, top_ids, "index"),
        "query": _image_table(data["query"], landmarks["index"], sc_ids, top_ids, "query", extra=("usage",)),
    }
    outputs = {}
    for split, table in tables.items():
        outputs[f"{split}.parquet"] = _write_parquet(table, out / f"{split}.parquet")
    outputs["landmarks.parquet"] = _write_parquet(_landmark_table(landmarks, sc_ids, top_ids), out / "landmarks.parquet")

    # ---- coverage and manifest
    coverage: dict[str, Any] = {}
    for split in ("train", "index"):
        df = landmarks[split]
        ok = df["supercategory"].notna()
        coverage[split] = {
            "landmarks": int(len(df)),
            "resolved": int(ok.sum()),
            "unresolved": int((~ok).sum()),
            "unresolved_by_reason": {k: int(v) for k, v in sorted(Counter(df.loc[~ok, "status"]).items())},
        }
    for split, table in tables.items():
        sc_col = table.column("supercategory").to_pylist()
        coverage.setdefault(split, {})
        coverage[split]["images"] = table.num_rows
        coverage[split]["images_with_hierarchy"] = sum(s is not None for s in sc_col)
    coverage["query"].update(data["query_stats"])
    coverage["index"].update(data["index_stats"])
    supercats = []
    image_counts = {s: Counter(t.column("supercategory").to_pylist()) for s, t in tables.items()}
    for name in names:
        members = Counter()
        top = None
        lm_counts = {}
        for split in ("train", "index"):
            df = landmarks[split]
            sel = df[df["supercategory"] == name]
            lm_counts[split] = int(len(sel))
            members.update(x for x in sel["instance_of"] if isinstance(x, str))
            if len(sel):
                top = sel["natural_or_human_made"].iloc[0]
        supercats.append(
            {
                "id": sc_ids[name],
                "name": name,
                "natural_or_human_made": top,
                "natural_or_human_made_id": top_ids.get(top),
                "landmarks": lm_counts,
                "images": {s: int(image_counts[s][name]) for s in tables},
                "instance_of": [lab for lab, _ in sorted(members.items(), key=lambda kv: (-kv[1], kv[0]))],
            }
        )
    import pyarrow
    import sklearn

    manifest = {
        "format": MANIFEST_FORMAT,
        "schema": SCHEMA_VERSION,
        "mode": mode,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": None,
        "parameters": {
            "n_superclasses": int(n_superclasses),
            "n_superclasses_built": len(names),
            "seed": int(seed),
            "offline": bool(offline),
            "wikidata_url": wikidata_url,
            "commons_url": commons_url,
            "batch_size": int(batch_size),
            "rate_limit_per_s": float(rate_limit_per_s),
            "max_retries": int(max_retries),
            "require_full_coverage": bool(require_full_coverage),
            "embedding": EMBEDDING if mode == "wikidata" else None,
            "keywords_version": KEYWORDS_VERSION if mode == "wikidata" else None,
        },
        "inputs": {
            key: {"path": str(p), "bytes": p.stat().st_size, "sha256": _sha256(p)}
            for key, p in sorted(input_paths.items())
        },
        "outputs": outputs,
        "label_columns": ["landmark_id", "supercategory_id", "natural_or_human_made_id"],
        "natural_or_human_made_ids": top_ids,
        "coverage": coverage,
        "supercategories": supercats,
        "network": network,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "pyarrow": pyarrow.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    manifest["duration_s"] = round(time.time() - t0, 3)
    atomic_write_bytes(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")
    log(
        f"hgldv2: done in {manifest['duration_s']}s: {len(names)} super-categories; "
        f"train landmarks resolved {coverage['train']['resolved']}/{coverage['train']['landmarks']}, "
        f"index {coverage['index']['resolved']}/{coverage['index']['landmarks']}"
    )
    return manifest
