"""How many contrast classes VOICE takes a variance over (``docs/methods.md#voice``),
without torch: the job's guard and the plan-time check (``MethodSpec.check``)
give the same message."""

from __future__ import annotations

__all__ = ["check_contrast", "check"]

#: VOICE's variance needs two contrast classes besides the predicted one.
MIN_CLASSES = 3


def check_contrast(contrast, num_classes: int) -> int:
    """The number of contrast classes per image; a clear error when it is below two."""
    if contrast == "all":
        count = num_classes - 1
        how = {0: "a model without classes has no contrast class", 1: "a one-class model has no contrast class",
               2: "a two-class model has a single contrast class"}.get(num_classes, f"every class but the predicted one gives {count}")
    elif isinstance(contrast, int) and not isinstance(contrast, bool):
        count = contrast
        how = f"contrast={contrast} gives {count}"
        if contrast > num_classes - 1:
            raise ValueError(f"VOICE: contrast={contrast} asks for more contrast classes than the model's {num_classes} classes leave ({num_classes - 1}); use at most {num_classes - 1} or 'all'")
    else:
        raise ValueError(f"VOICE: contrast must be 'all' or a number of classes R >= 2, got {contrast!r}")
    if count < 2:
        raise ValueError(
            f"VOICE needs at least two contrast classes to take a variance over, but {how}: the contrast set is too small, "
            f"so VOICE is undefined (it needs a model of at least {MIN_CLASSES} classes)"
        )
    return count


def check(params: dict, dataset) -> str | None:
    """``MethodSpec.check``: the dataset's class count (the model's, for a model trained on it) must leave two contrast classes."""
    classes = len(getattr(dataset, "classes", None) or [])
    if not classes:
        return None
    contrast = params.get("contrast", "all")
    if contrast == "all" and classes < MIN_CLASSES:
        return (f"VOICE takes a variance over the contrast classes (every class but the predicted one), and the dataset's "
                f"{classes} class{'es' * (classes != 1)} leave{'s' * (classes == 1)} {classes - 1}, two are needed; "
                f"to run it, use a dataset of at least {MIN_CLASSES} classes")
    try:
        check_contrast(contrast, classes)
    except ValueError as exc:
        return f"{exc} (the dataset has {classes} classes)"
    return None
