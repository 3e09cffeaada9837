"""H-GLDv2: the hierarchical Google Landmarks v2 labels (landmark -> super-category
-> natural / human-made), built from the GLDv2 CSVs.

Two ways (``docs/datasets.md#hgldv2``):

(a) ``hierarchy_csv_dir=``: validate and index the public
    ``train_label_to_hierarchical.csv`` / ``index_label_to_hierarchical.csv``
    (:mod:`.public_csv`); no network.
(b) otherwise build afresh: Commons category -> Wikidata item -> "instance of"
    labels through the MediaWiki API (:mod:`.wikimedia`; rate limited, retried,
    cached per entry on disk by :mod:`.cache`, resumable, fully offline from
    the cache or a JSON dump), then TF-IDF char-n-gram + TruncatedSVD +
    K-means super-categories with a user-editable mapping file
    (:mod:`.clustering`) and a curated natural/human-made keyword list
    (:mod:`.keywords`). This is **not** the original semi-automatic pipeline
    (curated CSV + CLIP, see :mod:`.clustering`), so its clusters differ from
    the published 78; use (a) to reproduce published numbers.

Outputs and schema: :mod:`.build`. Entry points: :func:`build_hgldv2`, and
:func:`build_hgldv2_cli` (:mod:`.cli`: the same with the command-line option
names, errors turned into ``UsageError`` / ``JobError``) for
``rbx datasets build hgldv2``. Reading the built files with the GLDv2 images:
the ``hgldv2`` dataset type, :mod:`.dataset`.
"""

from .build import build_hgldv2, load_hgldv2_labels
from .cache import JsonCache
from .cli import build_hgldv2_cli
from .gldv2_csv import GLDv2FormatError
from .wikimedia import WikimediaError, WikimediaUnavailable

__all__ = [
    "build_hgldv2",
    "build_hgldv2_cli",
    "load_hgldv2_labels",
    "JsonCache",
    "GLDv2FormatError",
    "WikimediaError",
    "WikimediaUnavailable",
]
