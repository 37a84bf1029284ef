"""Chat models: prompts wrapped with the tokenizer's chat template (model setting ``chat``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli_helpers import trial_docs
from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.model_checks import check_model
from fewshot_eval.evaluate.evaluator import FewShotEvaluator
from fewshot_eval.plan.identity import job_identity
from fewshot_eval.settings import model_setting

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
PARAMS = {"seed": 0, "scoring": "sum", "predictor": "clm", "device": "cpu", "dtype": "float32", "batch_size": 8,
          "max_length": None, "train_sep": "\n\n", "n_eval_samples": 3}


@pytest.fixture(scope="module")
def chat_weights(tmp_path_factory) -> Path:
    """The tiny GPT-2 with a chat template added to its tokenizer."""
    from transformers import AutoTokenizer

    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    d = tmp_path_factory.mktemp("chat") / "tiny-chat"
    shutil.copytree(tiny_gpt2_path(), d)
    tok = AutoTokenizer.from_pretrained(d)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(d)
    return d


def _setting(weights: Path | str, chat) -> dict:
    node = {"name": "chatty", "predictor": "clm", "weights": str(weights)}
    if chat is not None:
        node["chat"] = {"enabled": True, **chat}
    return model_setting(node, "chatty")


def _expected(system: str | None, demos: list[tuple[str, str]], prompt: str, multiturn: bool) -> str:
    turns = [("system", system)] if system else []
    if multiturn:
        for user, answer in demos:
            turns += [("user", user.rstrip()), ("assistant", answer.strip())]
        turns.append(("user", prompt.rstrip()))
    else:
        turns.append(("user", "\n\n".join([u + a for u, a in demos] + [prompt]).rstrip()))
    return "".join(f"<|{role}|>\n{text}<|end|>\n" for role, text in turns) + "<|assistant|>"  # its "\n" goes to the continuation


@pytest.mark.parametrize("multiturn", [True, False])
def test_prompts_are_the_chat_template_of_the_demonstrations_and_the_test_prompt(chat_weights: Path, multiturn: bool) -> None:
    model = _setting(chat_weights, {"system_prompt": "Be brief.", "fewshot_as_multiturn": multiturn})
    result = FewShotEvaluator(model, PARAMS).run_trial(["copa_demo"], PARAMS, 2, 0)
    task, tmpl, eval_docs, demo_docs = trial_docs(result, "copa_demo", PARAMS)
    demos = [(tmpl.split(d)[0], tmpl.verbalise(d, d["_label"]) + tmpl.split(d)[1]) for d in demo_docs]
    for doc, row in zip(eval_docs, result.predictions["copa_demo.default"]):
        assert row["prompt"] == _expected("Be brief.", demos, tmpl.split(doc)[0], multiturn)
        assert [c["text"] for c in row["candidates"]] == ["\n" + tmpl.verbalise(doc, lab) + tmpl.split(doc)[1] for lab in task.labels]
        assert all(c["n_tokens"] > 0 for c in row["candidates"])


def test_chat_is_part_of_the_identity_only_when_set() -> None:
    plain = job_identity(_setting("tiny-gpt2", None), ["copa_demo"], PARAMS, 2)
    assert "chat" not in plain["model"]
    chat = job_identity(_setting("tiny-gpt2", {}), ["copa_demo"], PARAMS, 2)
    assert chat["model"]["chat"] == {"enabled": True, "system_prompt": None, "fewshot_as_multiturn": True} and chat != plain
    with pytest.raises(ConfigError, match=r"model/chatty.yaml: unknown key 'chat.system'. Valid keys: chat.enabled, chat.system_prompt"):
        _setting("tiny-gpt2", {"system": "x"})
    with pytest.raises(ConfigError, match=r"chat.system_prompt is set but chat.enabled is false"):
        model_setting({"name": "x", "predictor": "clm", "weights": "tiny-gpt2", "chat": {"system_prompt": "x"}}, "x")


def test_a_tokenizer_without_chat_template_is_a_planning_error(chat_weights: Path) -> None:
    params = {"predictor": "clm", "dtype": "float32", "device": "cpu"}
    with pytest.raises(ConfigError, match=r"model 'chatty': chat.enabled is true but the tokenizer of 'tiny-gpt2' has no chat template"):
        check_model("chatty", _setting("tiny-gpt2", {}), params)
    check_model("chatty", _setting(chat_weights, {}), params)  # has one
    check_model("chatty", _setting("tiny-gpt2", None), params)  # not asked for
    with pytest.raises(ConfigError, match=r"predictor 'random' has no tokenizer"):
        check_model("chatty", {**_setting("tiny-gpt2", {}), "predictor": "random"}, {**params, "predictor": "random"})
