"""Train the built-in Lipschitz networks' shipped weights from scratch and print their sha256.

The ``certified`` and ``certified-segmentation`` suites evaluate weights shipped
in ``plugins/rbx_lipschitz/weights/`` (see :mod:`rbx_lipschitz.classifier`), so
every machine scores the same network. This script is how they were made
(needs the ``lipschitz`` extra, deel-torchlip)::

    python tools/train_lipschitz.py             # rewrite plugins/rbx_lipschitz/weights/ and its manifest.json
    python tools/train_lipschitz.py --check     # train into a temporary folder, compare with the shipped files (exit 1 if any differs)
    python tools/train_lipschitz.py --out DIR   # write elsewhere

Each entry of :data:`SHIPPED` is trained with its model's recipe (seeded, one
thread). On the machine that produced the shipped files (``generated_with`` in
the manifest) the output is bit-for-bit identical; another CPU or torch build
may use other float kernels and produce weights that differ in the last bits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers next to this script
from shipped_weights import check, environment, sha256_logged  # noqa: E402

#: (model, its recipe function, dataset, dataset factory, seed) whose weights ship with the package.
SHIPPED = (
    ("lipschitz-cnn", "rbx_lipschitz.classifier:recipe_for", "embedded-digits", "rbx_datasets.embedded:build", 0),
    ("lipschitz-segnet", "rbx_lipschitz.segmenter:recipe_for", "embedded-scenes", "rbx_segmentation.scenes:build", 0),
)



def train_all(out: Path, log=print) -> dict:
    """Train every shipped model into ``out``; write ``manifest.json``; return the manifest."""
    from importlib.metadata import version

    from safetensors.torch import save_file

    from robustbench_x.api import load_factory

    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for model, recipe, name, factory, seed in SHIPPED:
        dataset = load_factory(factory)(name=name, options={}, config_file=None)
        _layout, key, train = load_factory(recipe)(dataset, seed)
        path = out / f"{model}-{name}-seed{seed}.safetensors"
        save_file(train(), str(path))
        digest = sha256_logged(path, log)
        entries.append({"file": path.name, "model": model, "dataset": name, "seed": seed, "train_fingerprint": dataset.fingerprint("train"), "key": key, "sha256": digest})
    manifest = {
        "generated_with": {**environment(), "deel-torchlip": version("deel-torchlip")},
        "command": "python tools/train_lipschitz.py",
        "weights": entries,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    from rbx_lipschitz.classifier import MANIFEST, WEIGHTS_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help=f"folder to write (default: {WEIGHTS_DIR})")
    parser.add_argument("--check", action="store_true", help="train into a temporary folder and compare with the shipped weights")
    args = parser.parse_args(argv)
    if not args.check:
        train_all(args.out)
        return 0
    return check(MANIFEST, lambda folder: train_all(folder, log=lambda m: None))


if __name__ == "__main__":
    sys.exit(main())
