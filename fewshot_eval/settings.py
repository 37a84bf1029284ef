"""Schemas of model and task settings (``conf/model/*.yaml``, ``conf/task/*.yaml``) and of site
profiles (``conf/site/*.yaml``).

Files hold only what differs from these defaults; :func:`model_setting` and
:func:`task_setting` validate a loaded node and return plain dicts. These dataclasses are the
config's schema (registered in Hydra's ConfigStore): their defaults are the defaults, e.g. the
predictor of a model setting that names none. What a predictor needs (``weights``, ...) is checked
by the predictor's class at planning (``evaluate/backends/``), not here.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fewshot_eval.config import ConfigError, check_eval_keys

NAME_RULE = "non-empty, not starting with '.', without '/', '\\' or '..'"


def check_setting_name(value: Any, what: str, where: str) -> None:
    """``value`` becomes a directory name of result paths: reject what would escape or hide it."""
    s = value if isinstance(value, str) else ""
    if s and not s.startswith(".") and "/" not in s and "\\" not in s and ".." not in s:
        return
    fixed = re.sub(r"\.{2,}", ".", re.sub(r"[/\\]", "_", s)).lstrip(".")
    suggestion = f" (e.g. '{fixed}')" if fixed else ""
    raise ConfigError(f"{where}: {what} {value!r} is used as a directory name and must be {NAME_RULE}. Rename it{suggestion}.")


def is_local_weights(weights: str) -> bool:
    """``weights`` names a local checkpoint dir (absolute, ``./``, ``~``, or an existing dir), else a hub id."""
    from pathlib import Path

    return weights.startswith(("/", ".", "~")) or Path(weights).expanduser().is_dir()


@dataclass
class Resources:
    """SLURM resources of one job of this model's pool."""

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    mem_gb: Optional[int] = None
    # minutes, or "auto": from the wall times of earlier results of this model (plan/estimates.py)
    timeout_min: Any = 60


# USR2 (checkpoint + requeue) comes signal_delay_s before the time limit, and up to ~60 s earlier
# than asked (measured on the test cluster: 4-24 s into a 3 min job with the 120 s default).
EARLY_SIGNAL_SLACK_S = 60
MIN_WORK_S = 60  # what a job must have at least, between its start and the earliest USR2


def time_limit_problem(timeout_min: Any, signal_delay_s: Any) -> Optional[str]:
    """Why ``timeout_min`` leaves a SLURM job no time to work before its USR2, or None. The rule:
    ``timeout_min * 60 >= signal_delay_s + 60 (early signal slack) + 60 (work)``."""
    try:
        limit_s, delay = float(timeout_min) * 60, float(signal_delay_s or 0)
    except (TypeError, ValueError):
        return None
    need = delay + EARLY_SIGNAL_SLACK_S + MIN_WORK_S
    if limit_s >= need:
        return None
    import math

    return (f"timeout_min={timeout_min} leaves no work time: SLURM signals the job signal_delay_s={delay:g}s before its "
            f"time limit, up to {EARLY_SIGNAL_SLACK_S}s earlier than asked, so a job needs timeout_min >= "
            f"{math.ceil(need / 60)} (or a smaller hydra.launcher.signal_delay_s); it would be requeued without progress")


@dataclass
class JobParams:
    combine_tasks: bool = False  # all selected task settings (and nshot values) of this model in one job


@dataclass
class SlurmOptions:
    """Scheduler options of this model's pool (SLURM launcher); a ``hydra.launcher.<same name>`` value wins.
    They cannot change results (plan/identity.py: MODEL_NON_IDENTITY)."""

    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None  # e.g. "a100|h100"
    exclusive: bool = False  # whole nodes
    gres: Optional[str] = None  # e.g. "gpu:a100:2" (the GPU type)
    sbatch: dict = field(default_factory=dict)  # any other #SBATCH option: {begin: now+1hour, reservation: x}
    setup: list = field(default_factory=list)  # shell lines before the job: ["module load cuda/12.4", "conda activate eval"]


