"""Wikimedia Commons / Wikidata look-ups: polite HTTP client, response parsing,
and a resolver that reads the cache, then a user dump, then the network.

API calls (MediaWiki Action API, ``GET <base>/w/api.php``, ``format=json``,
``formatversion=2``, ``maxlag=5``, at most ``batch_size`` (50, the anonymous
limit) keys per request, a descriptive ``User-Agent`` as the Wikimedia
User-Agent policy asks):

1. **Commons category -> Wikidata item**: ``commons_url`` with
   ``action=query&prop=pageprops&ppprop=wikibase_item&redirects=1&titles=A|B|...``.
   Response ``{"query": {"normalized": [{"from", "to"}], "redirects": [{"from", "to"}],
   "pages": [{"title", "ns", "pageid", "pageprops": {"wikibase_item": "Q.."}} |
   {"title", "missing": true} | {"title", "invalid": true}]}}``. The requested
   title is followed through ``normalized`` then ``redirects`` to its page.
2. **Item -> "instance of"**: ``wikidata_url`` with
   ``action=wbgetentities&ids=Q1|Q2&props=claims|labels&languages=en``.
   Response ``{"entities": {"Q1": {"id", "labels": {"en": {"value"}}, "claims":
   {"P31": [{"mainsnak": {"snaktype": "value", "datavalue": {"type":
   "wikibase-entityid", "value": {"id": "Q.."}}}, "rank": "normal"}]}}} |
   {"id", "missing": ""}}}``. P31 ("instance of") values of the **best rank**
   (preferred statements if any, else normal; deprecated never), in statement
   order. If the item is a Wikimedia category (P31 = Q4167836), its P301
   ("category's main topic") item is fetched the same way and used instead.
3. **Class labels**: ``action=wbgetentities&ids=...&props=labels&languages=en``
   for the P31 targets (English label; classes without one are skipped).

Retries: HTTP 429 and 5xx, connection errors / timeouts / a response cut
mid-body (``httpx.TransportError``), an unparsable JSON body, and the API
errors ``maxlag`` / ``ratelimited`` are retried up to ``max_retries`` times.
The wait honours ``Retry-After`` (seconds or HTTP date) when present, else is
``min(backoff_max_s, backoff_base_s * 2**attempt)`` (no jitter: a single
sequential client). Every attempt first takes a token from a token bucket
(``rate_limit_per_s`` tokens per second, burst 1), so retries are rate limited
too. Other HTTP statuses or API errors raise :class:`WikimediaError`.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "TokenBucket",
    "ApiClient",
    "WikimediaError",
    "WikimediaUnavailable",
    "WikimediaResolver",
    "USER_AGENT",
    "WIKIMEDIA_CATEGORY",
    "parse_commons_pageprops",
    "parse_entity",
]

USER_AGENT = (
    "robustbench_x-hgldv2/0.1 (H-GLDv2 hierarchy builder; "
    "https://github.com/robustbench-x; python-httpx)"
)
#: Wikidata class "Wikimedia category": such items are followed through P301.
WIKIMEDIA_CATEGORY = "Q4167836"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
RETRY_API_ERRORS = frozenset({"maxlag", "ratelimited"})


class WikimediaError(RuntimeError):
    """A Wikimedia API call failed in a way that retrying does not fix."""


class WikimediaUnavailable(WikimediaError):
    """Retries were exhausted; the cache keeps everything fetched so far: rerun to resume."""


class TokenBucket:
    """Token bucket: ``rate`` tokens per second, capacity ``burst``; ``acquire`` blocks."""

    def __init__(self, rate: float, burst: float = 1.0, *, clock=time.monotonic, sleep=time.sleep):
        if not rate > 0:
            raise ValueError(f"rate_limit_per_s must be > 0, got {rate}")
        self.rate, self.capacity = float(rate), max(1.0, float(burst))
        self.tokens = self.capacity
        self.clock, self.sleep = clock, sleep
        self.last = clock()
        self.waited = 0.0

    def acquire(self) -> None:
        while True:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return
            wait = (1.0 - self.tokens) / self.rate
            self.waited += wait
            self.sleep(wait)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class ApiClient:
    """``GET`` JSON from the MediaWiki API with rate limiting and retries (module docstring)."""

    def __init__(
        self,
        client,
        *,
        rate_limit_per_s: float = 2.0,
        max_retries: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] | None = None,
    ):
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.client = client
        self.bucket = TokenBucket(rate_limit_per_s, sleep=sleep)
        self.max_retries = int(max_retries)
        self.backoff_base_s, self.backoff_max_s = float(backoff_base_s), float(backoff_max_s)
        self.sleep = sleep
        self.log = log or (lambda message: None)
        self.requests = 0
        self.retries = 0

    def get_json(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        import httpx

        last = "no attempt"
        for attempt in range(self.max_retries + 1):
            self.bucket.acquire()
            self.requests += 1
            retry_after = None
            try:
                response = self.client.get(
                    url, params=params, headers={"User-Agent": USER_AGENT, "Accept": "application/json"}
                )
            except httpx.TransportError as exc:  # connect/read errors, timeouts, body cut short
                last = f"{type(exc).__name__}: {exc}"
            else:
                retry_after = _retry_after(response.headers.get("Retry-After"))
                if response.status_code in RETRY_STATUS:
                    last = f"HTTP {response.status_code}"
                elif response.status_code != 200:
                    raise WikimediaError(f"GET {response.url}: HTTP {response.status_code}: {response.text[:200]}")
                else:
                    try:
                        payload = response.json()
                    except ValueError as exc:
                        payload, last = None, f"invalid JSON body ({exc})"
                    if isinstance(payload, dict):
                        error = payload.get("error")
                        if not error:
                            return payload
                        code = error.get("code", "") if isinstance(error, dict) else str(error)
                        info = error.get("info", "") if isinstance(error, dict) else ""
                        if code not in RETRY_API_ERRORS:
                            raise WikimediaError(f"GET {response.url}: API error {code!r}: {info}")
                        last = f"API error {code!r}"
                    elif payload is not None:
                        last = "JSON body is not an object"
            if attempt == self.max_retries:
                break
            delay = retry_after if retry_after is not None else min(
                self.backoff_max_s, self.backoff_base_s * (2.0**attempt)
            )
            self.retries += 1
            self.log(f"hgldv2: {last} from {url}; retry {attempt + 1}/{self.max_retries} in {delay:.3g}s")
            self.sleep(delay)
        raise WikimediaUnavailable(
            f"GET {url} failed after {self.max_retries + 1} attempts (last: {last}); "
            "everything fetched so far is cached: rerun to resume"
        )


# --------------------------------------------------------------------------- parsing


def parse_commons_pageprops(requested: list[str], payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Map every requested title to ``{"title", "wikibase_item", "missing"}`` (module docstring, call 1)."""
    query = payload.get("query")
    if not isinstance(query, dict):
        raise WikimediaError("Commons pageprops response has no 'query' object")
    normalized = {n["from"]: n["to"] for n in query.get("normalized", [])}
    redirects = {r["from"]: r["to"] for r in query.get("redirects", [])}
    pages = query.get("pages", [])
    if isinstance(pages, dict):  # formatversion=1
        pages = list(pages.values())
    by_title = {p.get("title"): p for p in pages}
    out = {}
    for title in requested:
        current = normalized.get(title, title)
        for _ in range(10):  # follow redirect chains, bounded
            if current in redirects and current not in by_title:
                current = redirects[current]
            else:
                break
        page = by_title.get(current)
        if page is None:
            raise WikimediaError(f"Commons pageprops response lacks the page for {title!r}")
        missing = "missing" in page or "invalid" in page
        item = None if missing else (page.get("pageprops") or {}).get("wikibase_item")
        out[title] = {"title": current, "wikibase_item": item, "missing": bool(missing)}
    return out


