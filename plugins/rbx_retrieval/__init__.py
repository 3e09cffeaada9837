"""First-party plugin for retrieval and hierarchical retrieval (H-GLDv2).

Registers (specs only; nothing heavy is imported at discovery):

* suite ``retrieval``: rank the ``gallery`` for every ``query`` by the
  method's ``embedding``; hierarchical and flat retrieval metrics per query,
  averaged (evaluator :mod:`rbx_retrieval.evaluate`, whose docstring
  states the conventions);
* metrics of kind ``"retrieval"`` (per-query functions, :mod:`.metrics`):
  ``h-ap``, ``ap``, ``r@1``, ``r@5``, ``map@r``, ``map@100``, ``ndcg``, ``asi``;
* methods ``embedding`` (L2-normalised penultimate features) and
  ``logit-embedding`` (L2-normalised logits), :mod:`.methods`;
* datasets: the built-in ``embedded-digits-hier`` (all ten digits, digit ->
  shape group, :mod:`.embedded_hier`) and the type ``hgldv2``
  (:mod:`.hgldv2.dataset`).

Data preparation lives in sub-packages that import nothing heavy at plugin
discovery time; ``rbx_retrieval.hgldv2`` builds the H-GLDv2 hierarchy files
(train / index / query Parquet + ``manifest.json``) from the GLDv2 CSVs.

Capability token ``hierarchy``: the dataset has a ``hierarchy(subset) -> (N, L)``
int64 method (column 0 the finest level, equal to the sample labels).
Method output ``embedding``: ``score(ctx, subset)`` returns ``{"embedding": (N, D)}``.
"""

from robustbench_x import hookimpl
from robustbench_x.api import DatasetSpec, MethodSpec, MetricSpec, SuiteSpec

#: Data-preparation commands this plugin offers: name -> lazy "module:function".
#: ``hgldv2``: ``build_hgldv2_cli(gldv2_root, out, *, hierarchy_csv_dir=None,
#: offline=False, dump=None, mapping=None, log=print, **build_hgldv2_options)``,
#: see ``rbx_retrieval.hgldv2.cli`` (the raw builder is ``build_hgldv2``).
BUILD_COMMANDS = {"hgldv2": "rbx_retrieval.hgldv2:build_hgldv2_cli"}

_M = "rbx_retrieval.metrics"
_CASES = f"{_M}:check_cases"  # the conformance kit's inputs for kind "retrieval"
_FULL = "whole gallery ranked, dot product of L2-normalised embeddings, ties by gallery index; mean over queries"

METRICS = [
    MetricSpec("h-ap", "retrieval", f"{_M}:h_ap", True, 100, "hierarchical average precision (HAPPIER, ECCV 2022)",
               f"pop relevance l^alpha/|Omega_l|, alpha = 1, levels shared counted over the hierarchy; {_FULL}", check_cases=_CASES),
    MetricSpec("ap", "retrieval", f"{_M}:ap", True, 100, "average precision at the finest level",
               f"relevant = same finest label; {_FULL}", check_cases=_CASES),
    MetricSpec("r@1", "retrieval", f"{_M}:recall_at_1", True, 100, "recall@1 = precision@1 at the finest level",
               "1 if the nearest gallery item has the query's finest label; mean over queries", check_cases=_CASES),
    MetricSpec("r@5", "retrieval", f"{_M}:recall_at_5", True, 100, "recall@5 at the finest level (metric-learning recall)",
               "1 if any of the 5 nearest gallery items has the query's finest label; mean over queries", check_cases=_CASES),
    MetricSpec("map@r", "retrieval", f"{_M}:map_at_r", True, 100, "mAP@R at the finest level (Musgrave et al., ECCV 2020)",
               f"R = gallery items with the query's finest label; {_FULL}", check_cases=_CASES),
    MetricSpec("map@100", "retrieval", f"{_M}:map_at_100", True, 100, "mAP@100 at the finest level (GLDv2-style, SupRank mAP@100_level0)",
               "precision summed over the top 100, normalised by min(R, 100); mean over queries", check_cases=_CASES),
    MetricSpec("ndcg", "retrieval", f"{_M}:ndcg", True, 100, "normalised DCG over the hierarchy levels",
               f"gain 2^l - 1 for l shared levels, discount log2(1 + rank); {_FULL}", check_cases=_CASES),
    MetricSpec("asi", "retrieval", f"{_M}:asi", True, 100, "average set intersection (HAPPIER)",
               f"up to R = gallery items sharing at least one level; {_FULL}", check_cases=_CASES),
]

