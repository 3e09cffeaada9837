"""``build_hgldv2_cli``: what ``rbx datasets build hgldv2`` calls.

It maps the command-line options onto :func:`~.build.build_hgldv2` and turns
the builder's exceptions into the harness's error classes, so the CLI prints
one message with a fix instead of a traceback:

* bad or missing inputs (GLDv2 CSVs, hierarchy CSVs, mapping file, JSON dump,
  out-of-range parameters) -> :class:`~robustbench_x.errors.UsageError`;
* the Wikimedia APIs failing after every retry -> :class:`~robustbench_x.errors.JobError`
  (everything fetched so far is cached: rerunning the same command resumes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustbench_x.errors import JobError, UsageError

from .build import build_hgldv2
from .wikimedia import WikimediaError

__all__ = ["build_hgldv2_cli"]


def build_hgldv2_cli(
    gldv2_root,
    out,
    *,
    hierarchy_csv_dir=None,
    offline: bool = False,
    dump=None,
    mapping=None,
    log: Callable[[str], None] = print,
    **options: Any,
) -> dict[str, Any]:
    """Build the H-GLDv2 hierarchy files; return the manifest.

    Args:
        gldv2_root: ``--gldv2-root``, the folder with the GLDv2 CSV files.
        out: ``--out``, where ``train/index/query/landmarks.parquet`` and
            ``manifest.json`` go (the ``hierarchy_dir`` of a ``type: hgldv2`` dataset).
        hierarchy_csv_dir: ``--hierarchy-csv-dir``, folder with the public
            ``*_label_to_hierarchical.csv`` (validated and used; no network).
        offline: ``--offline``, never touch the network (cache and dump only).
        dump: ``--dump``, a JSON dump of Wikimedia answers (``build_hgldv2(dump_json=)``).
        mapping: ``--mapping``, YAML/CSV clustering overrides (``build_hgldv2(mapping_file=)``).
        log: progress lines (the CLI passes its console logger).
        **options: any other keyword of :func:`~.build.build_hgldv2`
            (``n_superclasses``, ``seed``, ``rate_limit_per_s``, ``cache_dir``...).
    """
    root = Path(gldv2_root)
    if not root.is_dir():
        raise UsageError(f"--gldv2-root {root} is not a folder\n  fix: pass the folder holding the GLDv2 CSV files (train_clean.csv, index.csv, ...)")
    for flag, value, want_dir in (("--hierarchy-csv-dir", hierarchy_csv_dir, True), ("--dump", dump, False), ("--mapping", mapping, False)):
        if value is None:
            continue
        path = Path(value)
        if (want_dir and not path.is_dir()) or (not want_dir and not path.is_file()):
            raise UsageError(f"{flag} {path} does not exist\n  fix: pass an existing {'folder' if want_dir else 'file'} or drop the option")
    if hierarchy_csv_dir is not None and (dump is not None or mapping is not None):
        raise UsageError("--hierarchy-csv-dir uses the public hierarchy files as they are; --dump and --mapping only apply to a fresh build from Wikidata\n  fix: drop one or the other")
    import inspect

    accepted = set(inspect.signature(build_hgldv2).parameters) - {"gldv2_root", "out_dir", "hierarchy_csv_dir", "offline", "dump_json", "mapping_file", "log"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise UsageError(f"unknown H-GLDv2 build option(s) {', '.join(unknown)}\n  fix: use among {', '.join(sorted(accepted))}")
    try:
        return build_hgldv2(
            root, Path(out), hierarchy_csv_dir=hierarchy_csv_dir, offline=offline,
            dump_json=dump, mapping_file=mapping, log=log, **options,
        )
    except WikimediaError as exc:
        raise JobError(
            f"H-GLDv2 build stopped: {exc}\n  fix: rerun the same command to resume (answers fetched so far are cached), "
            "or build without the network: --offline [--dump JSON]"
        ) from None
    except ValueError as exc:  # GLDv2FormatError and bad mapping / dump / parameters
        raise UsageError(f"H-GLDv2 build: {exc}\n  fix: correct the file or option named above") from None