def _best_item_values(statements: Iterable[dict[str, Any]]) -> list[str]:
    statements = [s for s in statements if s.get("rank", "normal") != "deprecated"]
    if any(s.get("rank") == "preferred" for s in statements):
        statements = [s for s in statements if s.get("rank") == "preferred"]
    out: list[str] = []
    for s in statements:
        snak = s.get("mainsnak", {})
        dv = snak.get("datavalue", {})
        if snak.get("snaktype", "value") != "value" or dv.get("type") != "wikibase-entityid":
            continue
        value = dv.get("value", {})
        qid = value.get("id") or (f"Q{value['numeric-id']}" if "numeric-id" in value else None)
        if qid and qid not in out:
            out.append(qid)
    return out


def _label(entity: dict[str, Any]) -> str | None:
    label = (entity.get("labels") or {}).get("en")
    if isinstance(label, dict):
        label = label.get("value")
    return label if isinstance(label, str) and label.strip() else None


def parse_entity(qid: str, entity: dict[str, Any] | None) -> dict[str, Any]:
    """``{"id", "missing", "label", "p31", "p301"}`` from a ``wbgetentities`` entity."""
    if entity is None or "missing" in entity:
        return {"id": qid, "missing": True, "label": None, "p31": [], "p301": []}
    claims = entity.get("claims") or entity.get("statements") or {}
    return {
        "id": entity.get("id", qid),
        "missing": False,
        "label": _label(entity),
        "p31": _best_item_values(claims.get("P31", [])),
        "p301": _best_item_values(claims.get("P301", [])),
    }


