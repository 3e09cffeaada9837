"""Train the built-in CNN's shipped weights from scratch and print their sha256.

The embedded default evaluates weights shipped in ``plugins/rbx_models/weights/``
(see :mod:`rbx_models.smallcnn`), so that every machine scores the same
network. This script is how they were made; anyone can rerun it::

    python tools/train_builtin.py             # rewrite plugins/rbx_models/weights/ and its manifest.json
    python tools/train_builtin.py --check     # train into a temporary folder, compare with the shipped files (exit 1 if any differs)
    python tools/train_builtin.py --out DIR   # write elsewhere

It trains, with the built-in recipe (:mod:`rbx_models.training`: seeded, one
thread), the model of every entry of :data:`SHIPPED`: the six-class digits of
``embedded-digits`` for seed 0 and the four other members of a ``K = 5`` Deep
Ensemble (seeds 1000 … 4000), and the ten-class digits of
``embedded-digits-hier`` for seed 0. About 15 s of CPU in all. On the machine
that produced the shipped files (``generated_with`` in the manifest) the
output is bit-for-bit identical; another CPU or torch build may use other
float kernels and produce weights that differ in the last bits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers next to this script
from shipped_weights import check, environment, sha256_logged  # noqa: E402

#: (dataset, factory, seeds) whose weights ship with the package.
SHIPPED = (
    ("embedded-digits", "rbx_datasets.embedded:build", (0, 1000, 2000, 3000, 4000)),
    ("embedded-digits-hier", "rbx_retrieval.embedded_hier:build", (0,)),
)


def file_name(dataset: str, seed: int) -> str:
    return f"{dataset}-seed{seed}.safetensors"



def train_all(out: Path, epochs: int | None = None, log=print) -> dict:
    """Train every shipped model into ``out``; write ``manifest.json``; return the manifest."""
    from safetensors.torch import save_file

    from rbx_models.smallcnn import RECIPE, TRANSFORM, weights_key
    from rbx_models.training import train_smallcnn
    from robustbench_x.api import load_factory

    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, factory, seeds in SHIPPED:
        dataset = load_factory(factory)(name=name)
        classes = len(dataset.classes)
        train = dataset.fingerprint("train")
        for seed in seeds:
            net = train_smallcnn(dataset, seed, classes, epochs=epochs)
            path = out / file_name(name, seed)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
            digest = sha256_logged(path, log)
            entries.append({"file": path.name, "dataset": name, "seed": seed, "classes": classes, "train_fingerprint": train, "key": weights_key(train, seed, classes), "sha256": digest})
    manifest = {
        "recipe": RECIPE if epochs is None else {**RECIPE, "epochs": epochs},
        "transform": TRANSFORM,
        "generated_with": environment(),
        "command": "python tools/train_builtin.py",
        "weights": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    from rbx_models.smallcnn import MANIFEST, WEIGHTS_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help=f"folder to write (default: {WEIGHTS_DIR})")
    parser.add_argument("--check", action="store_true", help="train into a temporary folder and compare with the shipped weights")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (tests only; never for shipped weights)")
    args = parser.parse_args(argv)
    if not args.check:
        train_all(args.out, args.epochs)
        return 0
    return check(MANIFEST, lambda folder: train_all(folder, args.epochs, log=lambda m: None))


if __name__ == "__main__":
    sys.exit(main())
