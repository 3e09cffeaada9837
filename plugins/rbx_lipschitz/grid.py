"""The ε grids of the certified suites: numbers with their canonical strings.

A dataset may set ``l2_eps_grid`` (a sequence of strings such as ``"36/255"`` or
``"0.5"``) to replace the suite's default grid. ε is an ℓ2 radius in the model's
input space, [0, 1] pixels for the built-in networks.
"""

from __future__ import annotations

from fractions import Fraction

from robustbench_x.errors import PluginError

__all__ = ["CLASSIFICATION_GRID", "SEGMENTATION_GRID", "parse_eps", "grid_of", "eps_subset", "split_eps_subset"]

#: deel-lip's and orthogonium's default radius 36/255, the CIFAR-10 convention's multiples, and 0.5 (the built-in CNN certifies nothing at 1).
CLASSIFICATION_GRID = ("0", "36/255", "72/255", "108/255", "0.5")
#: For the 64×64 RGB embedded scenes: the built-in segmenter's robustness@25 is about 3.3 (its global budget
#: is shared by 4,096 pixels, so useful radii are larger than a classifier's).
SEGMENTATION_GRID = ("0", "0.1", "0.25", "0.5", "1", "2", "4")


def parse_eps(text: str) -> float:
    """``"36/255"`` or ``"0.5"`` → float (>= 0)."""
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError):
        raise PluginError(f"ε {text!r} is not a number or a fraction like '36/255'") from None
    if value < 0:
        raise PluginError(f"ε {text!r} is negative")
    return value


def grid_of(dataset, default: tuple[str, ...]) -> list[tuple[str, float]]:
    texts = tuple(getattr(dataset, "l2_eps_grid", None) or default)
    return sorted(((t, parse_eps(t)) for t in texts), key=lambda p: p[1])


def eps_subset(subset: str, text: str) -> str:
    """Result-row subset of one ε: ``<data subset>/l2/<ε string>``."""
    return f"{subset}/l2/{text}"


def split_eps_subset(subset: str) -> tuple[str, str] | None:
    """``(data subset, ε string)`` of an :func:`eps_subset`, or None."""
    head, sep, eps = str(subset).partition("/l2/")
    return (head, eps) if sep else None