def _entities_by_request(requested: list[str], payload: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
    entities = payload.get("entities")
    if not isinstance(entities, dict):
        raise WikimediaError("wbgetentities response has no 'entities' object")
    redirected = {}
    for ent in entities.values():
        red = ent.get("redirects") if isinstance(ent, dict) else None
        if isinstance(red, dict) and "from" in red:
            redirected[red["from"]] = ent
    out = {}
    for qid in requested:
        ent = entities.get(qid, redirected.get(qid))
        if ent is None:
            raise WikimediaError(f"wbgetentities response lacks entity {qid}")
        out[qid] = ent
    return out


# --------------------------------------------------------------------------- dump


def _dump_commons(value) -> dict[str, Any] | None:
    if value is None:
        return {"title": None, "wikibase_item": None, "missing": True}
    if isinstance(value, str):
        return {"title": None, "wikibase_item": value, "missing": False}
    if isinstance(value, dict):
        return {
            "title": value.get("title"),
            "wikibase_item": value.get("wikibase_item"),
            "missing": bool(value.get("missing", False)),
        }
    raise ValueError(f"bad commons entry {value!r}")


def _dump_entity(qid: str, value) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"bad entity entry for {qid}: {value!r}")
    if "claims" in value or "statements" in value or "labels" in value:  # raw wbgetentities entity
        return parse_entity(qid, value)
    return {
        "id": value.get("id", qid),
        "missing": bool(value.get("missing", False)),
        "label": value.get("label"),
        "p31": list(value.get("p31", value.get("P31", []))),
        "p301": list(value.get("p301", value.get("P301", []))),
    }


def _dump_label(qid: str, value) -> dict[str, Any]:
    if value is None or isinstance(value, str):
        return {"id": qid, "missing": value is None, "label": value}
    if isinstance(value, dict):
        if "labels" in value:
            return {"id": qid, "missing": "missing" in value, "label": _label(value)}
        return {"id": qid, "missing": bool(value.get("missing", False)), "label": value.get("label")}
    raise ValueError(f"bad label entry for {qid}: {value!r}")


def load_dump(path) -> dict[str, dict[str, Any]]:
    """Read a user-supplied JSON dump into ``{"commons": {...}, "entity": {...}, "label": {...}}``.

    Accepted shape (every section optional)::

        {"commons":  {"Category:Name": "Q1" | null | {"wikibase_item": "Q1", "missing": false}},
         "entities": {"Q1": {"label": "..", "p31": ["Q5"], "p301": []} | <raw wbgetentities entity>},
         "labels":   {"Q5": "church" | {"label": "church"} | <raw entity with "labels">}}

    A raw ``wbgetentities`` response (``{"entities": {...}}``) is accepted as
    is; labels missing from ``labels`` are also looked up in ``entities``.
    :meth:`JsonCache.to_dump` writes this format.
    """
    from pathlib import Path

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read the JSON dump: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the JSON dump must be an object with 'commons' / 'entities' / 'labels'")
    try:
        commons = {k: _dump_commons(v) for k, v in (raw.get("commons") or {}).items()}
        entity = {k: _dump_entity(k, v) for k, v in (raw.get("entities") or {}).items()}
        label = {k: _dump_label(k, v) for k, v in (raw.get("labels") or {}).items()}
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    for qid, ent in entity.items():
        if qid not in label and ent.get("label"):
            label[qid] = {"id": qid, "missing": False, "label": ent["label"]}
    return {"commons": commons, "entity": entity, "label": label}


