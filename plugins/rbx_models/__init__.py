"""First-party plugin: the built-in small CNN and the timm model family."""

from robustbench_x import hookimpl
from robustbench_x.api import ModelSpec

_CLASSIFIER = {"logits", "features", "linear_head", "input_grad", "grad", "feature_maps", "explanation_layer"}


@hookimpl
def rbx_models():
    return [
        ModelSpec(
            "builtin-cnn",
            factory="rbx_models.smallcnn:build",
            provides=_CLASSIFIER | {"dropout", "ensemble"},
            label_space=None,
            requires={"train_split"},
            default=True,
            option_keys=(),
            summary="small CNN, trained on the evaluated dataset's train split on first use (seconds on CPU) and cached",
        ),
        ModelSpec(
            "timm",
            factory="rbx_models.timm_model:build",
            provides=_CLASSIFIER,
            label_space="imagenet-1k",
            family=True,
            option_keys={"arch", "checkpoint", "pretrained", "num_classes", "label_space", "members"},
            key_types={"pretrained": "bool"},
            check="rbx_models.timm_model:check",
            summary="timm:<arch>; hub weights when reachable or a local checkpoint (safetensors / weights_only)",
        ),
    ]
