"""First-party plugin: the embedded default benchmark and the ImageFolder dataset type."""

from robustbench_x import hookimpl
from robustbench_x.api import DatasetSpec


@hookimpl
def rbx_datasets():
    return [
        DatasetSpec(
            "embedded-digits",
            factory="rbx_datasets.embedded:build",
            # attack_protocol: rbx_attacks has a threat model for it (the adversarial suites)
            provides={"train_split", "val_split", "ood_subsets", "attack_protocol"},
            builtin=True,
            label_space="embedded-digits-0to5",
            summary="digits 0-5 (scikit-learn) vs held-out digits, photo and texture patches; noise/blur/contrast and "
            "new-class shifted test sets (shift/*); no download",
            deviations=(
                "Not a published benchmark: ood/photos and ood/textures are 8×8 patches of the sample photographs and "
                "textures shipped with scikit-learn and scikit-image, standing in for far-OOD sets such as Places and DTD.",
                "shift/covariate and shift/new-class follow FD-Shifts' study types with stand-ins, not its datasets: noise, "
                "blur and contrast at severities chosen for 8×8 digits, and the held-out digits 6-9 as the new classes.",
            ),
        ),
        DatasetSpec(
            "imagefolder",
            factory="rbx_datasets.imagefolder:build",
            option_keys={"root", "train", "val", "test", "ood", "label_space", "classes", "extensions"},
            required_keys={"root", "test"},
            option_types={"root": "path", "train": "path", "val": "path", "test": "path", "ood": "paths",
                          "label_space": "str", "classes": "names", "extensions": "names"},
            summary="<root>/<split>/<class>/<image> trees; OOD sets as folders of images",
        ),
    ]
