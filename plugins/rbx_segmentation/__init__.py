"""First-party plugin for semantic segmentation and anomaly segmentation.

The task's contract (datasets, models, method outputs, evaluator, storage) is
``docs/tasks.md`` section 7. Registers (specs only; nothing heavy is imported
at discovery):

* suites ``segmentation`` and ``anomaly-segmentation``
  (:mod:`.evaluate`), pages :mod:`.page`;
* dataset ``embedded-scenes`` (built in, :mod:`.scenes`) and the readers of
  :data:`rbx_segmentation.readers.READER_SPECS`;
* the metrics of :data:`rbx_segmentation.metrics.METRIC_SPECS`;
* models ``builtin-segmenter``, ``torchvision-seg:<arch>`` and
  ``segmentation-module`` (:mod:`.models`);
* per-pixel methods (:mod:`.methods`, :mod:`.confidnet`).

Capability tokens introduced here: ``dense_logits`` (the model returns
per-pixel logits ``(B, C, H, W)``), ``anomaly_masks`` (the dataset has
``anomaly/<name>`` subsets with 0 / 1 / 255 masks and an
``anomaly_protocol(subset)`` method) and ``segmenter_recipe`` (the model is
the built-in segmenter, whose architecture and recipe BatchEnsemble and
LP-BNN retrain as rank-1 ensembles).
"""

from robustbench_x import hookimpl
from robustbench_x.api import DatasetSpec, MethodSpec, ModelSpec, SuiteSpec

#: The planning token of a per-pixel method (its score() returns prediction, probs and score per pixel):
#: a new output name, so that no classification suite plans these methods and no segmentation suite plans a classifier's.
_OUT = {"pixel_maps"}
_M = "rbx_segmentation.methods"
_POSTHOC = {"dense_logits"}
_RANK1 = {"dense_logits", "segmenter_recipe", "train_split"}
_CPU = "CPU budget: the members train for 8 epochs of the built-in recipe (rbx_segmentation.net), not the paper's schedule."

DATASETS = [
    DatasetSpec(
        "embedded-scenes",
        factory="rbx_segmentation.scenes:build",
        provides={"train_split", "val_split", "anomaly_masks"},
        task="segmentation",
        builtin=True,
        label_space="embedded-scenes",
        summary="seeded synthetic 64×64 scenes: textured squares, discs and triangles on a noisy background; "
        "train / val / test and anomaly/unseen-shape (a speckled cross, SMIYC 0/1/255 masks); no download",
        deviations=(
            "Synthetic stand-in for a street-scene benchmark so the suites run with nothing configured; "
            "its numbers rank methods on toy scenes, not on Cityscapes or SegmentMeIfYouCan.",
            "SegmentMeIfYouCan's component size filters (500 / 100 px at 2048×1024) scaled to the 64×64 scenes' area "
            "are 1 / 0 px, so components are practically unfiltered.",
        ),
    ),
]

MODELS = [
    ModelSpec(
        "builtin-segmenter",
        factory="rbx_segmentation.models:build_builtin",
        provides={"dense_logits", "feature_maps", "dropout", "ensemble", "segmenter_recipe"},
        label_space=None,
        requires={"train_split"},
        default=True,
        tasks={"segmentation"},
        option_keys=(),
        summary="small encoder-decoder with channel dropout, trained on the evaluated segmentation dataset's train split "
        "on first use (seconds on CPU), cached",
    ),
    ModelSpec(
        "torchvision-seg",
        factory="rbx_segmentation.models:build_torchvision",
        provides={"dense_logits", "feature_maps", "dropout"},
        label_space=None,
        family=True,
        tasks={"segmentation"},
        option_keys={"arch", "checkpoint", "num_classes", "label_space"},
        summary="torchvision-seg:<arch> (FCN, DeepLabV3, LR-ASPP) from a local checkpoint: (weights=None, never downloads)",
    ),
    ModelSpec(
        "segmentation-module",
        factory="rbx_segmentation.models:build_module",
        provides={"dense_logits"},
        label_space=None,
        tasks={"segmentation"},
        option_keys={"arch", "checkpoint", "num_classes", "label_space"},
        summary="any nn.Module returning (B, C, H, W) logits, built by arch: 'package.module:attr', optional checkpoint",
    ),
]


def _posthoc(name, attr, summary, paper, **params):
    return MethodSpec(name, factory=f"{_M}:{attr}", requires=_POSTHOC, outputs=_OUT, params=params, summary=summary, paper=paper)


def _sampled(name, attr, requires, score, summary, paper, deviations=(), stochastic=False, **params):
    return MethodSpec(name, factory=f"{_M}:{attr}", requires=requires, outputs=_OUT, params={**params, "score": score},
                      summary=summary, paper=paper, deviations=deviations, stochastic=stochastic)


_MI = "score = -mutual information H(mean p) - mean H(p_k) per pixel"
_ENT = "score = -H(mean p) per pixel (predictive entropy)"

