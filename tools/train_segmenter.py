"""Train the built-in segmenter's shipped weights from scratch and print their sha256.

``embedded-scenes`` is evaluated with weights shipped in
``plugins/rbx_segmentation/weights/`` (see :mod:`rbx_segmentation.models`),
so every machine scores the same networks and a cold run trains nothing but
ConfidNet's head. This script is how they were made; anyone can rerun it::

    python tools/train_segmenter.py            # rewrite plugins/rbx_segmentation/weights/ and its manifest.json
    python tools/train_segmenter.py --check    # train into a temporary folder, compare with the shipped files (exit 1 if any differs)

It trains, with the recipe of :mod:`rbx_segmentation.net` (seeded, one
thread), on the train split of ``embedded-scenes``: the plain segmenter for
seed 0 and the four other members of a ``K = 5`` Deep Ensemble (seeds 1000 …
4000), and the ``M = 4`` BatchEnsemble and LP-BNN networks for seed 0. About
60 s of one idle CPU core. On the machine that produced the shipped files
(``generated_with`` in the manifest) the output is bit-for-bit identical;
another CPU or torch build may use other float kernels and produce weights
that differ in the last bits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers next to this script
from shipped_weights import check, environment, sha256_logged  # noqa: E402

#: (kind, members, seeds) trained on embedded-scenes' train split.
SHIPPED = (("plain", 1, (0, 1000, 2000, 3000, 4000)), ("batchensemble", 4, (0,)), ("lpbnn", 4, (0,)))
DATASET = "embedded-scenes"



def train_all(out: Path, log=print) -> dict:
    from rbx_segmentation.models import shipped_name, train_into
    from rbx_segmentation.net import RECIPE
    from rbx_segmentation.scenes import build

    dataset = build()
    entries = []
    for kind, members, seeds in SHIPPED:
        for seed in seeds:
            name = shipped_name(DATASET, kind, seed)
            key = train_into(dataset, seed, kind, members, out / name)
            digest = sha256_logged(out / name, log)
            entries.append({"file": name, "key": key, "dataset": DATASET, "kind": kind, "members": members, "seed": seed,
                            "train_fingerprint": dataset.fingerprint("train"), "sha256": digest})
    manifest = {"recipe": RECIPE, "generated_with": environment(), "weights": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="retrain into a temporary folder and compare with the shipped files")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "plugins" / "rbx_segmentation" / "weights")
    args = parser.parse_args(argv)
    if not args.check:
        args.out.mkdir(parents=True, exist_ok=True)
        train_all(args.out)
        return 0
    return check(args.out / "manifest.json", lambda folder: train_all(folder, log=lambda m: None))


if __name__ == "__main__":
    sys.exit(main())
