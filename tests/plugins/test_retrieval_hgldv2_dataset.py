"""The ``hgldv2`` dataset type on a tiny fixture: GLDv2-format CSVs and public
hierarchy CSVs turned into Parquet by the builder, a few generated JPEGs in the
GLDv2 image tree; read directly, through datasets.yaml, and run through the
retrieval suite with a throw-away model plugin. Also ``build_hgldv2_cli``."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from robustbench_x.errors import ConfigError, JobError, UsageError

C = "http://commons.wikimedia.org/wiki/Category:"


def hexid(prefix: str, i: int) -> str:
    return prefix + f"{i:015x}"


# index landmark -> (cluster, natural/human-made, RGB colour of its images); 103 has no cluster
LANDMARKS = {
    100: ("religious", "human-made", (220, 30, 30)),
    101: ("mountains", "natural", (30, 200, 30)),
    102: ("religious", "human-made", (200, 90, 30)),
    103: ("", "", (30, 30, 220)),
}
INDEX = {lm: [hexid("b", (lm - 100) * 16 + j) for j in range(2 + (lm == 101))] for lm in LANDMARKS}
NO_LANDMARK = hexid("b", 999)  # in index.csv, in no landmark
SOLUTION = [  # (test id, index images or None, Usage)
    (hexid("c", 1), INDEX[100], "Public"),
    (hexid("c", 2), INDEX[101][:1], "Private"),
    (hexid("c", 3), None, "Ignored"),
    (hexid("c", 4), INDEX[102][1:], "Public"),
    (hexid("c", 5), INDEX[103], "Public"),  # landmark without hierarchy: dropped
    (hexid("c", 6), INDEX[101][2:] + INDEX[100][:1], "Public"),  # first listed image decides: 101
]
QUERY_LANDMARK = {hexid("c", 1): 100, hexid("c", 2): 101, hexid("c", 4): 102, hexid("c", 6): 101}
# supercategory ids = positions of sorted names: mountains 0, religious 1; human-made 0, natural 1
HIER = {100: [100, 1, 0], 101: [101, 0, 1], 102: [102, 1, 0]}


def write_fixture(base: Path) -> dict[str, Path]:
    from rbx_retrieval.hgldv2 import build_hgldv2_cli

    csv = base / "gldv2_csv"
    csv.mkdir(parents=True)
    (csv / "train_clean.csv").write_text("landmark_id,images\n7," + hexid("a", 1) + "\n")
    index_rows = [(i, lm) for lm, ims in INDEX.items() for i in ims]
    (csv / "index.csv").write_text("id\n" + "".join(f"{i}\n" for i, _ in index_rows) + NO_LANDMARK + "\n")
    (csv / "index_image_to_landmark.csv").write_text("id,landmark_id\n" + "".join(f"{i},{lm}\n" for i, lm in index_rows))
    (csv / "test.csv").write_text("id\n" + "".join(f"{t}\n" for t, _, _ in SOLUTION))
    (csv / "retrieval_solution_v2.1.csv").write_text(
        "id,images,Usage\n" + "".join(f"{t},{' '.join(ims) if ims else 'None'},{u}\n" for t, ims, u in SOLUTION)
    )
    hier = base / "hier_csv"
    hier.mkdir()
    header = "landmark_id,category,supercategory,hierarchical_label,natural_or_human_made\n"
    (hier / "train_label_to_hierarchical.csv").write_text(header + f"7,{C}X7,church,religious,human-made\n")
    (hier / "index_label_to_hierarchical.csv").write_text(
        header + "".join(f"{lm},{C}X{lm},sub{lm},{sc},{top}\n" for lm, (sc, top, _) in LANDMARKS.items())
    )
    manifest = build_hgldv2_cli(csv, base / "hgldv2", hierarchy_csv_dir=hier, log=lambda m: None)
    assert manifest["mode"] == "public_csv"
    images = base / "gldv2_images"
    rng = np.random.default_rng(0)
    for folder, ids in (("index", index_rows), ("test", [(t, QUERY_LANDMARK.get(t, 103)) for t, _, _ in SOLUTION])):
        for image_id, lm in ids:
            path = images / folder / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            size = (int(rng.integers(12, 20)), int(rng.integers(12, 20)))
            Image.new("RGB", size, LANDMARKS[lm][2]).save(path, quality=95)
    return {"images": images, "hierarchy": base / "hgldv2", "csv": csv, "hier_csv": hier}


@pytest.fixture
def fixture(tmp_path):
    return write_fixture(tmp_path)


def open_dataset(fx, **options):
    from rbx_retrieval.hgldv2.dataset import build

    return build("landmarks", {"root": str(fx["images"]), "hierarchy_dir": str(fx["hierarchy"]), **options})


def test_reader_subsets_labels_hierarchy_and_images(fixture):
    ds = open_dataset(fixture)
    assert ds.task == "retrieval" and ds.provides == {"hierarchy"}
    assert ds.subsets() == ["query", "gallery"]
    gallery = ds.samples("gallery")
    # index.csv order; landmark 103 (no cluster) and the image without a landmark are left out
    expected_gallery = INDEX[100] + INDEX[101] + INDEX[102]
    assert gallery.ids == expected_gallery
    assert gallery.labels.tolist() == [100, 100, 101, 101, 101, 102, 102]
    assert ds.hierarchy("gallery").tolist() == [HIER[lm] for lm in gallery.labels]
    assert ds.hierarchy("gallery").dtype == np.int64
    query = ds.samples("query")
    assert query.ids == list(QUERY_LANDMARK)  # ignored row and the 103 query dropped, file order kept
    assert query.labels.tolist() == list(QUERY_LANDMARK.values())
    assert ds.hierarchy("query").tolist() == [HIER[lm] for lm in QUERY_LANDMARK.values()]
    image, label, sid = query[0]
    assert image.mode == "RGB" and label == 100 and sid == hexid("c", 1)
    assert np.abs(np.asarray(image, dtype=int).mean(axis=(0, 1)) - LANDMARKS[100][2]).max() < 3
    assert query.path(0) == fixture["images"] / "test" / "c" / "0" / "0" / f"{hexid('c', 1)}.jpg"
    assert ds.classes == ["100", "101", "102"]
    # usage split
    assert open_dataset(fixture, split="public").samples("query").ids == [hexid("c", 1), hexid("c", 4), hexid("c", 6)]
    assert open_dataset(fixture, split="Private").samples("query").ids == [hexid("c", 2)]
    assert open_dataset(fixture, split="public").samples("gallery").ids == expected_gallery
    # no train subset, and the error says what to do instead
    with pytest.raises(KeyError, match="pretrained model"):
        ds.samples("train")


def test_fingerprint_is_stable_and_follows_the_images(fixture):
    a, b = open_dataset(fixture), open_dataset(fixture)
    assert a.fingerprint("gallery") == b.fingerprint("gallery")
    assert a.fingerprint("query") != a.fingerprint("gallery")
    assert open_dataset(fixture, split="public").fingerprint("query") != a.fingerprint("query")
    path = a.samples("gallery").path(0)
    Image.new("RGB", (40, 40), (0, 0, 0)).save(path)
    assert open_dataset(fixture).fingerprint("gallery") != a.fingerprint("gallery")
    assert open_dataset(fixture).fingerprint("query") == a.fingerprint("query")


def test_missing_files_and_bad_options_are_named(fixture, tmp_path):
    ds = open_dataset(fixture)
    missing = ds.samples("gallery").path(1)
    missing.unlink()
    with pytest.raises(ValueError, match=r"1 of 7 gallery images are missing, e\.g\. .*" + missing.name):
        ds.fingerprint("gallery")
    with pytest.raises(ValueError, match=r"GLDv2 image not found: .*" + missing.name):
        ds.samples("gallery")[1]
    (fixture["hierarchy"] / "manifest.json").rename(tmp_path / "manifest.json")
    with pytest.raises(ConfigError, match=r"(?s)manifest.json not found: the H-GLDv2 build did not complete .*fix: run `rbx datasets build hgldv2"):
        open_dataset(fixture)
    (tmp_path / "manifest.json").rename(fixture["hierarchy"] / "manifest.json")
    with pytest.raises(ConfigError, match=r"(?s)unknown split 'test'.*use all, public or private"):
        open_dataset(fixture, split="test")
    with pytest.raises(ConfigError, match=r"gallery image folder does not exist"):
        open_dataset(fixture, gallery_dir="nowhere")
    with pytest.raises(ConfigError, match=r"unknown key 'roots'"):
        open_dataset(fixture, roots="x")
    manifest = json.loads((fixture["hierarchy"] / "manifest.json").read_text())
    manifest["schema"] = "hgldv2/0"
    (fixture["hierarchy"] / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"(?s)schema 'hgldv2/0'.*rebuild"):
        open_dataset(fixture)


MODEL_PLUGIN = '''
"""A throw-away model plugin: the mean colour of an image as logits and features."""
import numpy as np

from robustbench_x import hookimpl
from robustbench_x.api import Model, ModelSpec


@hookimpl
def rbx_models():
    return [ModelSpec("mean-colour", factory="rbx_test_mean_colour:build", provides={"logits", "features"})]


def _transform(image):
    import torch

    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) / 255.0)


class MeanColour(Model):
    name = "mean-colour"
    num_classes = 3
    provides = frozenset({"logits", "features"})

    @property
    def module(self):
        import torch

        return torch.nn.Identity()

    def transform(self):
        return _transform

    def forward(self, x):
        return x, x

    def fingerprint(self):
        return "mean-colour-v1"


def build(arch=None, options=None, dataset=None, seed=0, log=print):
    return MeanColour()
'''


def test_hgldv2_runs_through_the_retrieval_suite_from_datasets_yaml(fixture, tmp_path, cli, monkeypatch):
    from robustbench_x.results import read_results, read_scores

    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "rbx_test_mean_colour.py").write_text(MODEL_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plugin"))
    monkeypatch.setenv("RBX_PLUGINS", "rbx_test_mean_colour")
    config = tmp_path / "datasets.yaml"
    config.write_text(textwrap.dedent(f"""\
        datasets:
          landmarks:
            type: hgldv2
            root: {os.path.relpath(fixture['images'], tmp_path)}
            hierarchy_dir: {os.path.relpath(fixture['hierarchy'], tmp_path)}
            split: all
    """))
    verify = cli("datasets", "verify", "landmarks", "--config", str(config))
    assert verify.code == 0, verify
    assert "landmarks query: 4 samples" in verify.out and "landmarks gallery: 7 samples" in verify.out

    out = tmp_path / "store"
    run = cli("--quiet", "run", "--suite", "retrieval", "--config", str(config), "--models", "mean-colour",
              "--datasets", "landmarks", "--out", str(out), "--format", "json")
    assert run.code == 0, run
    frame = read_results(out)
    # The rank-loss heads train on a train split, which H-GLDv2 does not have: skipped, saying so.
    heads = frame[frame["method"].str.endswith("-head")]
    assert set(heads["method"]) == {"roadmap-head", "happier-head", "smoothap-head"}
    assert (heads["status"] == "skipped").all() and heads["error"].str.contains("requires train_split").all()
    frame = frame[~frame["method"].str.endswith("-head")]
    assert (frame["status"] == "ok").all() and set(frame["method"]) == {"embedding", "logit-embedding"}
    # Same landmark = same colour; the other "religious" landmark is the closest colour; the natural one is far:
    # every ranking is the ideal one, so every metric is 1.
    assert np.allclose(frame["value"], 1.0) and (frame["n"] == 4).all()
    scores = read_scores(out, "retrieval", "mean-colour", "landmarks", "embedding")
    assert list(scores["sample_id"]) == list(QUERY_LANDMARK) and scores["prediction"].tolist() == list(QUERY_LANDMARK.values())
    assert scores["n_relevant"].tolist() == [2, 3, 2, 3]


def test_build_hgldv2_cli_maps_options_and_errors(fixture, tmp_path):
    from rbx_retrieval.hgldv2 import build_hgldv2_cli

    # rebuilding into another folder gives the same Parquet bytes
    m = build_hgldv2_cli(str(fixture["csv"]), str(tmp_path / "again"), hierarchy_csv_dir=str(fixture["hier_csv"]), log=lambda m: None)
    assert (tmp_path / "again" / "index.parquet").read_bytes() == (fixture["hierarchy"] / "index.parquet").read_bytes()
    assert m["coverage"]["query"]["queries"] == 5 and m["coverage"]["query"]["ignored"] == 1
    with pytest.raises(UsageError, match=r"--gldv2-root .* is not a folder"):
        build_hgldv2_cli(tmp_path / "nope", tmp_path / "o")
    with pytest.raises(UsageError, match=r"--mapping .* does not exist"):
        build_hgldv2_cli(fixture["csv"], tmp_path / "o", mapping=tmp_path / "mapping.yaml")
    (tmp_path / "dump.json").write_text("{}")
    with pytest.raises(UsageError, match=r"--dump and --mapping only apply to a fresh build"):
        build_hgldv2_cli(fixture["csv"], tmp_path / "o", hierarchy_csv_dir=fixture["hier_csv"], dump=tmp_path / "dump.json")
    with pytest.raises(UsageError, match=r"unknown H-GLDv2 build option\(s\) n_clusters"):
        build_hgldv2_cli(fixture["csv"], tmp_path / "o", n_clusters=3)
    (fixture["csv"] / "test.csv").write_text("id\nnot-an-id\n")
    with pytest.raises(UsageError, match=r"test.csv"):
        build_hgldv2_cli(fixture["csv"], tmp_path / "o", hierarchy_csv_dir=fixture["hier_csv"], log=lambda m: None)
    # offline with no cache and no dump: nothing fetched, the build completes with unresolved landmarks
    (fixture["csv"] / "test.csv").write_text("id\n" + "".join(f"{t}\n" for t, _, _ in SOLUTION))
    for name in ("train_label_to_category.csv", "index_label_to_category.csv"):
        (fixture["csv"] / name).write_text("landmark_id,category\n")
    offline = build_hgldv2_cli(fixture["csv"], tmp_path / "offline", offline=True, n_superclasses=2, log=lambda m: None)
    assert offline["mode"] == "wikidata" and offline["network"]["requests"] == 0


def test_network_failure_becomes_a_job_error(fixture, tmp_path, monkeypatch):
    from rbx_retrieval.hgldv2 import WikimediaUnavailable, cli as build_cli

    def fail(*args, **kwargs):
        raise WikimediaUnavailable("GET https://commons.wikimedia.org/w/api.php: retries exhausted")

    monkeypatch.setattr(build_cli, "build_hgldv2", fail)
    with pytest.raises(JobError, match=r"retries exhausted\n  fix: rerun the same command to resume"):
        build_cli.build_hgldv2_cli(fixture["csv"], tmp_path / "o")
