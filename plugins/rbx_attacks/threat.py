"""The threat model of an attack: a norm and a budget ε, with ε both as a number
and as its canonical string ("8/255", "0.5"), the way RobustBench's
``model_info`` files write it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

NORMS = ("Linf", "L2")


def canonical_eps(eps: float) -> str:
    """The canonical string of ``eps``: a whole number as such ("1"); its shortest decimal form when that has
    at most three significant digits ("0.5", "0.1", "0.031"), else ``k/255``
    when ``eps`` is a whole number of 8-bit grey levels ("8/255"), else the
    shortest decimal form (``repr``). One value, one string: ``"8/255"``,
    ``8/255`` and ``0.03137254901960784`` all give ``"8/255"``."""
    if float(eps).is_integer():
        return str(int(eps))
    text = repr(float(eps))
    digits = text.lstrip("0.").replace(".", "")
    if len(digits) <= 3 and "e" not in text:
        return text
    levels = eps * 255
    if abs(levels - round(levels)) < 1e-9 and round(levels) > 0:
        return f"{round(levels)}/255"
    return text


def parse_eps(value: float | int | str) -> float:
    """ε from a number or a string ("8/255", "0.5", "4 / 255")."""
    if isinstance(value, str):
        text = value.replace(" ", "")
        try:
            number = float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError) as err:
            raise ValueError(f"eps {value!r} is neither a number nor a fraction like '8/255'") from err
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise ValueError(f"eps {value!r} must be a number or a string like '8/255'")
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"eps {value!r} must be a finite number >= 0")
    return number


@dataclass(frozen=True)
class Budget:
    """A threat model: ``norm`` ("Linf" or "L2") and ``eps``; ``eps_label`` is
    the canonical string of ``eps`` (see :func:`canonical_eps`)."""

    norm: str
    eps: float

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"norm {self.norm!r} is not one of {', '.join(NORMS)}")
        object.__setattr__(self, "eps", parse_eps(self.eps))

    @classmethod
    def parse(cls, norm: str, eps: float | int | str) -> "Budget":
        """A budget from ``eps`` given as a number or a string ("8/255")."""
        return cls(norm, parse_eps(eps))

    @property
    def eps_label(self) -> str:
        return canonical_eps(self.eps)

    def __str__(self) -> str:
        return f"{self.norm} ε={self.eps_label}"
