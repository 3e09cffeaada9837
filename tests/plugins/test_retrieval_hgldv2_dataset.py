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
# train landmarks: another id space (7 is not index landmark 7); 5 has no cluster: its images are dropped
TRAIN_LANDMARKS = {
    7: ("religious", "human-made", (215, 35, 35)),
    8: ("mountains", "natural", (35, 205, 35)),
    9: ("religious", "human-made", (205, 85, 35)),
    5: ("", "", (35, 35, 215)),
}
TRAIN = {lm: [hexid("a", lm * 16 + j) for j in range(3)] for lm in TRAIN_LANDMARKS}
TRAIN_HIER = {7: [7, 1, 0], 8: [8, 0, 1], 9: [9, 1, 0]}


def write_fixture(base: Path) -> dict[str, Path]:
    from rbx_retrieval.hgldv2 import build_hgldv2_cli

    csv = base / "gldv2_csv"
    csv.mkdir(parents=True)
    (csv / "train_clean.csv").write_text("landmark_id,images\n" + "".join(f"{lm},{' '.join(ims)}\n" for lm, ims in TRAIN.items()))
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
    (hier / "train_label_to_hierarchical.csv").write_text(
        header + "".join(f"{lm},{C}T{lm},sub{lm},{sc},{top}\n" for lm, (sc, top, _) in TRAIN_LANDMARKS.items())
    )
    (hier / "index_label_to_hierarchical.csv").write_text(
        header + "".join(f"{lm},{C}X{lm},sub{lm},{sc},{top}\n" for lm, (sc, top, _) in LANDMARKS.items())
    )
    manifest = build_hgldv2_cli(csv, base / "hgldv2", hierarchy_csv_dir=hier, log=lambda m: None)
    assert manifest["mode"] == "public_csv"
    images = base / "gldv2_images"
    rng = np.random.default_rng(0)
    train_rows = [(i, lm) for lm, ims in TRAIN.items() for i in ims]
    for folder, ids, colours in (
        ("index", index_rows, LANDMARKS),
        ("test", [(t, QUERY_LANDMARK.get(t, 103)) for t, _, _ in SOLUTION], LANDMARKS),
        ("train", train_rows, TRAIN_LANDMARKS),
    ):
        for image_id, lm in ids:
            path = images / folder / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            size = (int(rng.integers(12, 20)), int(rng.integers(12, 20)))
            colour = colours[lm][2]
            if folder == "train":  # not one colour per landmark, so the heads have something to learn
                colour = tuple(int(c) for c in np.clip(np.array(colour) + rng.integers(-12, 13, 3), 0, 255))
            Image.new("RGB", size, colour).save(path, quality=95)
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


def _config(tmp_path, fx, extra: str = "") -> Path:
    config = tmp_path / "datasets.yaml"
    config.write_text(textwrap.dedent(f"""\
        datasets:
          landmarks:
            type: hgldv2
            root: {os.path.relpath(fx['images'], tmp_path)}
            hierarchy_dir: {os.path.relpath(fx['hierarchy'], tmp_path)}
    """) + extra)
    return config


