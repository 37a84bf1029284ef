"""Fixtures for tests that need the real single-node SLURM cluster.

``slurm_cluster`` (session scope) starts ``.ci/slurm/cluster.sh`` once per test
session, exports ``SLURM_CONF`` and yields a :class:`SlurmCluster` carrying the
config paths, the partition names and small polling helpers
(``squeue_jobs``, ``sacct_state``, ``wait_for_state``, ``result_within``, ...).

Skip/fail policy: the tests are skipped (with the reason) only when the cluster
cannot be installed here -- not root, or slurm missing and no apt-get -- and
``FEWSHOT_REQUIRE_SLURM`` is unset.  With ``FEWSHOT_REQUIRE_SLURM=1`` (CI) that
case, and any failing ``cluster.sh start``, fail the tests.

At session end jobs submitted by the tests are cancelled; the cluster is
stopped only if this session started it (a cluster that was already up, e.g.
started by hand or by a concurrent session, stays up).  ``FEWSHOT_SLURM_KEEP=1``
keeps a cluster started here running for faster reruns.

``two_node_cluster`` (session scope, started only by the tests that ask for it) is a second cluster
of two nodes, each slurmd in its own network namespace (``FEWSHOT_SLURM_NODES=2``), under
``/tmp/fewshot-slurm2`` and ports 16917+ (``FEWSHOT_SLURM2_DIR`` / ``FEWSHOT_SLURM2_PORT_BASE``), so
it runs beside the single-node one; its ``SLURM_CONF`` goes only to a test's subprocesses.
``ray_python`` is the Python whose ray the Ray tests use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO_ROOT / ".ci" / "slurm" / "cluster.sh"

# sacct / squeue states after which a job will not run any more
TERMINAL_STATES = frozenset(
    {
        "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
        "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED",
    }
)


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def _run(args: list[str], timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=check)


def _binaries_present() -> bool:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return all(shutil.which(b, path=path) for b in ("slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "mariadbd"))


@dataclass
class SlurmCluster:
    """Handle on the running test cluster (what ``slurm_cluster`` yields)."""

    conf: Path
    root: Path
    default_partition: str = "debug"
    gpu_partition: str = "gpu"
    partitions: tuple[str, ...] = ("debug", "gpu")
    node: str = "fewshot1"
    cpus: int = 8  # advertised CPUs (more than the host has: concurrency tests)
    gpus: int = 4  # fake gres gpu:4
    started_here: bool = False
    job_ids: set[str] = field(default_factory=set)

    # ---------------------------------------------------------- tracking
    def track(self, *job_ids: Any) -> None:
        """Remember job ids (or submitit jobs) so they are cancelled at session end."""
        for j in job_ids:
            self.job_ids.add(str(getattr(j, "job_id", j)).split("_")[0])

    # ---------------------------------------------------------- queries
    def squeue_jobs(self, user: str | None = None) -> list[dict[str, str]]:
        """Jobs slurmctld still lists: dicts with id (``123``, ``123_4`` or
        ``123_[2-3%2]``), array_job_id, state, name, reason, stdout.
        Pending array remainders keep the ``%N`` throttle in ``id``."""
        fmt = "%i|%F|%T|%j|%r"
        args = ["squeue", "-h", "-o", fmt] + (["-u", user] if user else [])
        out = _run(args, check=True).stdout
        keys = ("id", "array_job_id", "state", "name", "reason")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    def sacct_rows(self, job_id: Any) -> list[dict[str, str]]:
        """sacct allocation rows (no steps) for a job or whole array:
        dicts with id, state, exit_code, partition."""
        jid = str(getattr(job_id, "job_id", job_id))
        out = _run(["sacct", "-n", "-X", "-P", "-j", jid, "-o", "JobID,State,ExitCode,Partition"]).stdout
        keys = ("id", "state", "exit_code", "partition")
        return [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]

    def sacct_state(self, job_id: Any) -> str | None:
        """Accounting state of one job / array task, e.g. ``COMPLETED`` or
        ``CANCELLED`` (``CANCELLED by 0`` is normalised), None if not recorded yet."""
        jid = str(getattr(job_id, "job_id", job_id))
        for row in self.sacct_rows(jid):
            if row["id"] == jid:
                return row["state"].split()[0]
        return None

    def wait_for_state(
        self, job_id: Any, states: str | Iterable[str], timeout: float = 30, poll: float = 0.5
    ) -> str:
        """Poll sacct until ``job_id`` is in one of ``states``; returns the state.
        Raises AssertionError on timeout -- or early, if the job reaches a
        terminal state that is not one of ``states``."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        state = None
        while True:
            state = self.sacct_state(job_id)
            if state in wanted:
                return state
            if state in TERMINAL_STATES:
                raise AssertionError(f"job {job_id} ended {state}, expected one of {sorted(wanted)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {state} after {timeout}s, expected {sorted(wanted)}")
            time.sleep(poll)

    def wait_until(self, predicate, timeout: float = 30, poll: float = 0.3, what: str = "condition"):
        """Poll ``predicate()`` until truthy; returns its value or raises AssertionError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(poll)

    # ---------------------------------------------------------- submitit
    def executor(self, folder: Path | str, **params: Any):
        """``submitit.AutoExecutor(folder, cluster="slurm")`` with test defaults
        (debug partition, 1 CPU, timeout_min=5 -- it must exceed signal_delay_s/60)."""
        import submitit

        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        base: dict[str, Any] = dict(timeout_min=5, slurm_partition=self.default_partition, cpus_per_task=1)
        base.update(params)
        ex.update_parameters(**base)
        return ex

    @staticmethod
    def result_within(job, timeout: float = 60):
        """``job.result()`` with a deadline (submitit can block forever); re-raises
        the job's exception; raises TimeoutError if it did not return in time."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = job.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc

        t = threading.Thread(target=target, daemon=True, name=f"result-{job.job_id}")
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError(f"job {job.job_id}: result() did not return within {timeout}s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    # ---------------------------------------------------------- cleanup
    def cancel(self, *job_ids: Any) -> None:
        ids = [str(getattr(j, "job_id", j)) for j in job_ids]
        if ids:
            _run(["scancel", *ids])

    def cancel_tracked_and_under(self, base: Path) -> None:
        """Cancel tracked jobs plus live jobs whose stdout lies under ``base``
        (submitit folders are tmp_path dirs, so this catches untracked test jobs)."""
        ids = set(self.job_ids)
        out = _run(["squeue", "-h", "-O", "ArrayJobID:30,STDOUT:4096"]).stdout
        for line in out.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[1].strip().startswith(str(base)):
                ids.add(parts[0])
        if ids:
            _run(["scancel", *sorted(ids)])


def _cluster_env(cluster_sh: Path) -> dict[str, str]:
    env = {}
    out = _run(["bash", str(cluster_sh), "env"], check=True).stdout
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            env[k] = v
    return env


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory) -> SlurmCluster:
    require = _truthy("FEWSHOT_REQUIRE_SLURM")
    reason = None
    if os.name != "posix" or os.geteuid() != 0:
        reason = "the local SLURM test cluster needs root (SlurmUser=root, apt-get)"
    elif not _binaries_present() and not shutil.which("apt-get"):
        reason = "slurm is not installed and apt-get is unavailable"
    if reason:
        if require:
            pytest.fail(f"FEWSHOT_REQUIRE_SLURM is set but {reason}", pytrace=False)
        pytest.skip(f"{reason} (set FEWSHOT_REQUIRE_SLURM=1 to make this a failure)")

    already_up = _run(["bash", str(CLUSTER_SH), "status"]).returncode == 0
    t0 = time.monotonic()
    # start installs slurm + mariadb first if missing (~20 s), then ~3 s
    proc = _run(["bash", str(CLUSTER_SH), "start"], timeout=600)
    if proc.returncode != 0:
        if not already_up:  # don't leave half a cluster (mariadb, slurmdbd) behind
            _run(["bash", str(CLUSTER_SH), "stop"], timeout=120)
        pytest.fail(
            f"{CLUSTER_SH} start failed (rc={proc.returncode}) after {time.monotonic() - t0:.0f}s\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    env = _cluster_env(CLUSTER_SH)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cluster = SlurmCluster(
        conf=Path(env["SLURM_CONF"]),
        root=Path(env.get("FEWSHOT_SLURM_DIR", Path(env["SLURM_CONF"]).parent.parent)),
        started_here=not already_up,
    )
    try:
        yield cluster
    finally:
        try:
            cluster.cancel_tracked_and_under(tmp_path_factory.getbasetemp())
        finally:
            if cluster.started_here and not _truthy("FEWSHOT_SLURM_KEEP"):
                _run(["bash", str(CLUSTER_SH), "stop"], timeout=120)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


