"""``local`` (default): this machine's GPUs, or CPU workers.

With one slot (no GPU, ``--workers 1``) groups run in this process. With more
slots each group runs in a fresh ``spawn``-ed process; a GPU slot sets
``CUDA_VISIBLE_DEVICES`` before the child imports torch, so each worker sees
exactly one device. A slot queue hands out device ids, so two workers never
share a GPU by accident (HELM's pool-initialiser pinning gives no such
guarantee). A worker that dies is reported as a failed group; the others go on.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading

from robustbench_x.runner import Outcome, RunOptions, run_group


def _visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def _child(group, options, device_id, conn) -> None:
    if device_id is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device_id
    try:
        import dataclasses

        opts = dataclasses.replace(options, device="cuda" if device_id is not None else "cpu")
        conn.send(("ok", run_group(group, opts)))
    except BaseException as exc:  # report, never hang the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class LocalExecutor:
    def __init__(self, workers: int | None = None, devices: list[str] | None = None, job_timeout: float | None = None, **_: object) -> None:
        gpus = devices if devices else _visible_gpus()
        if gpus:
            self.slots: list[str | None] = list(gpus)
        else:
            self.slots = [None] * max(1, int(workers or 1))
        self.job_timeout = job_timeout

    def run(self, groups, options: RunOptions, on_job=None, log=None) -> list[Outcome]:
        if len(self.slots) == 1 and self.slots[0] is None:
            outcomes: list[Outcome] = []
            for group in groups:
                outcomes.extend(run_group(group, options, on_job=on_job, log=log))
            return outcomes
        return self._run_spawned(groups, options, on_job)

    def _run_spawned(self, groups, options, on_job) -> list[Outcome]:
        ctx = mp.get_context("spawn")
        slots: queue.Queue = queue.Queue()
        for slot in self.slots:
            slots.put(slot)
        outcomes: list[Outcome] = []
        lock = threading.Lock()

        def work(group) -> None:
            slot = slots.get()
            try:
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(group, options, slot, child), daemon=True)
                proc.start()
                child.close()  # so a dead child gives EOFError instead of a hang
                result = None
                if parent.poll(self.job_timeout):
                    try:
                        result = parent.recv()
                    except EOFError:
                        result = None
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                if result is None:
                    reason = "timed out" if proc.exitcode is None or proc.exitcode < 0 and self.job_timeout else f"worker died (exit code {proc.exitcode})"
                    group_outcomes = _fail_group(group, options, reason)
                elif result[0] == "error":
                    group_outcomes = _fail_group(group, options, result[1])
                else:
                    group_outcomes = result[1]
                with lock:
                    outcomes.extend(group_outcomes)
                    if on_job:
                        for job, outcome in zip(group.jobs, group_outcomes):
                            on_job(job, outcome.status)
            finally:
                slots.put(slot)

        threads = [threading.Thread(target=work, args=(g,)) for g in groups]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return outcomes


def _fail_group(group, options: RunOptions, reason: str) -> list[Outcome]:
    from robustbench_x.results import ResultStore
    from robustbench_x.runner import _row

    store = ResultStore(options.out)
    outcomes = []
    for job in group.jobs:
        if not store.done(job):
            store.write(job, [_row(job, status="failed", error=reason)], None)
            outcomes.append(Outcome(job.key, "failed", reason))
        else:
            outcomes.append(Outcome(job.key, "ok"))
    return outcomes
