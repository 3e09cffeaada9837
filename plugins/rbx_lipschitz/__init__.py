"""First-party plugin: Lipschitz-certified robustness (classification and segmentation).

Registers (specs only; nothing heavy is imported at discovery):

* models ``lipschitz-cnn`` (a 1-Lipschitz classifier for the embedded digits,
  :mod:`.classifier`) and ``lipschitz-segnet`` (a 1-Lipschitz segmenter for the
  embedded scenes, :mod:`.segmenter`), weights trained at first use and cached (``tools/train_lipschitz.py`` reproduces the manifest's);
  both provide the capability token ``lipschitz``: the runtime model has
  ``lipschitz_constant``, an upper bound of its ℓ2 Lipschitz constant;
* methods ``lipschitz-margin`` (classification) and ``lipschitz-pixel-margin``
  (segmentation), :mod:`.methods`;
* metrics of kinds ``certified`` and ``certified-segmentation``, :mod:`.metrics`;
* suites ``certified`` (:mod:`.evaluate`, page :mod:`.page`) and
  ``certified-segmentation`` (:mod:`.evaluate_segmentation`).

Any model declares a constant the same way: its ``ModelSpec`` provides
``lipschitz`` and its runtime model sets ``lipschitz_constant``
(``docs/methods.md``, "lipschitz-margin").
"""

from robustbench_x import hookimpl
from robustbench_x.api import MethodSpec, MetricSpec, ModelSpec, SuiteSpec

_M = "rbx_lipschitz.metrics"
_CERT = "correct and certified radius > ε on the closed ℓ2 ball (ε = 0: correct); radius = margin / (√2 L)"
_SEG = "global ℓ2 budget (L ε)² on the whole output map, cheapest pixels flipped first, pixel cost m²/2"

METRICS = [
    MetricSpec("certified-accuracy", "certified", f"{_M}:certified_accuracy", True, 100,
               "certified robust accuracy at ε (one row per ε of the grid, subset <subset>/l2/<ε>)", _CERT, check_cases=f"{_M}:check_cases"),
    MetricSpec("mean-certified-radius", "certified", f"{_M}:mean_certified_radius", True, 1,
               "mean certified ℓ2 radius (0 for a wrong prediction)", "margin / (√2 L), deel-lip CategoricalProvableAvgRobustness (disjoint_neurons=False)", check_cases=f"{_M}:check_cases"),
    MetricSpec("certified-pixel-accuracy", "certified-segmentation", f"{_M}:certified_pixel_accuracy", True, 100,
               "certified robust pixel accuracy (CRPA) at ε, mean over images", f"{_SEG}; void pixels excluded; ε = 0: clean pixel accuracy",
               check_cases=f"{_M}:segmentation_check_cases"),
    MetricSpec("worst-case-iou", "certified-segmentation", f"{_M}:mean_worst_case_iou", True, 100,
               "mean over classes of the certified worst-case class IoU at ε", f"{_SEG}; each class pooled over images, exact minimum (Dinkelbach)",
               check_cases=f"{_M}:iou_check_cases"),
    *(MetricSpec(f"robustness@{a}", "certified-segmentation", f"{_M}:robustness_{a}", True, 1,
                 f"ℓ2 radius at which {a} % of the pixels can be flipped", "image-averaged sorted cumulative pixel costs, all pixels, as the reference",
                 check_cases=f"{_M}:radius_check_cases") for a in (25, 50, 75)),
]

SUITES = [
    SuiteSpec(
        "certified",
        method_output="certified_radius",
        metrics=("certified-accuracy", "mean-certified-radius", "accuracy"),
        headline=("certified-accuracy", "mean-certified-radius"),
        subsets=("id",),
        task="classification",
        summary="certified ℓ2 robust accuracy of Lipschitz classifiers at each ε of a grid, from the margin and the declared constant",
        evaluator="rbx_lipschitz.evaluate:evaluate",
        renderer="rbx_lipschitz.page:render",
        default_models=("lipschitz-cnn",),
    ),
    SuiteSpec(
        "certified-segmentation",
        method_output="class_margin",
        metrics=("certified-pixel-accuracy", "worst-case-iou", "robustness@25", "robustness@50", "robustness@75"),
        headline=("certified-pixel-accuracy", "worst-case-iou", "robustness@50"),
        subsets=("test",),
        task="segmentation",
        summary="certified ℓ2 robust pixel accuracy and worst-case class IoU of Lipschitz segmenters at each ε of a grid, "
        "and the robustness@α radii",
        evaluator="rbx_lipschitz.evaluate_segmentation:evaluate",
        renderer="rbx_lipschitz.page:render",
        default_models=("lipschitz-segnet",),
    ),
]

METHODS = [
    MethodSpec(
        name="lipschitz-margin",
        factory="rbx_lipschitz.methods:LipschitzMargin",
        requires={"logits", "lipschitz"},
        outputs={"certified_radius"},
        summary="top-1 margin and certified ℓ2 radius margin / (√2 L) from the model's declared Lipschitz constant",
        paper="Serrurier et al., Achieving robustness in classification using optimal transport with hinge regularization, CVPR 2021; "
        "deel-lip deel/lip/metrics.py CategoricalProvableRobustAccuracy (disjoint_neurons=False)",
    ),
    MethodSpec(
        name="lipschitz-pixel-margin",
        factory="rbx_lipschitz.methods:LipschitzPixelMargin",
        requires={"dense_logits", "lipschitz"},
        outputs={"class_margin"},
        summary="per-pixel class gaps z_k - max_{j!=k} z_j and the declared Lipschitz constant, for segmentation certificates",
        paper="Massena et al., Fast and Flexible Robustness Certificates for Semantic Segmentation, arXiv:2512.06010; "
        "deel-ai-papers/robust-segmentation src/robustness/",
    ),
]

MODELS = [
    ModelSpec(
        "lipschitz-cnn",
        factory="rbx_lipschitz.classifier:build",
        provides={"logits", "features", "linear_head", "input_grad", "lipschitz"},
        requires={"train_split"},
        option_keys=(),
        summary="1-Lipschitz CNN (orthogonalised convolutions, GroupSort), trained at first use and cached; "
        "declares an exact upper bound of its l2 Lipschitz constant",
    ),
    ModelSpec(
        "lipschitz-segnet",
        factory="rbx_lipschitz.segmenter:build",
        provides={"dense_logits", "input_grad", "lipschitz"},
        requires={"train_split"},
        tasks={"segmentation"},
        option_keys=(),
        summary="1-Lipschitz segmenter (orthogonalised convolutions, pixel unshuffle / shuffle, GroupSort), trained at first use "
        "(about 90 s of CPU) and cached; declares an exact upper bound of the image-to-logit-map l2 Lipschitz constant",
        deviations=("A weak segmenter on a CPU budget (16 epochs, width 16): on the embedded scenes' test split its clean pixel "
                    "accuracy is 90.3 % and its mean IoU 0.27, against 89.6 % and 0.22 for predicting background everywhere; "
                    "the suite demonstrates the certificates, not a strong Lipschitz segmenter.",),
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
def rbx_models():
    return MODELS
