"""``ray``: each job group becomes a Ray task on an existing cluster.

The cluster comes from ``--ray-address`` or ``$RAY_ADDRESS`` (``local`` starts
a single-node cluster for this run). Before anything is submitted the
executor checks that the head is reachable (a TCP connect with a short
timeout) and answers the protocol of a Ray head (gRPC, which Ray's GCS and
client server speak: an HTTP server, the dashboard's port say, does not), so a
wrong address fails in seconds with exit 2 instead of hanging in
``ray.init``; and that the cluster has the GPUs a task asks for: Ray leaves a
``num_gpus=1`` task pending forever on a cluster without GPUs.

Tasks run in the Ray workers' working directory, not the user's: every path a
job carries (``--out``, the configuration file and with it the dataset roots
relative to it, ``$RBX_CACHE_DIR``, ``$RBX_CONFIG``, ``$PYTHONPATH`` entries) is
made absolute here, on the submitting side.

Tasks reserve ``--ray-gpus`` GPUs (default: 1 when the cluster has GPUs, else
0) and one CPU. Node loss and worker crashes are retried by Ray
(``max_retries=2``); a job's own error is not an infrastructure failure: the
runner catches it and writes a ``failed`` row, so nothing is retried twice.
Results are written by the tasks themselves into ``--out``, and the feature
cache lives in ``$RBX_CACHE_DIR``: both must be on a filesystem every node
sees (see docs/cluster.md).
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from robustbench_x.errors import UsageError
from robustbench_x.runner import Outcome, RunOptions, run_group

FORWARDED_ENV = ("RBX_CACHE_DIR", "RBX_PLUGINS", "RBX_DISABLE_PLUGINS", "RBX_CONFIG", "PYTHONPATH")
PATH_ENV = ("RBX_CACHE_DIR", "RBX_CONFIG")
PROBE_S = 3.0


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(os.path.expanduser(path)) if path else path


def forwarded_env() -> dict[str, str]:
    """The environment a Ray task needs, with paths resolved where the user is."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    for key in PATH_ENV:
        if env.get(key):
            env[key] = _absolute(env[key])
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(_absolute(p) if p else p for p in env["PYTHONPATH"].split(os.pathsep))
    return env


def _speaks_grpc(host: str, port: int, timeout: float = PROBE_S) -> bool:
    """True when ``host:port`` completes an HTTP/2 (gRPC) handshake within ``timeout``."""
    import grpc  # a dependency of Ray

    channel = grpc.insecure_channel(f"{host}:{port}", options=[("grpc.enable_http_proxy", 0)])
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


def _reachable(address: str, timeout: float = 3.0) -> None:
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port or 6379
    if host is None:
        raise UsageError(f"cannot parse Ray address '{address}'.\n  fix: pass --ray-address HOST:PORT (e.g. 127.0.0.1:6379)")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise UsageError(
            f"cannot reach the Ray cluster at {host}:{port} ({exc.strerror or exc}).\n"
            "  fix: start one with `ray start --head`, or correct --ray-address / $RAY_ADDRESS"
        ) from None
    if not _speaks_grpc(host, port):
        raise UsageError(
            f"{host}:{port} accepts connections but is not a Ray cluster (no gRPC answer within {PROBE_S:g} s).\n"
            "  fix: pass the head's GCS address that `ray start --head` prints (HOST:6379 by default), not the dashboard's or another service's"
        )


class RayExecutor:
    def __init__(self, ray_address: str | None = None, ray_gpus: float | None = None, **_: object) -> None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("the ray executor needs Ray.\n  fix: pip install 'robustbench_x[ray]'")
        self.address = ray_address or os.environ.get("RAY_ADDRESS")
        if not self.address:
            raise UsageError("no Ray cluster given.\n  fix: pass --ray-address HOST:PORT, set $RAY_ADDRESS, or use --ray-address local")
        self.requested_gpus = ray_gpus
        self._connect()

    def _connect(self) -> None:
        if self.address != "local":
            _reachable(self.address)  # before importing Ray: seconds, not minutes, for a wrong address
        import ray

        env = forwarded_env()
        runtime_env = {"env_vars": env} if env else None
        if self.address == "local":
            ray.init(include_dashboard=False, log_to_driver=False, runtime_env=runtime_env, ignore_reinit_error=True)
        else:
            try:
                ray.init(address=self.address, log_to_driver=False, runtime_env=runtime_env, ignore_reinit_error=True)
            except (ConnectionError, TimeoutError, RuntimeError) as exc:  # a gRPC service that is not Ray, a version mismatch
                raise UsageError(
                    f"could not join the Ray cluster at {self.address}: {type(exc).__name__}: {exc}\n"
                    "  fix: check the address (`ray status` on the head) and that this machine runs the cluster's Ray and Python versions"
                ) from None
        resources = ray.cluster_resources()
        available = float(resources.get("GPU", 0))
        if self.requested_gpus is None:
            self.gpus = 1.0 if available >= 1 else 0.0
        else:
            self.gpus = float(self.requested_gpus)
        if self.gpus > available:
            ray.shutdown()
            raise UsageError(
                f"the Ray cluster at {self.address} has {available:g} GPU(s), but each job group asks for {self.gpus:g}.\n"
                "  fix: pass --ray-gpus 0 to run on CPUs, or add GPU nodes to the cluster"
            )

    def run(self, groups, options: RunOptions, on_job=None, log=None) -> list[Outcome]:
        import dataclasses

        import ray

        task = ray.remote(num_gpus=self.gpus, num_cpus=1, max_retries=2, retry_exceptions=False)(_remote_group)
        opts = dataclasses.replace(
            options, out=_absolute(options.out), config_file=_absolute(options.config_file), device="cuda" if self.gpus >= 1 else "cpu"
        )
        pending = {task.remote(group, opts): group for group in groups}
        outcomes: list[Outcome] = []
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                ref = done[0]
                group = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # infrastructure failure after retries
                    result = _fail(group, options, f"Ray task failed: {type(exc).__name__}: {exc}")
                outcomes.extend(result)
                if on_job:
                    for job, outcome in zip(group.jobs, result):
                        on_job(job, outcome.status)
        finally:
            ray.shutdown()
        return outcomes


def _remote_group(group, options: RunOptions) -> list[Outcome]:
    return run_group(group, options)


def _fail(group, options: RunOptions, reason: str) -> list[Outcome]:
    from robustbench_x.results import ResultStore
    from robustbench_x.runner import _row

    store = ResultStore(options.out)
    outcomes = []
    for job in group.jobs:
        if store.done(job):
            outcomes.append(Outcome(job.key, "ok"))
        else:
            store.write(job, [_row(job, status="failed", error=reason)], None)
            outcomes.append(Outcome(job.key, "failed", reason))
    return outcomes