def _with_mean_colour(tmp_path, monkeypatch) -> None:
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "rbx_test_mean_colour.py").write_text(MODEL_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plugin"))
    monkeypatch.setenv("RBX_PLUGINS", "rbx_test_mean_colour")


def _run_retrieval(cli, config: Path, out: Path):
    return cli("--quiet", "run", "--suite", "retrieval", "--config", str(config), "--models", "mean-colour",
               "--datasets", "landmarks", "--out", str(out), "--format", "json")


def _verify_and_run(cli, config: Path, out: Path):
    """``rbx datasets verify`` then the retrieval suite with the mean-colour model: (verify output, rows, head rows)."""
    from robustbench_x.results import read_results

    verify = cli("datasets", "verify", "landmarks", "--config", str(config))
    assert verify.code == 0, verify
    run = _run_retrieval(cli, config, out)
    assert run.code == 0, run
    frame = read_results(out)
    heads = frame[frame["method"].str.endswith("-head")]
    assert set(heads["method"]) == {"roadmap-head", "happier-head", "smoothap-head"}
    return verify.out, frame, heads


def test_hgldv2_runs_through_the_retrieval_suite_from_datasets_yaml(fixture, tmp_path, cli, monkeypatch):
    from robustbench_x.results import read_scores

    _with_mean_colour(tmp_path, monkeypatch)
    out = tmp_path / "store"
    verify, frame, heads = _verify_and_run(cli, _config(tmp_path, fixture, "    split: all\n"), out)
    assert "landmarks query: 4 samples" in verify and "landmarks gallery: 7 samples" in verify and "landmarks train:" not in verify
    # The rank-loss heads train on a train split, which the entry has only with `train:`: skipped, saying so.
    assert (heads["status"] == "skipped").all() and heads["error"].str.contains("requires train_split").all()
    frame = frame[~frame["method"].str.endswith("-head")]
    assert (frame["status"] == "ok").all() and set(frame["method"]) == {"embedding", "logit-embedding"}
    # Same landmark = same colour; the other "religious" landmark is the closest colour; the natural one is far:
    # every ranking is the ideal one, so every metric is 1.
    assert np.allclose(frame["value"], 1.0) and (frame["n"] == 4).all()
    scores = read_scores(out, "retrieval", "mean-colour", "landmarks", "embedding")
    assert list(scores["sample_id"]) == list(QUERY_LANDMARK) and scores["prediction"].tolist() == list(QUERY_LANDMARK.values())
    assert scores["n_relevant"].tolist() == [2, 3, 2, 3]


def test_train_subset_only_with_the_option(fixture):
    from rbx_retrieval.hgldv2 import load_hgldv2_labels

    plain = open_dataset(fixture)
    assert plain.subsets() == ["query", "gallery"] and plain.provides == {"hierarchy"}
    with pytest.raises(KeyError, match=r"no subset 'train'.*add 'train: train'"):
        plain.hierarchy("train")
    ds = open_dataset(fixture, train="train")
    assert ds.subsets() == ["query", "gallery", "train"] and ds.provides == {"hierarchy", "train_split"}
    train = ds.samples("train")
    # train_clean.csv order; train landmark 5 (no cluster) is left out
    assert train.ids == TRAIN[7] + TRAIN[8] + TRAIN[9]
    assert train.labels.tolist() == [7, 7, 7, 8, 8, 8, 9, 9, 9]
    hierarchy = ds.hierarchy("train")
    assert hierarchy.dtype == np.int64 and hierarchy.tolist() == [TRAIN_HIER[lm] for lm in train.labels]
    ids, labels = load_hgldv2_labels(fixture["hierarchy"], "train")
    assert list(ids) == train.ids and np.array_equal(labels, hierarchy)
    every_id, every_label = load_hgldv2_labels(fixture["hierarchy"], "train", drop_missing=False)
    assert len(every_id) == 12 and every_label[every_label[:, 0] == 5, 1:].tolist() == [[-1, -1]] * 3
    # columns 1-2 are one id space: train landmark 7 and index landmark 100 are both religious, human-made
    assert hierarchy[0, 1:].tolist() == ds.hierarchy("gallery")[0, 1:].tolist() == [1, 0]
    image, label, sid = train[3]
    assert image.mode == "RGB" and label == 8 and sid == TRAIN[8][0]
    assert train.path(0) == fixture["images"] / "train" / "a" / "0" / "0" / f"{TRAIN[7][0]}.jpg"
    # query, gallery and classes (index landmarks) are what they are without the option
    for subset in ("query", "gallery"):
        assert ds.samples(subset).ids == plain.samples(subset).ids
        assert ds.fingerprint(subset) == plain.fingerprint(subset)
    assert ds.classes == plain.classes == ["100", "101", "102"]
    # the train fingerprint: its own, not changed by the queries' Usage filter, follows the images
    fp = ds.fingerprint("train")
    assert fp not in {ds.fingerprint("query"), ds.fingerprint("gallery")}
    assert open_dataset(fixture, train="train", split="private").fingerprint("train") == fp
    Image.new("RGB", (30, 30), (0, 0, 0)).save(train.path(0))
    assert open_dataset(fixture, train="train").fingerprint("train") != fp


def test_missing_train_images_and_folder_are_named(fixture, tmp_path):
    ds = open_dataset(fixture, train="train")
    missing = ds.samples("train").path(4)
    missing.unlink()
    with pytest.raises(ValueError, match=r"1 of 9 train images are missing, e\.g\. .*" + missing.name + r".*fix: extract the GLDv2 image shards under .*train.*or remove 'train' from the entry"):
        ds.fingerprint("train")
    assert open_dataset(fixture).fingerprint("gallery")  # without the option no train image is looked at
    with pytest.raises(ConfigError, match=r"train image folder does not exist: .*nowhere") as exc:
        open_dataset(fixture, train="nowhere")
    assert exc.value.key == "datasets.landmarks.train"
    (fixture["hierarchy"] / "train.parquet").rename(tmp_path / "train.parquet")
    open_dataset(fixture)  # the train table is needed only with the option
    with pytest.raises(ConfigError, match=r"train.parquet not found"):
        open_dataset(fixture, train="train")


def test_the_builtin_cnn_is_refused_before_any_work(fixture, tmp_path, cli):
    for extra in ("", "    train: train\n", "    train: train\n    label_space: imagenet-1k\n"):
        config = _config(tmp_path, fixture, extra)
        out = tmp_path / "store"
        result = cli("run", "--suite", "retrieval", "--config", str(config), "--datasets", "landmarks", "--out", str(out))
        assert result.code == 2, (extra, result)
        text = " ".join(result.err.split())
        assert "model 'builtin-cnn' trains on the dataset it evaluates, and dataset 'landmarks' is evaluated with pretrained models only" in text
        assert "key 'datasets.landmarks'" in text and "`--models timm:resnet50` with `label_space: imagenet-1k`" in text
        assert not out.exists()


def test_retrieval_heads_train_on_the_hgldv2_train_split(fixture, tmp_path, cli, monkeypatch):
    from robustbench_x.results import read_results

    _with_mean_colour(tmp_path, monkeypatch)
    config = _config(tmp_path, fixture, "    train: train\n")
    verify, frame, heads = _verify_and_run(cli, config, tmp_path / "store")
    assert "landmarks train: 9 samples" in verify
    assert (heads["status"] == "ok").all() and (heads["n"] == 4).all() and heads["value"].between(0, 1).all()
    assert (frame["status"] == "ok").all()
    diagnostics = {m: json.loads(d) for m, d in heads.groupby("method")["diagnostics"].first().items()}
    # trained on the 9 train images (3 landmarks in 2 super-categories): 100 epochs x 1 pair of super-categories
    assert diagnostics["roadmap-head"]["steps"] == 1000 and diagnostics["happier-head"]["steps"] == 500
    for method, d in diagnostics.items():  # the fit changed the head: its training loss went down
        before, after = (float(x) for x in d["loss/total"].split(" -> "))
        assert after < before, (method, d)

    # a train image gone: the heads fail naming it (the train fingerprint, taken before any train image is read);
    # the other methods still run
    missing = open_dataset(fixture, train="train").samples("train").path(2)
    missing.unlink()
    again = _run_retrieval(cli, config, tmp_path / "store2")
    assert again.code == 1, again
    frame = read_results(tmp_path / "store2")
    heads = frame[frame["method"].str.endswith("-head")]
    assert (heads["status"] == "failed").all() and heads["error"].str.contains(f"1 of 9 train images are missing, e.g. {missing}", regex=False).all()
    assert (frame[~frame["method"].str.endswith("-head")]["status"] == "ok").all()


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