@dataclass
class SiteProfile:
    """What one cluster needs (``conf/site/<name>.yaml``, selected with ``site=<name>`` or detected from
    SLURM's ClusterName). A model setting's ``slurm:`` value and then a ``hydra.launcher.<same name>``
    value win over the site's; see docs/slurm.md#site-profiles. Never part of a result's identity."""

    clusters: list = field(default_factory=list)  # SLURM ClusterNames it is detected for (its file name counts too)
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    # how this cluster spells a GPU request: null = --gpus-per-node=N; "gpu:{gpus}" or "gpu:a100:{gpus}" = --gres=... instead
    gpu_gres: Optional[str] = None
    env: dict = field(default_factory=dict)  # exported in every job script and set while planning: {HF_HOME: /shared/hf}
    setup: list = field(default_factory=list)  # shell lines before the job: ["module load cuda/12.4", "source ~/venv/bin/activate"]
    wrapper: Optional[str] = None  # the job's command runs under it, e.g. "apptainer exec --nv /images/eval.sif"
    python: Optional[str] = None  # the Python that runs the job (inside the wrapper); null: the one that submits
    sbatch: dict = field(default_factory=dict)  # any other #SBATCH option: {reservation: eval}
    description: str = ""


@dataclass
class ChatSetting:
    """Prompts wrapped with the tokenizer's chat template (see evaluate/tasks/chat.py)."""

    enabled: bool = False  # true: wrap prompts with the tokenizer's chat template (part of the result identity)
    system_prompt: Optional[str] = None  # a system message before everything (the description param follows it)
    fewshot_as_multiturn: bool = True  # demonstrations as user/assistant turns; false: all in one user message


@dataclass
class Parallel:
    """How one job spreads the model over its devices (``clm``: accelerate; ``vllm``: the engine).
    Numbers stay the same within float tolerance (plan/identity.py: MODEL_NON_IDENTITY)."""

    device_map: Optional[str] = None  # clm: null = one device; auto | balanced | balanced_low_0 | sequential (accelerate)
    max_memory: dict = field(default_factory=dict)  # clm with device_map: per device, e.g. {0: 70GiB, 1: 70GiB, cpu: 200GiB}
    offload_folder: Optional[str] = None  # clm with device_map: where weights beyond max_memory go (disk offload)
    data_parallel_size: int = 1  # clm: N copies of the model, one per worker process (cuda:i or a CPU share); vllm: the engine's
    tensor_parallel_size: int = 1  # vllm: GPUs one copy of the model is split over (within a node)
    pipeline_parallel_size: int = 1  # vllm: stages over nodes (> 1 node: a Ray cluster in the SLURM job)
    engine_args: dict = field(default_factory=dict)  # vllm: more vllm.LLM(...) arguments, e.g. {gpu_memory_utilization: 0.85}


@dataclass
class Server:
    """``predictor: openai_completions``: an OpenAI-compatible completions server (``weights`` = its model name)."""

    base_url: Optional[str] = None  # e.g. http://node12:8000/v1
    api_key_env: Optional[str] = None  # NAME of the environment variable holding the key (never the key itself)
    timeout_s: float = 120.0  # per request
    max_retries: int = 5  # on 429 / 5xx / connection errors, with exponential backoff


@dataclass
class ModelSetting:
    name: str = "???"  # display name, used in result paths and tables
    predictor: str = "clm"  # a registered predictor: clm | vllm | openai_completions | random | majority | your own
    weights: Optional[str] = None  # local dir, hub id or 'tiny-gpt2' (built locally); the served model's name; null for baselines
    revision: Optional[str] = None  # hub revision / checkpoint tag, part of the result identity
    # clm/vllm: overrides of the model's HuggingFace config at load (from_pretrained kwargs / vLLM hf_overrides),
    # e.g. {activation_function: gelu_pytorch_tanh} (GPT-2's fused GELU); part of the result identity
    hf_overrides: dict = field(default_factory=dict)
    chat: ChatSetting = field(default_factory=ChatSetting)  # chat.enabled=true: the tokenizer's chat template
    eval: dict = field(default_factory=dict)  # evaluation params of this model (train_sep, max_length, ...)
    job: JobParams = field(default_factory=JobParams)
    resources: Resources = field(default_factory=Resources)
    max_parallel: int = 4  # at most this many jobs of this model's pool at once
    slurm: SlurmOptions = field(default_factory=SlurmOptions)  # scheduler options of this model's pool
    parallel: Parallel = field(default_factory=Parallel)  # multi-GPU / multi-node loading (clm, vllm)
    server: Server = field(default_factory=Server)  # openai_completions: where the served model is
    # true: a job whose hub inputs (weights, datasets) were all in the local caches at planning runs with
    # HuggingFace offline mode (never waits on a network timeout); false: the job may use the network
    offline_when_cached: bool = True
    description: str = ""
    # A checkpoint sweep: one setting '<key>__step<N>' per checkpoint (fewshot_eval/plan/expand.py):
    # {dir: /runs/x, pattern: "checkpoint-*"} (sub-dirs holding a config.json; the step is the last
    # number of the name) or {revisions: [step1000, step2000]} (hub revisions of 'weights').
    checkpoints: Optional[dict] = None


