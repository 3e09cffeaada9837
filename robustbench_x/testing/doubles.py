"""Test doubles shipped with the package (as httpx ships ``MockTransport``).

:class:`ArrayContext` is a :class:`robustbench_x.api.Context` over in-memory
arrays: a method can be fitted and scored without a model, a dataset or a
cache, which is how method unit tests check a paper's definition on a case
small enough to verify by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from robustbench_x.api import Context, Dataset, Model, Outputs


def make_outputs(logits, features=None, labels=None, prefix: str = "s") -> Outputs:
    """Outputs from arrays; features default to the logits, labels to -1."""
    logits = np.asarray(logits, dtype=np.float32)
    n = len(logits)
    features = logits if features is None else np.asarray(features, dtype=np.float32)
    labels = np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
    return Outputs(logits=logits, features=features, labels=labels, sample_ids=np.array([f"{prefix}{i}" for i in range(n)]))


class ArrayContext(Context):
    """A context over given outputs (and, optionally, a model and input tensors).

    ``inputs`` maps a subset to ``(x, y)`` tensors that ``loader`` batches, for
    methods that need the model (ODIN, MC Dropout, gradients).
    """

    def __init__(
        self,
        outputs: Mapping[str, Outputs],
        *,
        model: Model | None = None,
        inputs: Mapping[str, tuple[Any, Any]] | None = None,
        dataset: Dataset | None = None,
        seed: int = 0,
        num_classes: int | None = None,
    ) -> None:
        self._outputs = dict(outputs)
        self._inputs = dict(inputs or {})
        self.seed = seed
        first = next(iter(self._outputs.values()))
        self.num_classes = num_classes if num_classes is not None else int(first.logits.shape[1])
        if model is not None:
            self.model = model
        if dataset is not None:
            self.dataset = dataset
        self.messages: list[str] = []
        self.builds = 0
        self.diagnostics: dict[str, Any] = {}

    def outputs(self, subset: str) -> Outputs:
        try:
            return self._outputs[subset]
        except KeyError:
            raise KeyError(f"ArrayContext has no outputs for subset {subset!r}; have {sorted(self._outputs)}") from None

    def loader(self, subset: str, batch_size: int = 128) -> Iterator[tuple[Any, Any]]:
        x, y = self._inputs[subset]
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)

    def fitted(self, build: Callable[[], dict[str, np.ndarray]], *, shared: bool = False, **key: Any) -> dict[str, np.ndarray]:
        self.builds += 1
        return build()

    def log(self, message: str) -> None:
        self.messages.append(message)

    def record(self, key: str, value: float | int | str) -> None:
        """Kept in ``diagnostics``, validated as the runner does."""
        from robustbench_x.runner import diagnostic_value

        self.diagnostics[key] = diagnostic_value("method", key, value)


def _stack(model: Model, dataset: Dataset, subset: str):
    import torch

    source = dataset.samples(subset)
    tf = model.transform()
    xs, ys, ids = [], [], []
    for i in range(len(source)):
        image, label, sid = source[i]
        xs.append(tf(image))
        ys.append(label)
        ids.append(sid)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long), np.array(ids)


class ModelContext(ArrayContext):
    """A context over a real model and dataset, computed in memory, uncached.

    For method tests that need the model and the loaders (ODIN, MC Dropout,
    ConfidNet...) without the runner, the feature cache or the result store.
    """

    def __init__(self, model: Model, dataset: Dataset, *, seed: int = 0) -> None:
        import torch

        self.model, self.dataset, self.seed = model, dataset, seed
        self.num_classes = model.num_classes
        self._outputs, self._inputs = {}, {}
        self.messages, self.builds = [], 0
        self.diagnostics = {}
        self._torch = torch

    def _ensure(self, subset: str) -> None:
        if subset in self._outputs:
            return
        x, y, ids = _stack(self.model, self.dataset, subset)
        logits, feats = [], []
        with self._torch.no_grad():
            for start in range(0, len(x), 256):
                lg, ft = self.model.forward(x[start : start + 256])
                logits.append(lg)
                feats.append(ft)
        self._inputs[subset] = (x, y)
        self._outputs[subset] = Outputs(
            logits=self._torch.cat(logits).numpy(), features=self._torch.cat(feats).numpy(), labels=y.numpy(), sample_ids=ids
        )

    def outputs(self, subset: str) -> Outputs:
        self._ensure(subset)
        return self._outputs[subset]

    def loader(self, subset: str, batch_size: int = 128):
        self._ensure(subset)
        return super().loader(subset, batch_size)
