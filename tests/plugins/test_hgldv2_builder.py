"""H-GLDv2 builder end to end on a small GLDv2-format fixture, against a local
Wikimedia-like HTTP server that answers 429 / 503 / maxlag and cuts responses
mid-body; interrupted runs resume from the cache; offline reruns are
byte-identical; the public hierarchical-CSV path is validated."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pyarrow.parquet as pq
import pytest

from rbx_retrieval.hgldv2 import GLDv2FormatError, JsonCache, build_hgldv2, load_hgldv2_labels

# --------------------------------------------------------------------------- fixture data

CLASSES = {
    "Q10": "church", "Q11": "catholic church", "Q12": "parish church",
    "Q20": "mountain", "Q21": "mountain range", "Q22": "mountain pass",
    "Q30": "bridge", "Q31": "arch bridge", "Q32": "suspension bridge",
    "Q4167836": "Wikimedia category",
}
# item -> (label, [(P31 class, rank)], [P301 main topic])
ITEMS = {
    "Q1": ("Notre-Dame de Paris", [("Q11", "normal"), ("Q10", "normal")], []),
    "Q2": ("Mont Blanc", [("Q20", "normal"), ("Q30", "deprecated")], []),
    "Q3": ("Golden Gate Bridge", [("Q32", "preferred"), ("Q10", "normal")], []),
    "Q4": ("Alps", [("Q21", "normal")], []),
    "Q5": ("St Mary's Church", [("Q12", "normal")], []),
    "Q6": ("Pont du Gard", [("Q31", "normal")], []),
    "Q7": ("Col du Grand-Saint-Bernard", [("Q22", "normal")], []),
    "Q8": ("Category:Tower Bridge", [("Q4167836", "normal")], ["Q9"]),
    "Q9": ("Tower Bridge", [("Q30", "normal")], []),
    "Q13": ("Church Bridge", [("Q10", "normal"), ("Q30", "normal")], []),
}
# Commons category page title -> wikibase_item (None: page without one)
PAGES = {
    "Category:Notre-Dame de Paris": "Q1",
    "Category:Mont Blanc": "Q2",
    "Category:Golden Gate Bridge": "Q3",
    "Category:Alps": "Q4",
    "Category:St Mary's Church, Oxford": "Q5",
    "Category:Pont du Gard": "Q6",
    "Category:Col du Grand-Saint-Bernard": "Q7",
    "Category:Tower Bridge": "Q8",
    "Category:No Item Here": None,
    "Category:Church Bridge": "Q13",
}
REDIRECTS = {"Category:Golden Gate": "Category:Golden Gate Bridge"}
C = "http://commons.wikimedia.org/wiki/"
TRAIN_CATEGORIES = {
    1: C + "Category:Notre-Dame_de_Paris",
    2: C + "Category:Mont_Blanc",
    3: C + "Category:Golden_Gate_Bridge",
    4: C + "Category:Alps",
    5: C + "Category:St_Mary%27s_Church%2C_Oxford",
    6: C + "Category:Pont_du_Gard",
    7: C + "Category:Col_du_Grand-Saint-Bernard",
    8: C + "Category:Tower_Bridge",
    9: C + "Category:nowhere_land",  # normalised, then missing
    10: C + "Category:No_Item_Here",  # page without wikibase_item
    11: "",  # no category
    12: C + "Category:golden_Gate",  # normalised, then redirected to Golden Gate Bridge
    13: C + "Category:Church_Bridge",  # P31 tie between two clusters
}
INDEX_CATEGORIES = {
    100: C + "Category:Notre-Dame_de_Paris",
    101: C + "Category:Mont_Blanc",
    102: C + "Category:Golden_Gate_Bridge",
    103: C + "Category:nowhere_land",
    104: C + "Category:Alps",
}
# Expected (instance_of, supercategory, natural_or_human_made); None = no hierarchy.
# Clusters: {church, catholic church, parish church} named "church" (3 landmarks carry it),
# {mountain, mountain range, mountain pass} named "mountain" (tie 2-2 with "mountain range",
# alphabetical), {bridge, arch bridge, suspension bridge} named "suspension bridge" (3).
EXPECTED_TRAIN = {
    1: ("catholic church", "church", "human-made"),  # first statement of the winning cluster
    2: ("mountain", "mountain", "natural"),  # deprecated P31 ignored
    3: ("suspension bridge", "suspension bridge", "human-made"),  # preferred rank only
    4: ("mountain range", "mountain", "natural"),
    5: ("parish church", "church", "human-made"),
    6: ("arch bridge", "suspension bridge", "human-made"),
    7: ("mountain pass", "mountain", "natural"),
    8: ("bridge", "suspension bridge", "human-made"),  # category item -> P301 main topic
    9: None, 10: None, 11: None,
    12: ("suspension bridge", "suspension bridge", "human-made"),
    13: ("church", "church", "human-made"),  # 1-1 tie: earliest statement wins
    14: None,  # images but no row in train_label_to_category.csv
}
EXPECTED_INDEX = {
    100: ("catholic church", "church", "human-made"),
    101: ("mountain", "mountain", "natural"),
    102: ("suspension bridge", "suspension bridge", "human-made"),
    103: None,
    104: ("mountain range", "mountain", "natural"),
}
SC_IDS = {"church": 0, "mountain": 1, "suspension bridge": 2}
TOP_IDS = {"human-made": 0, "natural": 1}


def hexid(prefix: str, i: int) -> str:
    return prefix + f"{i:015x}"


TRAIN_IMAGES = {lm: [hexid("a", lm * 10 + j) for j in range(1 + lm % 3)] for lm in list(TRAIN_CATEGORIES) + [14]}
INDEX_IMAGES = {lm: [hexid("b", (lm - 100) * 10 + j) for j in range(2)] for lm in INDEX_CATEGORIES}
EXTRA_INDEX = hexid("b", 999)  # in index.csv, no landmark
SOLUTION = [  # (test id, images or None, Usage)
    (hexid("c", 1), INDEX_IMAGES[100], "Public"),
    (hexid("c", 2), INDEX_IMAGES[101][:1], "Private"),
    (hexid("c", 3), None, "Ignored"),
    (hexid("c", 4), None, "Public"),  # "None" images: ignored too
    (hexid("c", 5), INDEX_IMAGES[103] + INDEX_IMAGES[102], "Public"),
    (hexid("c", 6), INDEX_IMAGES[102][:1] + INDEX_IMAGES[104][:1], "Private"),
]
TEST_IDS = [hexid("c", i) for i in range(1, 8)]


def write_gldv2(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train_clean.csv").write_text(
        "landmark_id,images\n" + "".join(f"{lm},{' '.join(ims)}\n" for lm, ims in TRAIN_IMAGES.items())
    )
    (root / "train_label_to_category.csv").write_text(
        "landmark_id,category\n" + "".join(f"{lm},{url}\n" for lm, url in TRAIN_CATEGORIES.items())
    )
    (root / "index_label_to_category.csv").write_text(
        "landmark_id,category\n" + "".join(f"{lm},{url}\n" for lm, url in INDEX_CATEGORIES.items())
    )
    index_rows = [(i, lm) for lm, ims in INDEX_IMAGES.items() for i in ims]
    (root / "index.csv").write_text("id\n" + "".join(f"{i}\n" for i, _ in index_rows) + EXTRA_INDEX + "\n")
    (root / "index_image_to_landmark.csv").write_text("id,landmark_id\n" + "".join(f"{i},{lm}\n" for i, lm in index_rows))
    (root / "test.csv").write_text("id\n" + "".join(f"{i}\n" for i in TEST_IDS))
    (root / "retrieval_solution_v2.1.csv").write_text(
        "id,images,Usage\n" + "".join(f"{i},{' '.join(ims) if ims else 'None'},{u}\n" for i, ims, u in SOLUTION)
    )
    return root


# --------------------------------------------------------------------------- fake Wikimedia


def _claims(statements):
    return [
        {
            "mainsnak": {
                "snaktype": "value", "property": "P31", "datatype": "wikibase-item",
                "datavalue": {"type": "wikibase-entityid", "value": {"entity-type": "item", "numeric-id": int(q[1:]), "id": q}},
            },
            "type": "statement", "id": f"X${n}", "rank": rank,
        }
        for n, (q, rank) in enumerate(statements)
    ]


def entity_json(qid, props):
    if qid in ITEMS:
        label, p31, p301 = ITEMS[qid]
    elif qid in CLASSES:
        label, p31, p301 = CLASSES[qid], [], []
    else:
        return {"id": qid, "missing": ""}
    ent = {"type": "item", "id": qid}
    if "labels" in props:
        ent["labels"] = {"en": {"language": "en", "value": label}}
    if "claims" in props:
        ent["claims"] = {}
        if p31:
            ent["claims"]["P31"] = _claims(p31)
        if p301:
            ent["claims"]["P301"] = _claims([(q, "normal") for q in p301])
    return ent


class FakeWikimedia:
    """Commons pageprops + Wikidata wbgetentities on 127.0.0.1; request n gets faults[n]."""

    def __init__(self, faults=None, max_requests=100):
        self.faults = dict(faults or {})
        self.max_requests = max_requests
        self.count = 0
        self.exceeded = False
        self.served: list[tuple[str, str]] = []  # (kind, key) of complete 200 answers
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join(5)
        self.httpd.server_close()

    def _send(self, h, status, body: bytes, headers=()):
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h):
        with self.lock:
            self.count += 1
            n = self.count
            fault = self.faults.get(n)
            if n > self.max_requests:
                self.exceeded = True
        if n > self.max_requests:
            return self._send(h, 500, b'{"error": "too many requests in test"}')
        if fault == "429":
            return self._send(h, 429, b'{"error": {"code": "too-many-requests"}}', [("Retry-After", "0")])
        if fault == "503":
            return self._send(h, 503, b"Service Unavailable")
        if fault == "maxlag":
            body = json.dumps({"error": {"code": "maxlag", "info": "Waiting for a database server: 6 seconds lagged."}})
            return self._send(h, 200, body.encode(), [("Retry-After", "0"), ("X-Database-Lag", "6")])
        parts = urlsplit(h.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert q.get("format") == "json" and q.get("formatversion") == "2"
        if parts.path == "/commons/w/api.php":
            assert q["action"] == "query" and q["prop"] == "pageprops" and q["ppprop"] == "wikibase_item"
            keys = q["titles"].split("|")
            payload, kind = self.pageprops(keys), "commons"
        elif parts.path == "/wikidata/w/api.php":
            assert q["action"] == "wbgetentities"
            keys = q["ids"].split("|")
            kind = "entity" if "claims" in q["props"] else "label"
            payload = {"entities": {k: entity_json(k, q["props"].split("|")) for k in keys}, "success": 1}
        else:
            return self._send(h, 404, b"{}")
        body = json.dumps(payload).encode()
        if fault == "drop":  # promise the whole body, send half, hang up
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(h, 200, body)
        with self.lock:
            self.served.extend((kind, k) for k in keys)

    @staticmethod
    def pageprops(titles):
        normalized, redirects, pages = [], [], []
        for t in titles:
            ns, _, rest = t.partition(":")
            norm = f"{ns}:{rest[:1].upper()}{rest[1:]}"
            if norm != t:
                normalized.append({"fromencoded": False, "from": t, "to": norm})
            target = REDIRECTS.get(norm, norm)
            if target != norm:
                redirects.append({"from": norm, "to": target})
            if target in PAGES:
                page = {"pageid": 1000 + len(pages), "ns": 14, "title": target}
                if PAGES[target]:
                    page["pageprops"] = {"wikibase_item": PAGES[target]}
            else:
                page = {"ns": 14, "title": target, "missing": True}
            if page not in pages:
                pages.append(page)
        query = {"pages": pages}
        if normalized:
            query["normalized"] = normalized
        if redirects:
            query["redirects"] = redirects
        return {"batchcomplete": True, "query": query}


class Crash(Exception):
    """Simulated kill of the builder mid-way."""


def crashing_client(after: int) -> httpx.Client:
    sent = {"n": 0}

    def hook(request):
        sent["n"] += 1
        if sent["n"] > after:
            raise Crash(f"killed before request {sent['n']}")

    return httpx.Client(timeout=5, event_hooks={"request": [hook]})


def run(root, out, server_url=None, **kw):
    kw.setdefault("log", lambda m: None)
    base = server_url or "http://127.0.0.1:9"  # port 9: nothing listens (offline runs never connect)
    return build_hgldv2(
        root, out, wikidata_url=base + "/wikidata", commons_url=base + "/commons", n_superclasses=3, seed=0,
        rate_limit_per_s=1000.0, max_retries=4, batch_size=3, backoff_base_s=0.001, backoff_max_s=0.01, **kw,
    )


def hierarchy(out: Path, split: str) -> dict:
    t = pq.read_table(out / f"{split}.parquet").to_pylist()
    return {r["id"]: r for r in t}


def parquet_bytes(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("train.parquet", "index.parquet", "query.parquet", "landmarks.parquet")}


def check_expected(out: Path):
    train = hierarchy(out, "train")
    for lm, ims in TRAIN_IMAGES.items():
        for i in ims:
            row = train.pop(i)
            assert row["landmark_id"] == lm
            exp = EXPECTED_TRAIN[lm]
            got = (row["instance_of"], row["supercategory"], row["natural_or_human_made"])
            assert got == (exp if exp else (None, None, None)), (lm, got)
            assert row["supercategory_id"] == (SC_IDS[exp[1]] if exp else None)
            assert row["natural_or_human_made_id"] == (TOP_IDS[exp[2]] if exp else None)
    assert not train
    index = hierarchy(out, "index")
    assert index[EXTRA_INDEX]["landmark_id"] is None and index[EXTRA_INDEX]["supercategory"] is None
    for lm, ims in INDEX_IMAGES.items():
        for i in ims:
            exp = EXPECTED_INDEX[lm]
            assert (index[i]["landmark_id"], index[i]["supercategory"]) == (lm, exp[1] if exp else None)
    query = pq.read_table(out / "query.parquet").to_pylist()
    assert [(r["id"], r["landmark_id"], r["usage"], r["supercategory"]) for r in query] == [
        (hexid("c", 1), 100, "Public", "church"),
        (hexid("c", 2), 101, "Private", "mountain"),
        (hexid("c", 5), 103, "Public", None),  # first listed image's landmark (SupRank)
        (hexid("c", 6), 102, "Private", "suspension bridge"),
    ]


ALL_KEYS = {
    ("commons", t) for t in {
        "Category:Notre-Dame de Paris", "Category:Mont Blanc", "Category:Golden Gate Bridge", "Category:Alps",
        "Category:St Mary's Church, Oxford", "Category:Pont du Gard", "Category:Col du Grand-Saint-Bernard",
        "Category:Tower Bridge", "Category:nowhere land", "Category:No Item Here", "Category:golden Gate",
        "Category:Church Bridge",
    }
} | {("entity", q) for q in ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7", "Q8", "Q9", "Q13")} | {
    ("label", q) for q in ("Q10", "Q11", "Q12", "Q20", "Q21", "Q22", "Q30", "Q31", "Q32")
}


def cache_keys(cache_dir: Path) -> list[tuple[str, str]]:
    c = JsonCache(cache_dir)
    return [(kind, k) for kind in ("commons", "entity", "label") for k, _ in c.entries(kind)]


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def reference_build(tmp_path_factory):
    """One uninterrupted online build through every kind of fault."""
    tmp = tmp_path_factory.mktemp("ref")
    root = write_gldv2(tmp / "gldv2")
    faults = {2: "429", 4: "drop", 5: "503", 8: "maxlag", 11: "drop", 12: "429"}
    with FakeWikimedia(faults) as server:
        manifest = run(root, tmp / "out", server.url, cache_dir=tmp / "cache")
    return root, tmp / "out", tmp / "cache", manifest, server


def test_build_retries_and_matches_expected_hierarchy(reference_build):
    root, out, cache_dir, manifest, server = reference_build
    assert not server.exceeded and server.count <= 30
    # 12 titles / 3 + 9 items / 3 + 1 main topic + 9 classes / 3 = 11 good requests, 6 faults retried
    assert server.count == 17 and manifest["network"]["retries"] == 6 and manifest["network"]["requests"] == 17
    assert sorted(server.served) == sorted(ALL_KEYS)  # every key fetched exactly once
    check_expected(out)
    cov = manifest["coverage"]
    assert cov["train"]["landmarks"] == 14 and cov["train"]["resolved"] == 10
    assert cov["train"]["unresolved_by_reason"] == {
        "commons_page_missing": 1, "no_category": 1, "no_category_row": 1, "no_wikidata_item": 1,
    }
    assert cov["index"]["resolved"] == 4 and cov["index"]["unresolved_by_reason"] == {"commons_page_missing": 1}
    assert cov["query"]["queries"] == 4 and cov["query"]["ignored"] == 2 and cov["query"]["listing_several_landmarks"] == 2
    sc = {s["name"]: s for s in manifest["supercategories"]}
    assert {n: (s["id"], s["natural_or_human_made"]) for n, s in sc.items()} == {
        "church": (0, "human-made"), "mountain": (1, "natural"), "suspension bridge": (2, "human-made"),
    }
    assert sc["mountain"]["landmarks"] == {"train": 3, "index": 2}
    assert set(manifest["inputs"]) == {
        "train_clean", "train_label_to_category", "index", "index_image_to_landmark",
        "index_label_to_category", "test", "retrieval_solution",
    }
    assert all(len(v["sha256"]) == 64 for v in manifest["inputs"].values())
    assert json.loads((out / "manifest.json").read_text())["outputs"] == manifest["outputs"]
    ids, labels = load_hgldv2_labels(out, "query")
    assert labels.tolist() == [[100, 0, 0], [101, 1, 1], [102, 2, 0]]


def test_interrupted_build_resumes_without_loss_or_duplicates(reference_build, tmp_path):
    root, ref_out, _, _, _ = reference_build
    cache_dir = tmp_path / "cache"
    with FakeWikimedia({3: "429", 9: "drop"}) as server:
        client = crashing_client(after=6)
        with pytest.raises(Crash):
            run(root, tmp_path / "out", server.url, cache_dir=cache_dir, client=client)
        client.close()
        assert not (tmp_path / "out" / "manifest.json").exists()
        first = list(server.served)
        # 6 requests: 429 + 5 good ones -> 4 commons batches (12 titles) + 1 entity batch (3 items)
        assert len(first) == 15
        assert sorted(cache_keys(cache_dir)) == sorted(first)  # everything answered is on disk
        assert not list(cache_dir.rglob("*.tmp"))
        run(root, tmp_path / "out", server.url, cache_dir=cache_dir)
        assert not server.exceeded
    assert sorted(server.served) == sorted(ALL_KEYS)  # nothing fetched twice, nothing lost
    assert sorted(cache_keys(cache_dir)) == sorted(ALL_KEYS)
    check_expected(tmp_path / "out")
    assert parquet_bytes(tmp_path / "out") == parquet_bytes(ref_out)


def test_offline_rerun_is_byte_identical(reference_build, tmp_path):
    root, ref_out, cache_dir, _, server = reference_build
    assert not server.thread.is_alive()  # server stopped
    manifest = run(root, tmp_path / "out", None, cache_dir=cache_dir, offline=True)
    assert manifest["network"]["requests"] == 0 and manifest["network"]["entries"]["unavailable"] == 0
    assert parquet_bytes(tmp_path / "out") == parquet_bytes(ref_out)


def test_offline_from_json_dump_is_byte_identical(reference_build, tmp_path):
    root, ref_out, cache_dir, _, _ = reference_build
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps(JsonCache(cache_dir).to_dump()))
    manifest = run(root, tmp_path / "out", None, cache_dir=tmp_path / "fresh", offline=True, dump_json=dump)
    assert manifest["network"]["entries"]["dump"] == len(ALL_KEYS)
    assert parquet_bytes(tmp_path / "out") == parquet_bytes(ref_out)


def test_offline_with_empty_cache_leaves_landmarks_unresolved(reference_build, tmp_path):
    root = reference_build[0]
    manifest = run(root, tmp_path / "out", None, cache_dir=tmp_path / "empty", offline=True)
    assert manifest["coverage"]["train"]["resolved"] == 0
    assert manifest["coverage"]["train"]["unresolved_by_reason"]["not_in_cache"] == 12


def test_mapping_file_overrides_clustering(reference_build, tmp_path):
    root, _, cache_dir, _, _ = reference_build
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "supercategories:\n"
        "  crossing: [mountain pass, arch bridge]\n"
        "natural_or_human_made:\n"
        "  crossing: human-made\n"
    )
    manifest = run(root, tmp_path / "out", None, cache_dir=cache_dir, offline=True, mapping_file=mapping)
    train = {r["landmark_id"]: r for r in pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()}
    assert (train[7]["supercategory"], train[7]["natural_or_human_made"]) == ("crossing", "human-made")
    assert train[6]["supercategory"] == "crossing" and train[2]["supercategory"] == "mountain"
    assert [s["name"] for s in manifest["supercategories"]] == ["church", "crossing", "mountain", "suspension bridge"]
    assert "mapping_file" in manifest["inputs"]


def test_retries_exhausted_raise_and_keep_cache(tmp_path):
    root = write_gldv2(tmp_path / "gldv2")
    with FakeWikimedia({n: "503" for n in range(2, 50)}) as server:
        from rbx_retrieval.hgldv2 import WikimediaUnavailable

        with pytest.raises(WikimediaUnavailable, match="rerun to resume"):
            run(root, tmp_path / "out", server.url, cache_dir=tmp_path / "cache")
        assert server.count == 1 + 5  # one good batch, then 1 + max_retries attempts
    assert len(cache_keys(tmp_path / "cache")) == 3


# --------------------------------------------------------------------------- public CSVs


def write_public(dir_: Path, train_rows=None, index_rows=None):
    dir_.mkdir(parents=True, exist_ok=True)
    header = "landmark_id,category,supercategory,hierarchical_label,natural_or_human_made\n"
    if train_rows is None:
        train_rows = {lm: ("church", "religious", "human-made") for lm in TRAIN_IMAGES}
        train_rows[2] = ("mountain", "mountains", "natural")
        train_rows[9] = ("", "", "")
    if index_rows is None:
        index_rows = {100: ("church", "religious", "human-made"), 101: ("peak", "mountains", "natural"),
                      102: ("", "", ""), 103: ("chapel", "religious", "human-made"), 104: ("range", "mountains", "natural")}
    (dir_ / "train_label_to_hierarchical.csv").write_text(
        header + "".join(f"{lm},{C}Category:X{lm},{a},{b},{c}\n" for lm, (a, b, c) in train_rows.items())
    )
    (dir_ / "index_label_to_hierarchical.csv").write_text(
        header + "".join(f"{lm},{C}Category:X{lm},{a},{b},{c}\n" for lm, (a, b, c) in index_rows.items())
    )
    return dir_


def test_public_hierarchical_csvs(tmp_path):
    root = write_gldv2(tmp_path / "gldv2")
    (root / "train_label_to_category.csv").unlink()  # not needed in this mode
    hier = write_public(tmp_path / "hier")
    manifest = build_hgldv2(root, tmp_path / "out", hierarchy_csv_dir=hier, log=lambda m: None)
    assert manifest["mode"] == "public_csv" and manifest["network"] == {}
    assert [(s["id"], s["name"], s["natural_or_human_made"]) for s in manifest["supercategories"]] == [
        (0, "mountains", "natural"), (1, "religious", "human-made"),
    ]
    assert manifest["natural_or_human_made_ids"] == {"human-made": 0, "natural": 1}
    train = {r["landmark_id"]: r for r in pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()}
    assert (train[2]["instance_of"], train[2]["supercategory_id"], train[2]["natural_or_human_made_id"]) == ("mountain", 0, 1)
    assert train[9]["supercategory"] is None
    assert manifest["coverage"]["train"]["unresolved_by_reason"] == {"no_hierarchical_label": 1}
    ids, labels = load_hgldv2_labels(tmp_path / "out", "query")
    assert labels.tolist() == [[100, 1, 0], [101, 0, 1], [103, 1, 0]]  # 102 has no cluster
    assert set(manifest["inputs"]) >= {"train_label_to_hierarchical", "index_label_to_hierarchical"}


def test_public_csv_validation(tmp_path):
    root = write_gldv2(tmp_path / "gldv2")
    bad = {lm: ("church", "religious", "human-made") for lm in TRAIN_IMAGES}
    bad[3] = ("church", "religious", "natural")  # one cluster, two parents
    with pytest.raises(GLDv2FormatError, match=r"train_label_to_hierarchical.csv: column 'natural_or_human_made', line 4"):
        build_hgldv2(root, tmp_path / "o1", hierarchy_csv_dir=write_public(tmp_path / "h1", bad), log=lambda m: None)
    partial = {lm: ("church", "religious", "human-made") for lm in TRAIN_IMAGES}
    partial[5] = ("church", "religious", "")
    with pytest.raises(GLDv2FormatError, match=r"column 'natural_or_human_made', line 6: empty"):
        build_hgldv2(root, tmp_path / "o2", hierarchy_csv_dir=write_public(tmp_path / "h2", partial), log=lambda m: None)
    missing = {lm: ("church", "religious", "human-made") for lm in TRAIN_IMAGES if lm != 14}
    with pytest.raises(GLDv2FormatError, match=r"1 landmark\(s\) of train_clean.csv have no row \(e.g. 14\)"):
        build_hgldv2(root, tmp_path / "o3", hierarchy_csv_dir=write_public(tmp_path / "h3", missing), log=lambda m: None)
    m = build_hgldv2(root, tmp_path / "o4", hierarchy_csv_dir=tmp_path / "h3", require_full_coverage=False, log=lambda m: None)
    assert m["coverage"]["train"]["unresolved_by_reason"] == {"no_row_in_hierarchy_csv": 1}


# --------------------------------------------------------------------------- malformed GLDv2 input


@pytest.mark.parametrize(
    "file, content, message",
    [
        ("train_clean.csv", "landmark_id,imgs\n1,a000000000000001\n", r"train_clean.csv: missing column 'images'"),
        ("train_clean.csv", "landmark_id,images\n1,a000000000000001\nx,a000000000000002\n",
         r"train_clean.csv: column 'landmark_id', line 3: expected a non-negative integer, got 'x'"),
        ("train_clean.csv", "landmark_id,images\n1,a00000000000000Z\n", r"column 'images', line 2"),
        ("train_label_to_category.csv", "landmark_id,category\n1,not a url\n",
         r"train_label_to_category.csv: column 'category', line 2: expected a Wikimedia Commons URL"),
        ("retrieval_solution_v2.1.csv", "id,images,Usage\nc000000000000001,b000000000000000,Secret\n",
         r"retrieval_solution_v2.1.csv: column 'Usage', line 2: expected one of Public, Private, Ignored"),
        ("retrieval_solution_v2.1.csv", "id,images,Usage\nc000000000000001,bffffffffffffff0,Public\n",
         r"retrieval_solution_v2.1.csv: column 'images', line 2: index image 'bffffffffffffff0' is not in index_image_to_landmark.csv"),
        ("retrieval_solution_v2.1.csv", "id,images,Usage\ncfffffffffffffff,None,Ignored\n",
         r"column 'id', line 2: test image 'cfffffffffffffff' is not in test.csv"),
        ("index.csv", "id\nb000000000000000\nb000000000000000\n", r"index.csv: column 'id', line 3: expected unique"),
    ],
)
def test_malformed_gldv2_csv(tmp_path, file, content, message):
    root = write_gldv2(tmp_path / "gldv2")
    (root / file).write_text(content)
    with pytest.raises(GLDv2FormatError, match=message):
        build_hgldv2(root, tmp_path / "out", offline=True, cache_dir=tmp_path / "c", log=lambda m: None)


def test_missing_file_is_named(tmp_path):
    root = write_gldv2(tmp_path / "gldv2")
    (root / "test.csv").unlink()
    with pytest.raises(GLDv2FormatError, match=r"test.csv: file not found"):
        build_hgldv2(root, tmp_path / "out", offline=True, log=lambda m: None)