# --------------------------------------------------------------------------- resolver


class WikimediaResolver:
    """Look keys up in the cache, then the dump, then (if online) the API, writing
    every newly obtained entry to the cache as soon as its batch is parsed."""

    def __init__(self, cache, *, api: ApiClient | None, dump=None, commons_url: str, wikidata_url: str,
                 batch_size: int = 50, log: Callable[[str], None] | None = None):
        if not 1 <= int(batch_size) <= 50:
            raise ValueError(f"batch_size must be in [1, 50] (MediaWiki's per-request limit), got {batch_size}")
        self.cache, self.api, self.dump = cache, api, dump or {}
        self.commons_api = commons_url.rstrip("/") + "/w/api.php"
        self.wikidata_api = wikidata_url.rstrip("/") + "/w/api.php"
        self.batch_size = int(batch_size)
        self.log = log or (lambda message: None)
        self.stats = {"cache": 0, "dump": 0, "network": 0, "unavailable": 0}

    def resolve(self, kind: str, keys: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """``key -> value`` for every key; ``None`` when offline and not cached/dumped."""
        keys = sorted(set(keys))
        out: dict[str, dict[str, Any] | None] = {}
        pending = []
        for key in keys:
            value = self.cache.get(kind, key)
            if value is not None:
                out[key] = value
                self.stats["cache"] += 1
                continue
            value = self.dump.get(kind, {}).get(key)
            if value is not None:
                self.cache.put(kind, key, value, source="dump")
                out[key] = value
                self.stats["dump"] += 1
                continue
            pending.append(key)
        if pending and self.api is None:
            self.stats["unavailable"] += len(pending)
            out.update({key: None for key in pending})
            return out
        n_batches = -(-len(pending) // self.batch_size)
        for b in range(n_batches):
            batch = pending[b * self.batch_size : (b + 1) * self.batch_size]
            fetched = self._fetch(kind, batch)
            for key in batch:  # every entry is durable before the next request
                self.cache.put(kind, key, fetched[key], source="network")
                out[key] = fetched[key]
            self.stats["network"] += len(batch)
            if n_batches > 1 and (b + 1) % 20 == 0:
                self.log(f"hgldv2: {kind}: fetched {b + 1}/{n_batches} batches")
        return out

    def _fetch(self, kind: str, batch: list[str]) -> dict[str, dict[str, Any]]:
        common = {"format": "json", "formatversion": "2", "maxlag": "5"}
        if kind == "commons":
            params = dict(common, action="query", prop="pageprops", ppprop="wikibase_item",
                          redirects="1", titles="|".join(batch))
            return parse_commons_pageprops(batch, self.api.get_json(self.commons_api, params))
        if kind == "entity":
            params = dict(common, action="wbgetentities", ids="|".join(batch), props="claims|labels", languages="en")
            entities = _entities_by_request(batch, self.api.get_json(self.wikidata_api, params))
            return {qid: parse_entity(qid, ent) for qid, ent in entities.items()}
        if kind == "label":
            params = dict(common, action="wbgetentities", ids="|".join(batch), props="labels", languages="en")
            entities = _entities_by_request(batch, self.api.get_json(self.wikidata_api, params))
            return {
                qid: {"id": qid, "missing": ent is None or "missing" in ent, "label": None if ent is None else _label(ent)}
                for qid, ent in entities.items()
            }
        raise ValueError(f"unknown kind {kind!r}")
