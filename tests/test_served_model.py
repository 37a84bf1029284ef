"""``predictor: openai_completions`` against a real OpenAI-compatible server: llama.cpp's, through
llama-cpp-python's server (``python -m llama_cpp.server``), serving the tiny GPT-2 converted to
GGUF (tests/tiny_gguf.py) on the CPU. Its echoed log-probs are shifted by one position, so
``openai_completions``'s start-up check refuses it (tests/test_served_probe.py checks that check
without this server); the other tests here turn the check off to test requests, auth and retries.

The server runs in the python named by ``FEWSHOT_LLAMA_CPP_PYTHON`` (default: this one), which
needs ``pip install 'llama-cpp-python[server]' gguf`` (llama-cpp-python compiles llama.cpp: several
minutes). Without it these tests skip, saying so; ``FEWSHOT_REQUIRE_LLAMA_CPP=1`` makes that a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import run_cli
from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate import build_evaluator
from fewshot_eval.evaluate.backends.openai_completions import OpenAICompletionsPredictor, ServerCheckFailed, ServerError, TokenisationMismatch
from fewshot_eval.evaluate.backends.predictor import Request
from served_helpers import KEY, KEY_ENV, PARAMS, candidates, free_port, probe, running_server, served

PYTHON = os.environ.get("FEWSHOT_LLAMA_CPP_PYTHON") or sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """base_url of a llama.cpp server (llama-cpp-python) serving the tiny GPT-2 as 'tiny-gpt2'."""
    why = probe(PYTHON, "import llama_cpp.server, gguf")
    if why:
        why = f"{PYTHON} lacks llama-cpp-python[server] or gguf ({why})"
        if os.environ.get("FEWSHOT_REQUIRE_LLAMA_CPP"):
            pytest.fail(why)
        pytest.skip(f"{why}: pip install 'llama-cpp-python[server]' gguf, or set FEWSHOT_LLAMA_CPP_PYTHON")
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    d = tmp_path_factory.mktemp("llama")
    model = d / "tiny-gpt2.gguf"
    subprocess.run([PYTHON, str(Path(__file__).with_name("tiny_gguf.py")), str(tiny_gpt2_path()), str(model)], check=True)
    cmd = [PYTHON, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "tiny-gpt2", "--host", "127.0.0.1",
           "--port", str(free_port()), "--n_ctx", "1024", "--logits_all", "true", "--api_key", KEY, "--n_threads", "1"]
    with running_server(cmd, d / "server.log", timeout_s=120) as url:
        yield url


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


# Why the numbers of this server cannot match clm (both measured on the tiny GPT-2):
# 1. llama-cpp-python (0.3.36) pairs each echoed prompt token i with the log-prob row of position i
#    (the distribution of the NEXT token) instead of row i-1: its token_logprobs are shifted by one
#    (test_llama_cpp_python_echo_logprobs_are_shifted_by_one shows it against the model's own logits);
# 2. ggml computes GELU through an fp16 table: even correctly aligned, per-token log-probs differ from
#    transformers' by up to ~1.5e-3.
# vLLM's server, whose echo log-probs are aligned, matches clm within 5e-5 (tests/test_served_vllm.py).
# The start-up check refuses this server; the test below fails the day the server echoes right.


def unchecked(settings: dict) -> OpenAICompletionsPredictor:
    """A predictor that skips the start-up check (which refuses this server), to test requests and tokens."""
    pred = OpenAICompletionsPredictor.from_settings(settings, {})
    pred.check = False
    return pred


@pytest.mark.slow
def test_the_start_up_check_refuses_this_server(server, key):
    """Before any score: one line naming the server and the shift; a whole trial is refused likewise."""
    api = build_evaluator(served(server), {**PARAMS, "predictor": "openai_completions"})
    with pytest.raises(ServerCheckFailed, match=r"the server at .* fails fewshot-eval's start-up check: .*shifted by one"):
        api.run_trial(["copa_demo"], PARAMS, 0, 0)
    clm = build_evaluator({"name": "tiny_gpt2", "predictor": "clm", "weights": "tiny-gpt2"}, {**PARAMS, "predictor": "clm"})
    a = candidates(clm.run_trial(["copa_demo"], PARAMS, 0, 0))
    api.predictor.check = False  # what the check prevents: scores far from clm's
    b = candidates(api.run_trial(["copa_demo"], PARAMS, 0, 0))
    assert a.keys() == b.keys() and max(abs(a[k][0] - b[k][0]) for k in a) > 0.1


REQS = [Request("Question: is it true? Answer: ", "Yes"), Request("The cat sat on", " the mat"), Request("Answer:", " Maybe"),
        Request("Question: is the sky blue? Answer: Yes\n\nQuestion: is fire cold? Answer:", " No")]


def test_the_server_scores_the_continuation_tokens_clm_scores(server, key):
    """Whitespace moved to the continuation, and the server's continuation tokens are clm's."""
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    api = unchecked(served(server))
    clm = CausalLMPredictor.from_settings({"name": "t", "weights": "tiny-gpt2"}, {"device": "cpu"})
    for x, y in zip(api.loglikelihood(REQS), clm.loglikelihood(REQS)):
        assert x.tokens == [clm.tokenizer.decode([t]) for t in y.tokens]
        assert len(x.logprobs) == len(y.logprobs) and all(isinstance(v, float) for v in x.logprobs)


def test_llama_cpp_python_echo_logprobs_are_shifted_by_one(server, key):
    """What blocks the 1e-3 comparison: the server's log-prob of prompt token i is log p(token i | tokens 0..i)
    (row i of the model's log-softmax), not log p(token i | tokens 0..i-1) (row i-1)."""
    import requests
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    text = "The cat sat on the mat"
    r = requests.post(f"{server}/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                      json={"model": "tiny-gpt2", "prompt": text, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0})
    got = r.json()["choices"][0]["logprobs"]["token_logprobs"][1:len(text)]
    tok = AutoTokenizer.from_pretrained(tiny_gpt2_path())
    ids = tok.encode(text)
    with torch.no_grad():
        rows = torch.log_softmax(AutoModelForCausalLM.from_pretrained(tiny_gpt2_path())(torch.tensor([ids])).logits[0], -1)
    got = got[: len(ids) - 1]
    shifted = [rows[i, ids[i]].item() for i in range(1, len(ids))]  # what the server reports
    aligned = [rows[i - 1, ids[i]].item() for i in range(1, len(ids))]  # what echo log-probs should be
    assert max(abs(a - b) for a, b in zip(got, shifted)) < 5e-3  # ggml's fp16 GELU: ~1e-3
    assert max(abs(a - b) for a, b in zip(got, aligned)) > 0.5


def test_a_continuation_that_does_not_start_a_token_is_refused(server, key):
    api = unchecked(served(server))
    # " Yes" is one token: a continuation "s" after the context "Answer: Ye" starts inside it
    with pytest.raises(TokenisationMismatch, match=r"token ' Yes' spanning the end of the context"):
        api.loglikelihood([Request("Answer: Ye", "s")])


def test_a_wrong_key_is_refused_at_once_and_a_dead_server_after_the_retries(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "wrong")
    with pytest.raises(ServerError, match=r"refused the request \(HTTP 401"):
        OpenAICompletionsPredictor.from_settings(served(server), {}).loglikelihood([Request("a", " b")])
    monkeypatch.setenv(KEY_ENV, KEY)
    dead = OpenAICompletionsPredictor.from_settings(served(f"http://127.0.0.1:{free_port()}/v1", max_retries=2), {})
    t0 = time.monotonic()
    with pytest.raises(ServerError, match=r"no answer after 3 tries \(ConnectionError"):
        dead.loglikelihood([Request("a", " b")])
    assert time.monotonic() - t0 > 1.0  # backed off between the tries (0.5 s, then 1 s)


@pytest.mark.slow
def test_a_served_model_job_through_the_cli_is_refused_and_keeps_the_key_out_of_every_file(server, key, workdir, tmp_path):
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "served_tiny.yaml").write_text(
        f"name: served_tiny\npredictor: openai_completions\nweights: tiny-gpt2\nmax_parallel: 2\n"
        f"server: {{base_url: '{server}', api_key_env: {KEY_ENV}}}\nresources: {{gpus_per_node: 4}}\n")
    out = run_cli(["-m", "--config-dir", str(conf), "model=served_tiny", "task=copa_demo", "nshot=0", "n_eval_samples=4"], workdir,
                  check=False).stdout
    assert "failed 1" in out and "fails fewshot-eval's start-up check" in out, out
    files = [p for p in (workdir / "results").rglob("*") if p.is_file()]
    assert files and not any(p.name == "results.json" for p in files)
    assert not [p for p in files if KEY in p.read_text(errors="replace")]


def test_a_served_model_job_asks_slurm_for_no_gpu(key, tmp_path):
    from fewshot_eval.api import plan
    from fewshot_eval.plan.unit import unit_resources

    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    (conf / "model" / "served.yaml").write_text(f"name: served\npredictor: openai_completions\nweights: m\n"
                                                f"server: {{base_url: 'http://x:1/v1', api_key_env: {KEY_ENV}}}\n"
                                                f"resources: {{gpus_per_node: 4}}\n")
    (conf / "model" / "local.yaml").write_text("name: local\nweights: tiny-gpt2\nresources: {gpus_per_node: 4}\n")
    _, jobs = plan(["model=served,local", "task=copa_demo", f"output_dir={tmp_path / 'r'}"], [conf])
    assert [j.status for j in jobs] == ["run", "run"]
    assert [unit_resources(j.unit)["gpus_per_node"] for j in jobs] == [0, 4]
    from fewshot_eval.plan.table import format_plan

    rows = format_plan(jobs, tmp_path / "r").splitlines()[1:]  # the dry run's table shows what the job asks for
    assert [" 1n x 0g " in rows[0], " 1n x 4g " in rows[1]] == [True, True], rows


@pytest.mark.parametrize("server_opts, match", [
    ({"base_url": None}, r"needs server.base_url"),
    ({"api_key_env": "sk-live-123"}, r"NAME of an environment variable holding the key"),
    ({"api_key_env": "FEWSHOT_TEST_UNSET_VAR"}, r"FEWSHOT_TEST_UNSET_VAR, which is not set here"),
])
def test_bad_server_settings_are_planning_errors(server_opts, match, monkeypatch):
    monkeypatch.delenv("FEWSHOT_TEST_UNSET_VAR", raising=False)
    model = served("http://localhost:1/v1")
    model["server"].update(server_opts)
    with pytest.raises(ConfigError, match=match):
        OpenAICompletionsPredictor.check_settings(model, {})
