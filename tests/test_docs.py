"""The documentation lives in the repository and covers what is registered.

* every first-party metric, method and dataset has an entry (a heading or the
  first cell of a table row naming it) in its page under ``docs/``;
* no tracked file refers to a path outside the repository;
* every relative link of ``README.md`` and ``docs/*.md`` resolves, anchors
  included, and so does every ``docs/<page>.md#<anchor>`` cited in the code.
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

from robustbench_x.registry import get_registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = {"metrics": DOCS / "metrics.md", "methods": DOCS / "methods.md", "datasets": DOCS / "datasets.md"}
FIRST_PARTY = "robustbench_x"

# Built by concatenation so that this file does not match its own patterns.
OUTSIDE = re.compile(
    "|".join(
        [
            r"\.\./" + "shared",
            "shared/" + "references",
            "/" + r"work/",
            r"/home/[A-Za-z0-9_.-]+/",
            r"/Users/[A-Za-z0-9_.-]+/",
            r"[A-Z]:\\" + r"Users\\",
            "harness" + r"-design\.md",
            "next" + r"-capabilities\.md",
            r"(?<![\w/])(?:metrics|methods|datasets)\.md`*\s*" + "§",
        ]
    )
)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
DOC_REF = re.compile(r"docs/([a-z_-]+\.md)#([A-Za-z0-9_-]+)")
CODE = re.compile(r"`([^`]+)`")


def _tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / p for p in out.decode().split("\0") if p]


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        return None


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    seen: dict[str, int] = {}
    anchors = set(re.findall(r"<a (?:id|name)=\"([^\"]+)\"", text))
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.MULTILINE):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return frozenset(anchors)


def _entries(page: Path) -> set[str]:
    """Names a page documents: words of its headings, code spans of its tables' first cells."""
    names: set[str] = set()
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    for line in text.splitlines():
        if line.startswith("#"):
            names.update(w.strip("`,:()") for w in line.lstrip("#").split())
        elif line.startswith("|"):
            first = line.strip("|").split("|")[0]
            names.update(CODE.findall(first))
    return names


def _first_party(kind: str) -> list[str]:
    registry = get_registry()
    return [n for n in registry.names(kind) if registry.origin(kind, n).distribution == FIRST_PARTY]


@pytest.mark.parametrize("kind", sorted(PAGES))
def test_every_registered_component_has_an_entry(kind):
    names = _first_party(kind)
    assert names, f"no first-party {kind} registered: the check would pass vacuously"
    missing = sorted(set(names) - _entries(PAGES[kind]))
    assert not missing, f"{PAGES[kind].relative_to(ROOT)} has no heading or table row for {missing}"


def test_the_entry_finder_is_not_vacuous(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n### knn\n\n| metric | x |\n|---|---|\n| `auroc`, `ap` | y |\n\ntext `msp` only\n", encoding="utf-8")
    assert _entries(page) >= {"knn", "auroc", "ap"} and "msp" not in _entries(page)


def test_no_tracked_file_points_outside_the_repository():
    offenders = []
    for path in _tracked():
        if path == Path(__file__).resolve():
            continue
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert not offenders, "references to paths outside the repository:\n" + "\n".join(offenders)


@pytest.mark.parametrize("line", ["see ``/" + "work/shared/x.md``", "(metrics.md " + "§2.3)", "../" + "shared/DESIGN.md", "/home/" + "alice/data"])
def test_outside_pattern_catches(line):
    assert OUTSIDE.search(line)


def _links() -> list[tuple[Path, str]]:
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    return [(page, target) for page in pages for target in LINK.findall(re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL))]


def _resolve(source: Path, target: str) -> str | None:
    """None when ``target`` resolves, else the reason."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
        return None
    path_part, _, anchor = target.partition("#")
    path = (source.parent / path_part).resolve() if path_part else source
    if not path.exists():
        return f"{path_part} does not exist"
    if anchor and path.suffix == ".md" and anchor not in _anchors(path):
        return f"{path.name} has no anchor #{anchor}"
    return None


def test_every_relative_link_resolves():
    links = _links()
    assert len(links) > 10
    broken = [f"{page.relative_to(ROOT)}: ({target}) {reason}" for page, target in links if (reason := _resolve(page, target))]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_check_catches_a_broken_anchor(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("## Real heading\n", encoding="utf-8")
    assert _resolve(page, "a.md#real-heading") is None
    assert _resolve(page, "a.md#no-such") and _resolve(page, "missing.md")


def test_every_docs_anchor_cited_in_the_code_exists():
    broken = []
    for path in _tracked():
        text = _text(path)
        if text is None or path.suffix not in {".py", ".md", ".toml", ".yaml", ".tmpl"}:
            continue
        for page, anchor in DOC_REF.findall(text):
            target = DOCS / page
            if not target.exists() or anchor not in _anchors(target):
                broken.append(f"{path.relative_to(ROOT)}: docs/{page}#{anchor}")
    assert not broken, "citations of missing docs anchors:\n" + "\n".join(sorted(set(broken)))


def test_the_methods_table_agrees_with_the_specs():
    """docs/methods.md's summary table: plugin package, outputs and requires of every method."""
    registry = get_registry()
    rows = {}
    for line in PAGES["methods"].read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            for name in CODE.findall(cells[0]):
                rows[name] = cells[1:]
    assert set(rows) == set(_first_party("methods"))
    for name, (package, outputs, requires) in rows.items():
        spec = registry.get("methods", name)
        assert package.strip("`") == spec.factory.split(".")[0], name
        assert {w.strip() for w in outputs.split(",")} == set(spec.outputs), name
        assert {w.strip() for w in requires.split(",")} == set(spec.requires), name


def _sections(page: Path) -> dict[str, str]:
    """Heading text -> the text under it, up to the next heading."""
    parts = re.split(r"^#{2,6} +(.+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {parts[i].strip().strip("`"): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _undescribed(names: list[str]) -> list[str]:
    """Methods with no '*Deviations*' sentence under their heading nor under the one it refers to."""
    sections = _sections(PAGES["methods"])
    missing = []
    for name in names:
        text = sections.get(name, "")
        referred = [sections.get(a, "") for a in re.findall(r"\]\(#([\w-]+)\)", text)]
        if "*Deviations*" not in text and not any("*Deviations*" in t for t in referred):
            missing.append(name)
    return missing


def test_declared_deviations_are_described():
    """A method whose spec declares deviations says so in docs/methods.md."""
    declared = [n for n in _first_party("methods") if get_registry().get("methods", n).deviations]
    missing = _undescribed(declared)
    assert not missing, f"docs/methods.md: add a '*Deviations*:' sentence under the heading of {missing}"


def test_the_deviation_check_reads_sections_and_references():
    assert _undescribed(["confidnet", "heat-el", "purview-final"]) == []
    assert _undescribed(["maxlogit", "msp"]) == ["maxlogit", "msp"]
