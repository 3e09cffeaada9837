"""``local`` (default): this machine's GPUs, or CPU worker processes.

Slots: ``--devices``, else the visible GPUs, else ``--workers N`` CPU slots.
With a single CPU slot and no ``--job-timeout`` groups run in this process
(nothing to isolate, no start-up tax). Otherwise each job group runs in a fresh
``spawn``-ed process; a GPU slot sets ``CUDA_VISIBLE_DEVICES`` before the child
imports torch, so each worker sees exactly one device. A slot queue hands out
devices, so two workers never share a GPU by accident (HELM's pool-initialiser
pinning gives no such guarantee).

The parent supervises each worker through a pipe: the child reports every job
it starts and finishes. When a worker dies (``os._exit``, a signal, the OOM
killer) or a job runs past ``--job-timeout``, the job it was running gets a
``failed`` row with the cause, and the group's remaining jobs go to a fresh
worker, so one bad job never takes its neighbours down. The timeout also
covers building the group's model and dataset (a hanging model factory fails
every job of its group, "while building").
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import signal
import threading
import time

from robustbench_x.plan import Group
from robustbench_x.runner import Outcome, RunOptions, run_group

POLL_S = 0.2


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def check_devices(devices: list[str]) -> None:
    """``--devices`` names visible GPUs; otherwise every job would fail in its worker with CUDA's error."""
    from robustbench_x.errors import UsageError

    visible = visible_gpus()
    if not visible:
        raise UsageError(f"--devices {','.join(devices)}: no CUDA GPU is visible on this machine.\n"
                         "  fix: drop --devices (without a GPU, --workers N runs N CPU worker processes)")
    unknown = [d for d in devices if d not in visible]
    if unknown:
        raise UsageError(f"--devices {','.join(unknown)}: not a visible GPU (visible: {','.join(visible)}).\n"
                         "  fix: name GPUs by the ids `nvidia-smi` lists, within CUDA_VISIBLE_DEVICES when it is set")


def _child(group: Group, options: RunOptions, device_id: str | None, conn) -> None:
    # A worker whose supervisor is gone (the run was killed, its terminal closed) stops at once:
    # left running it would report into a dead pipe, and nobody would read its results.
    supervisor = os.getppid()

    def send(message) -> None:
        try:
            conn.send(message)
        except OSError:  # BrokenPipeError: the supervisor is gone
            os._exit(1)

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    try:
        if device_id is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = device_id  # before torch is imported in this process
        index = {job.key: i for i, job in enumerate(group.jobs)}
        import torch  # noqa: F401  (seconds on a loaded machine: start-up, not the job's time)

        send(("build",))  # the job timeout starts here: building the model and dataset counts
        opts = dataclasses.replace(options, device="cuda" if device_id is not None else options.device)
        outcomes = run_group(
            group,
            opts,
            on_start=lambda job: send(("start", index[job.key])),
            on_job=lambda job, status: send(("done", index[job.key], status)),
            log=lambda message: send(("log", message)),
        )
        send(("end", outcomes))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the supervisor decides, quietly
        os._exit(130)
    except BaseException as exc:  # report, never leave the parent waiting
        send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