# ---------------------------------------------------------------- the two-node cluster

TWO_NODE_DIR = os.environ.get("FEWSHOT_SLURM2_DIR", "/tmp/fewshot-slurm2")
TWO_NODE_PORT_BASE = os.environ.get("FEWSHOT_SLURM2_PORT_BASE", "16917")


@dataclass
class TwoNodeCluster:
    """Handle on the two-node test cluster (``two_node_cluster``): ``env`` holds its ``SLURM_CONF`` for
    the subprocesses of a test (the process's own SLURM_CONF stays the single-node cluster's)."""

    env: dict[str, str]
    nodes: tuple[str, ...] = ("fewshot1", "fewshot2")
    partition: str = "debug"
    job_ids: set[str] = field(default_factory=set)

    def run(self, args: list[str], timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=check, env={**os.environ, **self.env})

    def sbatch(self, script: Path, out: Path) -> str:
        jid = self.run(["sbatch", "--parsable", "-o", str(out), str(script)], check=True).stdout.strip().split(";")[0]
        self.job_ids.add(jid)
        return jid

    def sacct(self, job_id: str, fields: str = "JobID,State,NodeList,NTasks") -> list[dict[str, str]]:
        out = self.run(["sacct", "-n", "-P", "-j", job_id, "-o", fields]).stdout
        return [dict(zip(fields.lower().split(","), line.split("|"))) for line in out.splitlines() if line.strip()]

    def wait_for(self, job_id: str, timeout: float = 180, poll: float = 2) -> str:
        """The job's final accounting state (COMPLETED, FAILED ...); AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in self.sacct(job_id, "JobID,State") if r["jobid"] == job_id]
            state = rows[0]["state"].split()[0] if rows else None
            if state in TERMINAL_STATES:
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} on the two-node cluster still {state} after {timeout}s")
            time.sleep(poll)


@pytest.fixture(scope="session")
def two_node_cluster() -> TwoNodeCluster:
    """The two-node cluster (``FEWSHOT_SLURM_NODES=2 .ci/slurm/cluster.sh``: each slurmd in its own
    network namespace) under its own dir and port base, beside the single-node one; skipped / failed
    as ``slurm_cluster``; stopped at session end when this session started it."""
    require = _truthy("FEWSHOT_REQUIRE_SLURM")
    reason = None
    if os.name != "posix" or os.geteuid() != 0:
        reason = "the two-node SLURM test cluster needs root (network namespaces, SlurmUser=root)"
    elif not _binaries_present() and not shutil.which("apt-get"):
        reason = "slurm is not installed and apt-get is unavailable"
    elif not (shutil.which("ip") or os.path.exists("/usr/sbin/ip")) or not shutil.which("nsenter") or not shutil.which("unshare"):
        reason = "the two-node SLURM test cluster needs ip (iproute2), nsenter and unshare"
    if reason:
        if require:
            pytest.fail(f"FEWSHOT_REQUIRE_SLURM is set but {reason}", pytrace=False)
        pytest.skip(f"{reason} (set FEWSHOT_REQUIRE_SLURM=1 to make this a failure)")
    env = {"FEWSHOT_SLURM_NODES": "2", "FEWSHOT_SLURM_DIR": TWO_NODE_DIR, "FEWSHOT_SLURM_PORT_BASE": TWO_NODE_PORT_BASE}
    script = ["bash", str(CLUSTER_SH)]

    def call(cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*script, cmd], capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})

    already_up = call("status").returncode == 0
    proc = call("start", timeout=600)
    if proc.returncode != 0:
        if not already_up:
            call("stop")
        pytest.fail(f"FEWSHOT_SLURM_NODES=2 {CLUSTER_SH} start failed (rc={proc.returncode})\n--- stdout ---\n{proc.stdout}\n"
                    f"--- stderr ---\n{proc.stderr[-6000:]}", pytrace=False)
    conf = [ln.split("=", 1)[1] for ln in call("env").stdout.splitlines() if ln.startswith("export SLURM_CONF=")][0]
    cluster = TwoNodeCluster(env={"SLURM_CONF": conf})
    try:
        yield cluster
    finally:
        if cluster.job_ids:
            cluster.run(["scancel", *sorted(cluster.job_ids)])
        if not already_up and not _truthy("FEWSHOT_SLURM_KEEP"):
            call("stop")


@pytest.fixture(scope="session")
def ray_python() -> str:
    """The Python whose ray the Ray tests run: ``FEWSHOT_RAY_PYTHON``; with ``FEWSHOT_REQUIRE_VLLM_CPU=1`` (CI)
    the vllm-cpu venv the vLLM tests build (tests/setup_vllm_cpu.sh installs ray there: a multi-node vLLM
    job runs Ray from vLLM's Python); else this one. Skips without ray, unless FEWSHOT_REQUIRE_VLLM_CPU=1."""
    import sys

    python = os.environ.get("FEWSHOT_RAY_PYTHON")
    if not python and os.environ.get("FEWSHOT_REQUIRE_VLLM_CPU"):
        from served_helpers import built_vllm_cpu_venv

        python, why = built_vllm_cpu_venv()
        if why:
            pytest.fail(why)
    python = python or sys.executable
    if subprocess.run([python, "-c", "import ray"], capture_output=True).returncode != 0:
        if os.environ.get("FEWSHOT_REQUIRE_VLLM_CPU"):
            pytest.fail(f"{python} has no ray: tests/setup_vllm_cpu.sh should have installed it")
        pytest.skip(f"{python} has no ray (pip install 'ray[default]', or set FEWSHOT_RAY_PYTHON)")
    return python