METHODS = [
    _posthoc("seg-msp", "MSP", "maximum softmax probability per pixel, emitted as MSP − 1 = −(sum of the other probabilities)", "Hendrycks & Gimpel, ICLR 2017; per pixel: Hendrycks et al., ICML 2022"),
    _posthoc("seg-maxlogit", "MaxLogit", "maximum logit per pixel", "Hendrycks et al., 'Scaling OOD detection to real-world settings', ICML 2022"),
    _posthoc("seg-entropy", "Entropy", "negative softmax entropy per pixel", "Shannon entropy of the per-pixel softmax"),
    _posthoc("seg-energy", "Energy", "T·logsumexp(logits / T) per pixel, T = 1", "Liu, Wang, Owens & Li, NeurIPS 2020, eq. 4", temperature=1.0),
    _sampled("seg-mc-dropout", "MCDropout", {"dense_logits", "dropout"}, "entropy", f"T = 20 passes with dropout on; {_ENT}",
             "Gal & Ghahramani, ICML 2016; per pixel: Kendall, Badrinarayanan & Cipolla, BMVC 2017",
             deviations=("CPU budget: T = 20 samples instead of Bayesian SegNet's 50.",), stochastic=True, T=20),
    _sampled("seg-mc-dropout-mi", "MCDropout", {"dense_logits", "dropout"}, "mutual_information", f"T = 20 passes with dropout on; {_MI}",
             "Gal & Ghahramani, ICML 2016; mutual information: Gal, PhD thesis 2016, §3.3.1",
             deviations=("CPU budget: T = 20 samples instead of Bayesian SegNet's 50.",), stochastic=True, T=20),
    _sampled("seg-deep-ensemble", "DeepEnsemble", {"dense_logits", "ensemble"}, "entropy", f"K = 5 members, mean softmax; {_ENT}",
             "Lakshminarayanan, Pritzel & Blundell, NeurIPS 2017", K=5),
    _sampled("seg-deep-ensemble-mi", "DeepEnsemble", {"dense_logits", "ensemble"}, "mutual_information", f"K = 5 members, mean softmax; {_MI}",
             "Lakshminarayanan, Pritzel & Blundell, NeurIPS 2017", K=5),
    _sampled("seg-batchensemble", "BatchEnsemble", _RANK1, "entropy", f"M = 4 rank-1 members of the built-in architecture, member-major; {_ENT}",
             "Wen, Tran & Ba, ICLR 2020", deviations=(_CPU,), members=4),
    _sampled("seg-lpbnn", "LPBNN", _RANK1, "msp", "M = 4 rank-1 members whose input scalings are decoded by a per-layer "
             "auto-encoder (latent 32, VAE loss); score = max of the mean softmax, emitted as MSP − 1",
             "Franchi, Bursuc, Aldea, Dubuisson & Bloch, arXiv 2012.02818, §3; official code giannifranchi/LP_BNN",
             deviations=(_CPU, "Batch norm is shared between the members (the official code has one per member).",
                         "Separate mean and log-variance layers (the paper's); the official code computes both with one layer."),
             members=4),
    MethodSpec("seg-confidnet", factory="rbx_segmentation.confidnet:ConfidNetSeg", requires={"dense_logits", "feature_maps", "train_split"},
               outputs=_OUT, params={"epochs": 10, "lr": 1e-3},
               summary="5-layer 3×3 conv head on the frozen decoder maps, trained by MSE between sigmoid(c) and the true-class probability per pixel; score = sigmoid(c) − 1, computed as −sigmoid(−c)",
               paper="Corbière, Thome, Bar-Hen, Cord & Pérez, NeurIPS 2019, §3.3 and §4.3",
               deviations=("Head widths scaled to the 16-channel decoder maps (64-32-16-16 instead of 400-120-64-64) and trained "
                           "10 epochs with Adam on the train split's un-augmented maps.",
                           "Trained with Adam lr 1e-3 and batch 16, keeping the last epoch, with the segmenter's dropout off; the "
                           "official selfconfid-seg.yaml uses lr 1e-4, batch 6, up to 500 epochs with the best validation AP-error "
                           "kept and dropout on; the head reads the decoder's half-resolution maps, upsampled, where the official "
                           "head reads the full-resolution 64-channel maps.")),
]

SEG_METRICS = ("miou", "pixel-accuracy", "pixel-ece", "pixel-nll", "pixel-brier", "pixel-aurc")
ANOMALY_METRICS = ("auroc-img", "aupr-img", "fpr95-img-closest", "ap-pooled", "fpr95-pooled", "f1-best-pooled", "siou", "ppv", "mean-f1")

SUITES = [
    SuiteSpec(
        "segmentation",
        method_output="pixel_maps",
        metrics=SEG_METRICS,
        headline=("miou", "pixel-accuracy", "pixel-ece", "pixel-aurc"),
        # Cityscapes-style releases withhold test labels (all void): val is where they are evaluated
        subsets=("val", "test"),
        task="segmentation",
        summary="semantic segmentation with per-pixel uncertainty: mIoU, pixel accuracy, ECE / NLL / Brier on all pixels, pixel AURC",
        evaluator="rbx_segmentation.evaluate:evaluate_segmentation",
        renderer="rbx_segmentation.page:render_segmentation",
    ),
    SuiteSpec(
        "anomaly-segmentation",
        method_output="pixel_maps",
        metrics=ANOMALY_METRICS,
        headline=ANOMALY_METRICS,
        subsets=("anomaly/*",),
        dataset_requires={"anomaly_masks"},
        task="segmentation",
        summary="anomalous pixels under each benchmark's protocol (SegmentMeIfYouCan pooled + components, StreetHazards image-averaged)",
        evaluator="rbx_segmentation.evaluate:evaluate_anomaly",
        renderer="rbx_segmentation.page:render_anomaly",
    ),
]


@hookimpl
def rbx_datasets():
    from rbx_segmentation.readers import READER_SPECS

    return DATASETS + list(READER_SPECS)


@hookimpl
def rbx_metrics():
    from rbx_segmentation.metrics import METRIC_SPECS

    return list(METRIC_SPECS)


@hookimpl
def rbx_models():
    return MODELS


@hookimpl
def rbx_methods():
    return METHODS


@hookimpl
def rbx_suites():
    return SUITES
