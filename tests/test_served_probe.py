"""The start-up check of ``openai_completions`` against real HTTP servers that serve the tiny GPT-2's own
log-probs (tests/echo_server.py): echoed right, shifted by one position (as llama-cpp-python's server),
or read back as other tokens. The first is scored like clm; the others are refused with one line naming
the server, before a single score is taken."""

from __future__ import annotations

import pytest

from cli_helpers import run_cli
from echo_server import running
from fewshot_eval.evaluate.backends import openai_completions as oc
from fewshot_eval.evaluate.backends.openai_completions import OpenAICompletionsPredictor, ServerCheckFailed
from fewshot_eval.evaluate.backends.predictor import Request
from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

REQS = [Request("Question: is the sky blue? Answer: Yes\n\nQuestion: is fire cold? Answer:", c) for c in (" No", " Yes", " Maybe not")]
REQS += [Request("The cat sat on", " the mat"), Request("Answer: ", "True")]


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oc, "_checked", {})  # each test's servers are checked anew


def test_a_server_that_echoes_right_passes_and_scores_like_clm() -> None:
    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    clm = CausalLMPredictor.from_settings({"name": "t", "weights": "tiny-gpt2"}, {"device": "cpu"})
    with running(str(tiny_gpt2_path()), "aligned") as (url, server):
        api = OpenAICompletionsPredictor(url, "tiny-gpt2")
        got = api.loglikelihood(REQS)
        probed = server.requests - len(REQS)
        assert 2 <= probed <= 2 * (1 + oc.PROBE_TOP)  # per known text: its generation, then one echo or a few
        OpenAICompletionsPredictor(url, "tiny-gpt2").loglikelihood(REQS[:1])
        assert server.requests == probed + len(REQS) + 1  # checked once per server and model in a process
    for x, y in zip(got, clm.loglikelihood(REQS)):
        assert x.tokens == [clm.tokenizer.decode([t]) for t in y.tokens]
        assert max(abs(p - q) for p, q in zip(x.logprobs, y.logprobs)) < 1e-5


@pytest.mark.parametrize("mode, says", [
    ("shifted", "are its next-token log-probs one position later (echoed log-probs shifted by one)"),
    ("split", "its echo and its generation tokenise differently"),
])
def test_a_server_that_would_give_wrong_scores_is_refused_with_one_line(mode: str, says: str) -> None:
    with running(str(tiny_gpt2_path()), mode) as (url, server):
        api = OpenAICompletionsPredictor(url, "tiny-gpt2")
        with pytest.raises(ServerCheckFailed) as e:
            api.loglikelihood(REQS)
        asked = server.requests
        with pytest.raises(ServerCheckFailed):  # refused again without asking again
            OpenAICompletionsPredictor(url, "tiny-gpt2").loglikelihood(REQS)
        assert server.requests == asked <= 1 + oc.PROBE_TOP
    msg = str(e.value)
    assert "\n" not in msg and f"the server at {url} (model 'tiny-gpt2') fails" in msg and says in msg, msg
    assert "use the clm or vllm predictor" in msg


def test_a_sweep_against_a_shifted_server_fails_its_job_with_the_servers_name(workdir, tmp_path) -> None:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    with running(str(tiny_gpt2_path()), "shifted") as (url, server):
        (conf / "model" / "served.yaml").write_text(f"name: served\npredictor: openai_completions\nweights: tiny-gpt2\n"
                                                    f"server: {{base_url: '{url}'}}\n")
        proc = run_cli(["-m", "--config-dir", str(conf), "model=served", "task=copa_demo", "nshot=0", "n_eval_samples=2"],
                       workdir, check=False)
    assert proc.returncode != 0 and "failed 1" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"the server at {url} (model 'tiny-gpt2') fails fewshot-eval's start-up check" in proc.stdout + proc.stderr
    assert not list((workdir / "results").rglob("trial0/metrics.json"))