class LocalExecutor:
    def __init__(self, workers: int | None = None, devices: list[str] | None = None, job_timeout: float | None = None, **_: object) -> None:
        gpus = devices if devices else visible_gpus()
        self.slots: list[str | None] = list(gpus) if gpus else [None] * max(1, int(workers or 1))
        self.job_timeout = job_timeout
        #: Set when the run is interrupted (Ctrl-C): workers are stopped and no job is blamed for it.
        self.stopping = threading.Event()

    def run(self, groups, options: RunOptions, on_job=None, log=None) -> list[Outcome]:
        if self.slots == [None] and not self.job_timeout:
            outcomes: list[Outcome] = []
            for group in groups:
                outcomes.extend(run_group(group, options, on_job=on_job, log=log))
            return outcomes
        slots: queue.Queue = queue.Queue()
        for slot in self.slots:
            slots.put(slot)
        outcomes = []
        lock = threading.Lock()

        def report(job, status):
            with lock:
                if on_job:
                    on_job(job, status)

        def say(message):
            with lock:
                if log:
                    log(message)

        def work(group: Group) -> None:
            slot = slots.get()
            if self.stopping.is_set():
                return
            try:
                result = self._supervise(group, options, slot, report, say)
                with lock:
                    outcomes.extend(result)
            finally:
                slots.put(slot)

        threads = [threading.Thread(target=work, args=(g,), daemon=True) for g in groups]
        try:
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():  # a timed join: a bare join() would not let Ctrl-C through
                    t.join(timeout=POLL_S)
        except KeyboardInterrupt:
            # An interruption is not a job's failure: no row is written for the jobs it cut short
            # (they are simply not done, and the next run does them).
            self.stopping.set()
            for t in threads:
                t.join(timeout=10)
            raise
        return outcomes

    def _supervise(self, group: Group, options: RunOptions, slot, report, say) -> list[Outcome]:
        """Run a group in worker processes until every job has an outcome."""
        ctx = mp.get_context("spawn")
        remaining = list(group.jobs)
        outcomes: list[Outcome] = []
        while remaining:
            sub = Group(group.model, group.dataset, group.seed, remaining)
            parent, child = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(sub, options, slot, child), daemon=True)
            proc.start()
            child.close()  # a dead child then gives EOFError instead of a hang
            current: int | None = None
            building = False  # between "build" and the first "start": the model and dataset are built
            started_at = 0.0
            finished: set[int] = set()
            cause: str | None = None
            while True:
                if self.stopping.is_set():
                    break
                if parent.poll(POLL_S):
                    try:
                        message = parent.recv()
                    except EOFError:
                        proc.join(timeout=5)
                        cause = _death(proc.exitcode)
                        break
                    kind = message[0]
                    if kind == "build":
                        building, started_at = True, time.monotonic()
                    elif kind == "start":
                        building, current, started_at = False, message[1], time.monotonic()
                    elif kind == "done":
                        finished.add(message[1])
                        outcomes.append(Outcome(sub.jobs[message[1]].key, message[2]))
                        report(sub.jobs[message[1]], message[2])
                        current = None
                    elif kind == "log":
                        say(message[1])
                    elif kind == "end":
                        # Outcomes already recorded job by job; keep the richer ones.
                        done = {o.key for o in message[1]}
                        outcomes = [o for o in outcomes if o.key not in done] + message[1]
                        remaining = []
                        break
                    elif kind == "error":
                        cause = f"worker error: {message[1]}"
                        current = None
                        break
                elif not proc.is_alive():
                    cause = _death(proc.exitcode)
                    break
                elif self.job_timeout and (current is not None or building) and time.monotonic() - started_at > self.job_timeout:
                    proc.kill()
                    during = " while building the model and dataset" if building else ""
                    cause = f"timed out after {self.job_timeout:g} s{during} (--job-timeout); the worker was killed"
                    break
            if proc.is_alive():
                proc.kill()
            proc.join()
            parent.close()
            # A worker that stopped on Ctrl-C (exit 130, or killed by SIGINT) was interrupted with
            # the run, possibly before this process noticed: its jobs are not done, not failed.
            if not remaining or self.stopping.is_set() or proc.exitcode in (130, -signal.SIGINT):
                break
            if current is not None:
                blamed = [sub.jobs[current]]
            else:  # died outside a job (building the model...): nothing to retry safely
                blamed = [job for i, job in enumerate(sub.jobs) if i not in finished]
            for job in blamed:
                _write_failed(job, options, cause or "worker stopped")
                outcomes.append(Outcome(job.key, "failed", cause))
                report(job, "failed")
            blamed_keys = {j.key for j in blamed}
            remaining = [job for i, job in enumerate(sub.jobs) if i not in finished and job.key not in blamed_keys]
        return outcomes


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = str(-exitcode)
        return f"worker died (killed by {name})"
    return f"worker died (exit code {exitcode})"


def _write_failed(job, options: RunOptions, reason: str) -> None:
    from robustbench_x.results import ResultStore
    from robustbench_x.runner import _row

    ResultStore(options.out).write(job, [_row(job, status="failed", error=reason)], None)
