"""Thread control for small CPU workloads.

Training a small head (ConfidNet, HEAT's energy network, the built-in CNN)
on a busy 2-core machine with torch's default intra-op threads is up to 15×
slower than on one thread, and a fixed thread count makes float reductions
happen in one order, so fitted weights are bit-identical on every machine and
executor. Plugins use :func:`torch_threads` around such fits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
