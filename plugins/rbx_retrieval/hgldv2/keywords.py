"""Curated keyword list for the top level of H-GLDv2: natural vs human-made.

The original labels come from a manual decision per cluster (``docs/datasets.md#hgldv2``); this builder decides automatically from the Wikidata "instance of"
labels, and a mapping file can override any super-category
(``natural_or_human_made:`` section, see :mod:`.clustering`).

Rule for one label (lower-cased, text in parentheses removed, words split on
spaces and hyphens):

1. **human-made** if any word is in :data:`HUMAN_MADE_MARKERS` ("artificial
   lake", "man-made island", "reservoir");
2. **natural** if the label ends with a phrase of :data:`NATURAL_PHRASES`
   ("national park", "mountain range", "hot spring") or its last word, the
   head noun of an English compound, is in :data:`NATURAL_HEADS` ("lake",
   "glacier", "peak"); so "mountain" is natural but "mountain hut" and
   "lake house" are not;
3. **human-made** otherwise (buildings, bridges, monuments, squares...: the
   large majority of GLDv2 landmarks).

A super-category is natural when the natural labels among its members hold a
strict majority of its landmarks (ties go to human-made).
"""

from __future__ import annotations

import re

__all__ = ["NATURAL_HEADS", "NATURAL_PHRASES", "HUMAN_MADE_MARKERS", "is_natural", "KEYWORDS_VERSION"]

KEYWORDS_VERSION = "1"

#: Head nouns of natural landforms, water bodies, vegetation and protected natural areas.
NATURAL_HEADS = frozenset(
    """
    mountain mountains mount massif peak summit hill hills hillock ridge volcano stratovolcano caldera crater
    glacier icefield icefall moraine nunatak plateau mesa butte escarpment cliff cliffs crag tor inselberg
    valley canyon gorge ravine gully col saddle
    lake lakes pond tarn lagoon loch river stream creek brook rivulet tributary waterfall waterfalls cascade
    rapids spring geyser fumarole estuary delta fjord firth bay gulf cove inlet strait sound sea ocean
    island islands islet isle atoll archipelago peninsula cape headland promontory coast coastline shore beach
    dune dunes desert oasis steppe tundra savanna prairie meadow grassland heath moor moorland wetland marsh
    swamp bog fen mire reef sandbank spit tombolo
    forest woodland rainforest jungle grove tree trees
    cave cavern grotto sinkhole cenote karst landform
    """.split()
)

#: Multi-word natural phrases matched at the end of the label.
NATURAL_PHRASES = (
    "national park",
    "nature reserve",
    "natural reserve",
    "nature park",
    "protected area",
    "protected landscape",
    "natural monument",
    "natural arch",
    "natural bridge",
    "rock formation",
    "rock shelter",
    "mountain range",
    "mountain pass",
    "mountain chain",
    "hot spring",
    "body of water",
    "sea stack",
    "rock",
    "wilderness area",
    "biosphere reserve",
    "geopark",
)

#: Any of these words makes a label human-made, whatever its head noun.
HUMAN_MADE_MARKERS = frozenset(
    "artificial man-made manmade reservoir reservoirs dam dams canal quarry mine pit".split()
)

_PAREN = re.compile(r"\([^)]*\)")


def _words(label: str) -> list[str]:
    text = _PAREN.sub(" ", label.lower())
    return [w for w in re.split(r"[\s]+", text.strip()) if w]


def is_natural(label: str) -> bool:
    """True if the Wikidata class label names a natural thing (rule in the module docstring)."""
    words = _words(label)
    if not words:
        return False
    split_words = {part for w in words for part in [w, *w.split("-")]}
    if split_words & HUMAN_MADE_MARKERS:
        return False
    text = " ".join(words)
    if any(text == p or text.endswith(" " + p) for p in NATURAL_PHRASES):
        return True
    return words[-1] in NATURAL_HEADS
