"""Pools: the jobs of one model setting go into one job array, with that model's resources and throttle.

    model=random,majority task=copa_demo,nli_demo,story_demo  ->  6 jobs, 2 pools:
        pool random:   array 101, tasks 101_0..101_2, random's resources, %<random's max_parallel>
        pool majority: array 102, tasks 102_0..102_2, majority's resources, %<majority's max_parallel>

Also the launcher options -> submitit parameters of a pool (:func:`executor_parameters`), and the
cluster's own limits (``scontrol show config``: MaxArraySize, ClusterName).
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from fewshot_eval.launch.batch import LaunchBatch
from fewshot_eval.plan.unit import unit_resources

RESOURCE_KEYS = ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "mem_gb", "timeout_min")
# launcher options that are not passed to sbatch as they are
OWN_KEYS = ("submitit_folder", "max_num_timeout", "array_parallelism", "name", "stderr_to_stdout", "wait", "mail_type", "mail_user",
            "auto_timeout_factor", "auto_timeout_floor_min")


@dataclass
class Pool:
    """The jobs of one model setting (with one set of resources): one job array."""

    name: str
    limit: int  # array throttle: the model's max_parallel, or the run param max_parallel
    resources: dict[str, Any]
    combine: bool
    members: list[int] = field(default_factory=list)  # indices into the sweep's jobs
    slurm: dict[str, Any] = field(default_factory=dict)  # the model's scheduler options (settings.SlurmOptions)


def make_pools(pool_info: Sequence[dict[str, Any]]) -> list[Pool]:
    """Group jobs by model setting (and resources, throttle, combine flag), in order of first appearance."""
    pools: dict[str, Pool] = {}
    names: set[str] = set()
    for i, info in enumerate(pool_info):
        key = json.dumps([info["pool"], info["resources"], info["max_parallel"], info["combine_tasks"], info.get("slurm") or {}], sort_keys=True)
        if key not in pools:
            name, n = info["pool"], 2
            while name in names:  # the same model setting with other resources (e.g. model.resources.x=...)
                name, n = f"{info['pool']}-{n}", n + 1
            names.add(name)
            pools[key] = Pool(name, int(info["max_parallel"]), dict(info["resources"]), bool(info["combine_tasks"]),
                              slurm=dict(info.get("slurm") or {}))
        pools[key].members.append(i)
    return list(pools.values())


DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default
_config: dict[str, str] = {}


def slurm_config() -> dict[str, str]:
    """``scontrol show config`` as a dict, asked once per process with the probe timeout
    (:mod:`fewshot_eval.launch.slurm.probes`); raises SlurmUnreachable when the controller does not answer."""
    from fewshot_eval.launch.slurm.probes import SlurmUnreachable, run

    if not _config:
        ans = run(["scontrol", "show", "config"], warn=False)  # the launcher says it, in one line
        if not ans.ok:
            raise SlurmUnreachable(ans.why)
        for line in ans.out.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                _config[k.strip()] = v.strip()
        _config.setdefault("_asked", "1")
    return _config


def max_array_size() -> int:
    """The cluster's ``MaxArraySize`` (an array's indices run 0 .. MaxArraySize-1)."""
    try:
        return max(1, int(slurm_config().get("MaxArraySize", DEFAULT_MAX_ARRAY_SIZE)))
    except ValueError:
        return DEFAULT_MAX_ARRAY_SIZE


def cluster_name() -> Optional[str]:
    """The ClusterName of the cluster sbatch submits to; recorded in every marker."""
    return slurm_config().get("ClusterName") or None


def chunks(members: Sequence[int], size: int) -> list[list[int]]:
    return [list(members[i:i + size]) for i in range(0, len(members), size)] or [[]]


def lanes(arrays: int, budget: int) -> list[tuple[int, list[int]]]:
    """How a pool split into ``arrays`` job arrays keeps to its throttle ``budget`` (the model's
    max_parallel) as a whole: ``min(arrays, budget)`` lanes, each a chain of arrays (an array starts once
    the one before it in its lane has ended: ``sbatch --dependency=afterany``), the budget divided among
    the lanes. [(lane throttle, array numbers)], the throttles summing to ``budget``::

        3 arrays, max_parallel 1 -> [(1, [0, 1, 2])]                 one chain, one task at a time
        3 arrays, max_parallel 2 -> [(1, [0, 2]), (1, [1])]
        2 arrays, max_parallel 5 -> [(3, [0]), (2, [1])]             side by side, 3 + 2
    """
    n = max(1, min(arrays, budget))
    return [(budget // n + (1 if k < budget % n else 0), list(range(k, arrays, n))) for k in range(n)]


def pool_resources(params: dict[str, Any], pool: Pool) -> dict[str, Any]:
    """A launcher value (set on the command line or in the yaml) wins over the model setting's resources
    (``timeout_min=auto``: the pool's, which the planner set from earlier results)."""
    return {k: params.get(k) if params.get(k) not in (None, "auto") else pool.resources.get(k) for k in RESOURCE_KEYS}


def throttle(params: dict[str, Any], pool: Pool) -> int:
    return max(1, min(pool.limit, int(params.get("array_parallelism") or pool.limit)))


def executor_parameters(params: dict[str, Any], pool: Pool, site: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` arguments of one pool. ``site``: the options of the sweep's site
    profile (``fewshot_eval.launch.slurm.site_profiles``). Per option, lowest first: the site, the model
    setting's ``slurm:``, ``hydra.launcher.<name>``; setup lines run in that order (the site's ``env``
    exported first)."""
    res = pool_resources(params, pool)
    out: dict[str, Any] = {
        "name": f"{params.get('name') or 'fewshot'}-{pool.name}",
        "timeout_min": res["timeout_min"],
        "nodes": res["nodes"],
        "tasks_per_node": res["tasks_per_node"],
        "cpus_per_task": res["cpus_per_task"],
        "stderr_to_stdout": bool(params.get("stderr_to_stdout")),
        "slurm_array_parallelism": throttle(params, pool),
    }
    if res["gpus_per_node"]:
        out["gpus_per_node"] = res["gpus_per_node"]
    if res["mem_gb"]:
        out["mem_gb"] = res["mem_gb"]
    if params.get("mail_type") and str(params["mail_type"]).upper() != "NONE":
        out["slurm_mail_type"] = params["mail_type"]
        if params.get("mail_user"):
            out["slurm_mail_user"] = params["mail_user"]
    for k, v in params.items():
        if k not in RESOURCE_KEYS and k not in OWN_KEYS and k != "_target_" and v is not None and v != {}:
            out[f"slurm_{k}"] = v
    model = pool.slurm or {}
    opts = site or {}
    for k in ("partition", "account", "qos", "constraint", "gres"):  # hydra.launcher.<k>, else the model's, else the site's
        value = model.get(k) or (opts.get(k) if k != "gres" else None)
        if value and params.get(k) is None:
            out[f"slurm_{k}"] = value
    if opts.get("gpu_gres") and res["gpus_per_node"]:  # the cluster takes GPUs as --gres=<its spelling>
        del out["gpus_per_node"]
        out.setdefault("slurm_gres", opts["gpu_gres"].replace("{gpus}", str(res["gpus_per_node"])))
    if model.get("exclusive") and params.get("exclusive") is None:
        out["slurm_exclusive"] = True
    extra = {**(opts.get("sbatch") or {}), **(model.get("sbatch") or {}), **(params.get("additional_parameters") or {})}
    if extra:
        out["slurm_additional_parameters"] = extra
    setup = setup_lines(site) + list(params.get("setup") or []) + list(model.get("setup") or [])
    if setup:
        out["slurm_setup"] = setup
    return out


def setup_lines(site: Optional[Mapping[str, Any]]) -> list[str]:
    """A site's lines of the job script: its ``env`` exported, then its ``setup`` lines."""
    site = site or {}
    return [f"export {k}={shlex.quote(str(v))}" for k, v in (site.get("env") or {}).items()] + list(site.get("setup") or [])


def python_command(site: Optional[Mapping[str, Any]]) -> Optional[str]:
    """What starts the job's Python (submitit's ``python``): ``<wrapper> <python>``, e.g.
    ``apptainer exec --nv eval.sif /venv/bin/python``; None: submitit's default (this Python)."""
    site = site or {}
    if not (site.get("wrapper") or site.get("python")):
        return None
    python = site.get("python") or shlex.quote(sys.executable)
    return f"{site['wrapper']} {python}" if site.get("wrapper") else python


def hydra_overrides(params: dict[str, Any], pool: Pool) -> list[str]:
    """What a pool's jobs got, as overrides of the launcher config: ``.hydra/hydra.yaml`` of each job shows them."""
    res = pool_resources(params, pool)
    out = [f"hydra.launcher.{k}={res[k]}" for k in RESOURCE_KEYS if res[k] is not None]
    return out + [f"hydra.launcher.array_parallelism={throttle(params, pool)}"]


def pool_folder(template: str, pool: str) -> str:
    """``<sweep>/.submitit/%j`` -> ``<sweep>/.submitit/<pool>/%j``: one folder per pool, one subfolder per job."""
    return template.replace("%j", f"{pool}/%j") if "%j" in template else str(Path(template) / pool / "%j")


def pool_info(batch: LaunchBatch) -> list[dict[str, Any]]:
    """Per job: its pool (model setting), throttle, resources and combine flag."""
    return [
        {"pool": j.unit.model_key, "max_parallel": batch.pool_limit(i),
         "resources": {**unit_resources(j.unit), **({"timeout_min": j.time_limit_min} if j.time_limit_min else {})},
         "combine_tasks": bool(j.unit.model["job"]["combine_tasks"]), "slurm": dict(j.unit.model.get("slurm") or {})}
        for i, j in enumerate(batch.jobs)
    ]


def stock_params(params: dict[str, Any]) -> dict[str, Any]:
    """This launcher's options as hydra-submitit-launcher's ``submitit_slurm`` takes them, for a sweep
    without planned pools (another sweeper, another app): null resources get the stock defaults (there is
    no model setting to take them from; ``timeout_min=auto`` too: no planner estimated the jobs), and
    ``wait`` and the ``auto_timeout_*`` options go (the stock launcher always waits)."""
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_container(OmegaConf.structured(SlurmQueueConf), resolve=False)
    assert isinstance(defaults, dict)
    out = {k: v for k, v in params.items() if k not in ("wait", "_target_", "auto_timeout_factor", "auto_timeout_floor_min")}
    for k in RESOURCE_KEYS:
        if out.get(k) is None or out.get(k) == "auto":  # auto needs fewshot-eval's planner (earlier results): the stock default
            out[k] = defaults.get(k)
    if not out.get("mail_type") or str(out["mail_type"]).upper() == "NONE":
        out.pop("mail_type", None)
        out.pop("mail_user", None)
    return {k: v for k, v in out.items() if v is not None or k in defaults}