@dataclass
class TaskSetting:
    run_name: str = "???"  # results folder prefix; settings with the same run_name share a folder tree
    tasks: list = field(default_factory=list)  # task definitions (conf/task_def/<name>.yaml) evaluated
    eval: dict = field(default_factory=dict)  # evaluation params (templates, calibrator, scoring, allowed_nshot, ...)
    description: str = ""


@functools.lru_cache(maxsize=None)
def _schema(schema: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field]]:
    """A dataclass schema's type hints and fields, looked up once (each job validates its settings)."""
    return typing.get_type_hints(schema), {f.name: f for f in dataclasses.fields(schema)}


def _check(schema: type, node: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """Plain-Python validation against a dataclass schema (OmegaConf's costs ~10 ms a file):
    unknown keys, missing mandatory keys and wrong types are errors naming file and key."""
    if not isinstance(node, Mapping):
        raise ConfigError(f"{where}: '{prefix.rstrip('.') or 'the file'}' must be a mapping, got {type(node).__name__}.")
    hints, fields = _schema(schema)
    unknown = [k for k in node if k not in fields]
    if unknown:
        raise ConfigError(f"{where}: unknown key '{prefix}{unknown[0]}'. Valid keys: {', '.join(prefix + f for f in fields)}.")
    out: dict[str, Any] = {}
    for name, f in fields.items():
        key = prefix + name
        if name in node:
            value = node[name]
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            value = f.default_factory()  # type: ignore[misc]
        else:
            value = None
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if value == "???":
            raise ConfigError(f"{where}: missing mandatory key '{key}'.")
        hint = hints[name]
        optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
        base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
        if value is None and optional:
            out[name] = None
        elif base is Any:  # checked by the setting's own rule (e.g. resources.timeout_min: minutes or 'auto')
            out[name] = value
        elif dataclasses.is_dataclass(base):
            out[name] = _check(base, value if value is not None else {}, where, key + ".")
        else:
            origin = typing.get_origin(base) or base
            ok = isinstance(value, origin) and not (origin is int and isinstance(value, bool))
            if origin is float and isinstance(value, int) and not isinstance(value, bool):
                ok, value = True, float(value)
            if not ok:
                raise ConfigError(f"{where}: key '{key}' must be {origin.__name__}, got {value!r}.")
            out[name] = value
    return out


def _validate(schema: type, node: Any, where: str) -> dict[str, Any]:
    if node is None:
        raise ConfigError(f"{where} is empty.")
    if OmegaConf.is_config(node):
        try:
            node = OmegaConf.to_container(node, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{where}: cannot resolve key '{getattr(e, 'full_key', '')}': {e}") from None
    return _check(schema, node, where)


def model_setting(node: DictConfig | dict, key: str) -> dict[str, Any]:
    """Validate one model setting; errors name ``model/<key>.yaml`` and the key."""
    where = f"model/{key}.yaml"
    data = _validate(ModelSetting, node, where)
    check_setting_name(key, "model", where)
    check_setting_name(data["name"], "name", where)
    if data["max_parallel"] < 1:
        raise ConfigError(f"{where}: max_parallel must be >= 1, got {data['max_parallel']}.")
    dp = data["parallel"]["data_parallel_size"]
    if dp < 1:
        raise ConfigError(f"{where}: parallel.data_parallel_size must be an integer >= 1 (copies of the model in one job; "
                          f"1: one process), got {dp}.")
    timeout = data["resources"]["timeout_min"]
    if timeout != "auto" and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(f"{where}: resources.timeout_min must be a number of minutes or 'auto' (from the wall times of "
                          f"earlier results of this model), got {timeout!r}.")
    check_eval_keys(data["eval"], f"{where} key 'eval'")
    # GPU indices may be written as YAML ints ({0: 70GiB, cpu: 200GiB}): keys as strings, so the setting stays JSON-sortable
    data["parallel"]["max_memory"] = {str(k): v for k, v in data["parallel"]["max_memory"].items()}
    data["chat"] = _chat(data["chat"], where)
    if data["checkpoints"] is not None:
        check_checkpoints(data, where)
    return data


def _chat(chat: dict[str, Any], where: str) -> Optional[dict[str, Any]]:
    """The chat options when ``enabled``, else None (plain prompts: not in the result identity)."""
    if chat["enabled"]:
        return chat
    defaults = dataclasses.asdict(ChatSetting())
    changed = [k for k, v in chat.items() if k != "enabled" and v != defaults[k]]
    if changed:
        raise ConfigError(f"{where}: chat.{changed[0]} is set but chat.enabled is false. "
                          f"Set chat.enabled=true to use the chat template, or remove chat.{changed[0]}.")
    return None


CHECKPOINT_KEYS = ("dir", "pattern", "revisions")


def check_checkpoints(data: dict[str, Any], where: str) -> None:
    """``checkpoints:`` names a local run dir (``dir``, optional ``pattern``) or hub ``revisions``, not both.
    (Whether the predictor can take checkpoints is a capability of its class, checked where they are
    listed: ``plan/expand.checkpoint_steps``.)"""
    ck = data["checkpoints"]
    unknown = [k for k in ck if k not in CHECKPOINT_KEYS]
    if unknown:
        raise ConfigError(f"{where}: unknown key 'checkpoints.{unknown[0]}'. Valid keys: {', '.join('checkpoints.' + k for k in CHECKPOINT_KEYS)}.")
    has_dir, has_revs = bool(ck.get("dir")), bool(ck.get("revisions"))
    if has_dir == has_revs:
        raise ConfigError(
            f"{where}: 'checkpoints' needs exactly one of 'dir' (a training run's output dir, with 'pattern', "
            f"default 'checkpoint-*') or 'revisions' (a list of hub revisions of 'weights'), got {ck!r}."
        )
    if has_revs:
        revs = ck["revisions"]
        if not isinstance(revs, list) or not all(isinstance(r, (str, int)) for r in revs):
            raise ConfigError(f"{where}: 'checkpoints.revisions' must be a list of revision names (e.g. [step1000, step2000]), got {revs!r}.")
        if not data["weights"]:
            raise ConfigError(f"{where}: 'checkpoints.revisions' are revisions of 'weights': set weights to the hub id.")
    elif not isinstance(ck["dir"], str) or not isinstance(ck.get("pattern", "checkpoint-*"), str):
        raise ConfigError(f"{where}: 'checkpoints.dir' and 'checkpoints.pattern' must be strings, got {ck!r}.")


def task_setting(node: DictConfig | dict, key: str) -> dict[str, Any]:
    """Validate one task setting; errors name ``task/<key>.yaml`` and the key."""
    where = f"task/{key}.yaml"
    data = _validate(TaskSetting, node, where)
    check_setting_name(key, "task", where)
    check_setting_name(data["run_name"], "run_name", where)
    if not data["tasks"] or not all(isinstance(t, str) for t in data["tasks"]):
        raise ConfigError(f"{where}: 'tasks' must be a non-empty list of task names, got {data['tasks']!r}.")
    check_eval_keys(data["eval"], f"{where} key 'eval'")
    allowed = data["eval"].get("allowed_nshot")
    if allowed is not None:
        allowed = [allowed] if isinstance(allowed, int) else list(allowed)
        if any((not isinstance(n, int)) or n < -1 for n in allowed):
            raise ConfigError(f"{where}: eval.allowed_nshot must be integers >= -1, got {allowed!r}.")
        data["eval"]["allowed_nshot"] = allowed
    return data


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def site_profile(node: DictConfig | dict, name: str) -> dict[str, Any]:
    """Validate one site profile; errors name ``site/<name>.yaml`` and the key."""
    where = f"site/{name}.yaml"
    data = _validate(SiteProfile, node if node is not None else {}, where)
    if not all(isinstance(c, str) and c for c in data["clusters"]):
        raise ConfigError(f"{where}: 'clusters' must be a list of SLURM cluster names (ClusterName), got {data['clusters']!r}.")
    for key, value in data["env"].items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ConfigError(f"{where}: env key {key!r} is not an environment variable name (letters, digits, '_').")
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: env.{key} must be a string or number, got {value!r}.")
    data["env"] = {k: str(v) for k, v in data["env"].items()}
    if not all(isinstance(line, str) for line in data["setup"]):
        raise ConfigError(f"{where}: 'setup' must be a list of shell lines, got {data['setup']!r}.")
    gres = data["gpu_gres"]
    if gres is not None and "{gpus}" not in gres:
        raise ConfigError(f"{where}: gpu_gres {gres!r} has no '{{gpus}}' (the GPUs per node go there), e.g. gpu_gres: 'gpu:{{gpus}}' or 'gpu:a100:{{gpus}}'.")
    return data
