"""``inline``: every group in this process, one after the other (debugging, tests)."""

from __future__ import annotations

from robustbench_x.runner import Outcome, RunOptions, run_group


class InlineExecutor:
    def __init__(self, **_: object) -> None:
        pass

    def run(self, groups, options: RunOptions, on_job=None, log=None) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for group in groups:
            outcomes.extend(run_group(group, options, on_job=on_job, log=log))
        return outcomes