SUITES = [
    SuiteSpec(
        "retrieval",
        method_output="embedding",
        metrics=tuple(m.name for m in METRICS),
        headline=("h-ap", "map@r", "r@1"),
        subsets=("query", "gallery"),
        dataset_requires={"hierarchy"},
        task="retrieval",
        summary="hierarchical image retrieval: rank the gallery for every query by embedding similarity. "
        "Of the trained heads only happier-head's loss sees the hierarchy; roadmap-head and smoothap-head train on the "
        "finest labels for mAP@R, so their H-AP is not expected to rise (docs/methods.md#the-heads-implementation-budget-and-results)",
        evaluator="rbx_retrieval.evaluate:evaluate",
    ),
]

METHODS = [
    MethodSpec(
        name="embedding",
        factory="rbx_retrieval.methods:FeatureEmbedding",
        requires={"features"},
        outputs={"embedding"},
        params={"normalize": True},
        summary="penultimate features, L2-normalised, as the retrieval embedding",
        paper="HAPPIER (Ramzi et al., ECCV 2022) / SupRank evaluation: normalised embeddings, dot product",
    ),
    MethodSpec(
        name="logit-embedding",
        factory="rbx_retrieval.methods:LogitEmbedding",
        requires={"logits"},
        outputs={"embedding"},
        params={"softmax": False, "normalize": True},
        summary="logits (softmax=True: probabilities), L2-normalised, as the retrieval embedding: a classifier-head baseline",
    ),
]

_HEAD_DEVIATION = (
    "head-only: a linear 512-d head trained on the frozen backbone's cached train-split features "
    "(the paper fine-tunes a ResNet-50 end to end), at Adam's default lr 1e-3 instead of the paper's fc rate, "
    "which leaves a head alone under-trained; the SOP schedule, weight decay and epoch count are kept"
)
_SMALL_BATCH = (
    "batches hold every class of the two drawn super-classes, 4 images each, when the train split has fewer "
    "classes than the SOP batch asks for (24 or 28 images on the embedded digits instead of 128 / 256)"
)


def _head(name: str, loss: str, summary: str, paper: str, code: str) -> MethodSpec:
    return MethodSpec(
        name=name,
        factory="rbx_retrieval.heads:RankLossHead",
        requires={"features", "train_split", "hierarchy"},
        outputs={"embedding"},
        # lr is rbx_retrieval.heads.HEAD_LR (tested equal), named here so that it enters the config hash
        params={"loss": loss, "lr": 1e-3, "norm_features": loss == "happier"},
        summary=summary,
        paper=f"{paper}; code {code}",
        deviations=(_HEAD_DEVIATION, _SMALL_BATCH),
    )


METHODS += [
    _head("roadmap-head", "roadmap", "linear head trained with ROADMAP (SupAP + calibration loss) on frozen features",
          "Ramzi et al., Robust and Decomposable Average Precision for Image Retrieval, NeurIPS 2021, Sec. 3",
          "elias-ramzi/ROADMAP@fed37d7"),
    _head("happier-head", "happier", "linear head trained with HAPPIER (H-AP surrogate + cluster loss) on frozen features",
          "Ramzi et al., Hierarchical Average Precision Training for Pertinent Image Retrieval, ECCV 2022, Sec. 3",
          "elias-ramzi/HAPPIER@5af91b3"),
    _head("smoothap-head", "smoothap", "linear head trained with SmoothAP (sigmoid ranks, tau 0.01) on frozen features: the baseline",
          "Brown et al., Smooth-AP: Smoothing the Path Towards Large-Scale Image Retrieval, ECCV 2020, Eq. 7",
          "elias-ramzi/ROADMAP@fed37d7 (SmoothAP)"),
]

DATASETS = [
    DatasetSpec(
        "embedded-digits-hier",
        factory="rbx_retrieval.embedded_hier:build",
        provides={"train_split", "hierarchy"},
        task="retrieval",
        builtin=True,
        label_space="embedded-digits-0to9",
        summary="digits 0-9 (scikit-learn), digit -> shape group (loops / strokes / curves); train, gallery, query; no download",
    ),
    DatasetSpec(
        "hgldv2",
        factory="rbx_retrieval.hgldv2.dataset:build",
        provides={"hierarchy"},
        task="retrieval",
        option_keys={"root", "hierarchy_dir", "split", "query_dir", "gallery_dir", "train", "label_space"},
        required_keys={"root", "hierarchy_dir"},
        option_types={"root": "path", "hierarchy_dir": "path", "split": "str", "query_dir": "path", "gallery_dir": "path",
                      "train": "path", "label_space": "str"},
        # its train split (1.58 M images, opt-in) is for the heads on a pretrained backbone, never for the built-in CNN
        pretrained_only=True,
        summary="H-GLDv2: GLDv2 test queries vs index gallery, landmark -> super-category -> natural/human-made "
        "(hierarchy_dir from `rbx datasets build hgldv2`); opt-in GLDv2 train split for the heads",
    ),
]


@hookimpl
def rbx_metrics():
    return METRICS


@hookimpl
def rbx_suites():
    return SUITES


@hookimpl
def rbx_methods():
    return METHODS


@hookimpl
def rbx_datasets():
    return DATASETS
