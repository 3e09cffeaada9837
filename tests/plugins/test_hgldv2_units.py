"""Unit tests of the H-GLDv2 building blocks: token bucket, Retry-After, response
parsing, keyword rule, mapping file, clustering determinism, atomic cache."""

import email.utils
import time

import pytest

from rbx_retrieval.hgldv2.cache import JsonCache
from rbx_retrieval.hgldv2.clustering import cluster_labels, load_mapping, natural_levels
from rbx_retrieval.hgldv2.gldv2_csv import commons_title
from rbx_retrieval.hgldv2.keywords import is_natural
from rbx_retrieval.hgldv2.wikimedia import (
    TokenBucket,
    WikimediaError,
    _retry_after,
    parse_commons_pageprops,
    parse_entity,
)


def test_token_bucket_rate():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(9):
        bucket.acquire()
    # burst of 1, then one token every 1/4 s: 8 waits of 0.25 s
    assert now[0] == pytest.approx(2.0) and len(slept) == 8
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_retry_after_forms():
    assert _retry_after("0") == 0.0
    assert _retry_after("2.5") == 2.5
    assert _retry_after(None) is None and _retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after(future) <= 31


def test_commons_title():
    assert commons_title("http://commons.wikimedia.org/wiki/Category:Tour_Saint-Nicolas") == "Category:Tour Saint-Nicolas"
    assert commons_title("https://commons.wikimedia.org/wiki/Category:Caf%C3%A9_de_Flore") == "Category:Café de Flore"
    assert commons_title("commons.wikimedia.org/Category:X") is None


def test_parse_commons_follows_normalized_and_redirects():
    payload = {
        "query": {
            "normalized": [{"from": "Category:a", "to": "Category:A"}],
            "redirects": [{"from": "Category:A", "to": "Category:B"}],
            "pages": [
                {"title": "Category:B", "ns": 14, "pageid": 1, "pageprops": {"wikibase_item": "Q5"}},
                {"title": "Category:Gone", "ns": 14, "missing": True},
            ],
        }
    }
    out = parse_commons_pageprops(["Category:a", "Category:Gone"], payload)
    assert out["Category:a"] == {"title": "Category:B", "wikibase_item": "Q5", "missing": False}
    assert out["Category:Gone"]["missing"] is True
    with pytest.raises(WikimediaError):
        parse_commons_pageprops(["Category:Other"], payload)


def test_parse_entity_best_rank():
    def st(q, rank):
        return {"mainsnak": {"snaktype": "value", "datavalue": {"type": "wikibase-entityid", "value": {"id": q}}}, "rank": rank}

    ent = {"id": "Q1", "labels": {"en": {"value": "x"}},
           "claims": {"P31": [st("Q2", "normal"), st("Q3", "preferred"), st("Q4", "deprecated")]}}
    assert parse_entity("Q1", ent)["p31"] == ["Q3"]
    ent["claims"]["P31"] = [st("Q2", "normal"), st("Q4", "deprecated"), {"mainsnak": {"snaktype": "novalue"}, "rank": "normal"}]
    assert parse_entity("Q1", ent) == {"id": "Q1", "missing": False, "label": "x", "p31": ["Q2"], "p301": []}
    assert parse_entity("Q9", {"id": "Q9", "missing": ""})["missing"] is True


@pytest.mark.parametrize(
    "label, natural",
    [("mountain", True), ("lake", True), ("national park", True), ("mountain range", True),
     ("mountain hut", False), ("artificial lake", False), ("reservoir", False), ("triumphal arch", False),
     ("natural arch", True), ("church", False), ("island (geography)", True), ("man-made island", False)],
)
def test_natural_keywords(label, natural):
    assert is_natural(label) is natural


def test_natural_level_majority_and_override(tmp_path):
    members = {"water": {"lake": 2, "reservoir": 2}, "peaks": {"peak": 3, "mountain hut": 1}}
    assert natural_levels(members) == {"water": "human-made", "peaks": "natural"}  # 2-2 tie -> human-made
    m = tmp_path / "m.yaml"
    m.write_text("natural_or_human_made:\n  water: natural\n")
    assert natural_levels(members, load_mapping(m))["water"] == "natural"


def test_mapping_file_formats_and_errors(tmp_path):
    y = tmp_path / "m.yaml"
    y.write_text("supercategories:\n  Sacred:\n    - Church\n    - mosque\n")
    assert load_mapping(y).supercategory_of == {"church": "Sacred", "mosque": "Sacred"}
    c = tmp_path / "m.csv"
    c.write_text("instance_of,supercategory,natural_or_human_made\nlake,water,natural\npond,water,\n")
    mp = load_mapping(c)
    assert mp.supercategory_of == {"lake": "water", "pond": "water"} and mp.natural_of == {"water": "natural"}
    bad = tmp_path / "bad.csv"
    bad.write_text("instance_of,supercategory\nlake,water\nLake,sea\n")
    with pytest.raises(ValueError, match=r"bad.csv: line 3: label 'Lake' is mapped to both 'water' and 'sea'"):
        load_mapping(bad)
    bad2 = tmp_path / "bad.yaml"
    bad2.write_text("natural_or_human_made:\n  water: wet\n")
    with pytest.raises(ValueError, match="natural_or_human_made.water"):
        load_mapping(bad2)
    with pytest.raises(ValueError, match="must be .yaml"):
        (tmp_path / "m.txt").write_text("x")
        load_mapping(tmp_path / "m.txt")


def test_clustering_is_deterministic_and_order_free():
    weights = {w: 1 for w in ["church", "parish church", "catholic church", "mountain", "mountain range",
                              "mountain pass", "bridge", "arch bridge", "suspension bridge", "lake"]}
    a = cluster_labels(weights, 4, seed=0)
    b = cluster_labels(dict(reversed(list(weights.items()))), 4, seed=0)
    assert a == b
    groups = {}
    for label, name in a.items():
        groups.setdefault(name, set()).add(label)
    assert {"church", "parish church", "catholic church"} in groups.values()
    assert len(groups) == 4
    assert cluster_labels({"x": 1, "y": 5}, 78, seed=0) == {"x": "x", "y": "y"}  # K clipped to #labels


def test_cache_roundtrip_and_corrupt_entry(tmp_path):
    logs = []
    cache = JsonCache(tmp_path, log=logs.append)
    cache.put("entity", "Q1", {"id": "Q1", "p31": ["Q2"]}, source="network")
    assert cache.get("entity", "Q1") == {"id": "Q1", "p31": ["Q2"]}
    assert cache.get("entity", "Q2") is None
    path = next(tmp_path.rglob("*.json"))
    path.write_text("{truncated")
    assert cache.get("entity", "Q1") is None and logs
    assert not list(tmp_path.rglob("*.tmp"))
