"""Generation tasks: clm's generate_until equals lm-evaluation-harness's, text metrics equal
sacrebleu's / SQuAD's, kind: generate task definitions run end to end and recalc without a model."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest

from cli_helpers import run_cli, trial_docs
from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.predictor import GenerationRequest

MAX_LENGTH = 96


@pytest.fixture(scope="module")
def tiny_path() -> str:
    from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

    return str(tiny_gpt2_path())


@pytest.fixture(scope="module")
def ours(tiny_path):
    import torch

    from fewshot_eval.evaluate.backends.clm import CausalLMPredictor

    torch.set_num_threads(1)  # 2 shared cores: threads only contend
    return CausalLMPredictor.from_settings({"name": "tiny", "weights": tiny_path}, {"device": "cpu", "batch_size": 4, "max_length": MAX_LENGTH})


@pytest.fixture(scope="module")
def theirs(tiny_path):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=tiny_path, device="cpu", batch_size=4, max_length=MAX_LENGTH, dtype="float32")


def lm_eval_generate(lm, requests: list[GenerationRequest]) -> list[str]:
    from lm_eval.api.instance import Instance

    return lm.generate_until([Instance("generate_until", None, (r.context, r.gen_kwargs()), i) for i, r in enumerate(requests)], disable_tqdm=True)


def prompts(n: int, seed: int) -> list[str]:
    """Fresh prompts of 1..70 words (some longer than max_length - max_gen_toks: left-truncated)."""
    rng = random.Random(seed)
    words = "the dog cat house ran went blue because so and Answer: Question: French: is of\n".split(" ")
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 70))) for _ in range(n)]


# ---------------------------------------------------------------- the predictor vs lm-eval


def test_greedy_outputs_equal_lm_eval_generate_until(ours, theirs):
    reqs = [GenerationRequest(p, ("\n\n",), 16) for p in prompts(10, 0)]
    reqs += [GenerationRequest(p, ("\n\n", "."), 12) for p in prompts(5, 1)]  # another kwargs group
    got = ours.generate_until(reqs)
    assert got == lm_eval_generate(theirs, reqs)
    assert all(isinstance(g, str) for g in got) and len(set(got)) > 5


def test_stop_strings_cut_like_lm_eval(ours, theirs):
    base = [GenerationRequest(p, (), 20) for p in prompts(6, 2)]
    free = ours.generate_until(base)  # only the end-of-text token stops these
    assert free == lm_eval_generate(theirs, base)
    stop = next(o[4:6] for o in free if len(o) >= 8 and o[4:6].strip())  # a string the model does generate
    stopped = [GenerationRequest(r.context, (stop,), 20) for r in base]
    got = ours.generate_until(stopped)
    assert got == [o.split(stop)[0] for o in free]  # cut before the first occurrence, nothing else changes
    assert any(len(g) < len(o) for g, o in zip(got, free))
    assert got == lm_eval_generate(theirs, stopped)


def test_sampling_is_seeded(ours):
    reqs = [GenerationRequest(p, ("\n\n",), 10, do_sample=True, temperature=0.8, seed=3) for p in prompts(4, 3)]
    a, b = ours.generate_until(reqs), ours.generate_until(reqs)
    other = ours.generate_until([GenerationRequest(r.context, r.until, 10, True, 0.8, 4) for r in reqs])
    assert a == b and a != other
    assert ours.generate_until([GenerationRequest(reqs[0].context, ("\n\n",), 10)]) == ours.generate_until([GenerationRequest(reqs[0].context, ("\n\n",), 10)])


def test_max_new_tokens_must_leave_room_for_the_prompt(ours):
    with pytest.raises(ConfigError, match="max_new_tokens=96 leaves no room"):
        ours.generate_until([GenerationRequest("Hello", (), MAX_LENGTH)])


# ---------------------------------------------------------------- metrics


def test_squad_normalisation_exact_match_and_f1():
    from fewshot_eval.evaluate.metrics.text_metrics import normalize_answer, token_f1
    from fewshot_eval.evaluate.registry import metric

    assert normalize_answer("  The Eiffel-Tower!  ") == "eiffeltower"
    assert normalize_answer("a cat, an owl and THE dog") == "cat owl and dog"
    em, strict, f1 = metric("exact_match").fn, metric("exact_match_strict").fn, metric("f1").fn
    refs = [["The Eiffel Tower", "Eiffel"], ["nine", "9"], ["in the shed"]]
    outs = [" eiffel tower.", "9", "shed"]
    assert em(refs, outs) == pytest.approx(100 * 2 / 3)  # "shed" != "in shed"
    assert strict(refs, outs) == pytest.approx(100 / 3)  # only "9" is character-exact (after strip)
    # token F1: "the big red cat" vs "a red cat sat" -> [big red cat] vs [red cat sat]: P = R = 2/3
    assert token_f1("the big red cat", "a red cat sat") == pytest.approx(2 / 3)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("dog", "cat") == 0.0
    # per example the best reference: 1.0, 1.0 ("9"), and "shed" vs "in shed": P=1, R=1/2 -> 2/3
    assert f1(refs, outs) == pytest.approx(100 * (1 + 1 + 2 / 3) / 3)
    assert metric("f1").kind == "generate" and metric("accuracy").kind == "choice"


def test_bleu_and_chrf_are_sacrebleu_corpus_scores():
    import sacrebleu

    from fewshot_eval.evaluate.metrics.compute import compute_metrics

    outs = ["The cat sat on a mat.", " Ka huno amet doma.", "hello there world"]
    refs = [["The cat sat on the mat.", "A cat sat on the mat."], ["Ka huno amet mo doma."], ["hello world"]]
    got = compute_metrics(refs, outs, None, ["bleu", "chrf"])
    streams = [["The cat sat on the mat.", "Ka huno amet mo doma.", "hello world"], ["A cat sat on the mat.", None, None]]
    hyps = [o.strip() for o in outs]
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, streams).score, abs=1e-12)
    assert got["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, streams).score, abs=1e-12)
    assert got["bleu_signature"].startswith("nrefs:var|") and f"version:{sacrebleu.__version__}" in got["bleu_signature"]
    assert "nc:6" in got["chrf_signature"] and got["n_examples"] == 3
    single = compute_metrics([["the cat sat on the mat"]], ["the cat sat on the mat"], None, ["bleu"])
    assert single["bleu"] == pytest.approx(100.0) and single["bleu_signature"].startswith("nrefs:1|")


# ---------------------------------------------------------------- task definitions


def _task(tmp_path: Path, text: str):
    from fewshot_eval.evaluate.tasks.definitions import load_task_def

    (tmp_path / "task_def").mkdir(parents=True, exist_ok=True)
    data = tmp_path / "task_def" / "d.jsonl"
    data.write_text('{"q": "Where?", "a": ["here", "there"]}\n{"q": "Who?", "a": "me"}\n')
    (tmp_path / "task_def" / "t.yaml").write_text(text)
    td = load_task_def("t", [tmp_path])
    return td


GEN = ("kind: generate\ndata: {local: {train: d.jsonl, validation: d.jsonl}}\nreferences_field: a\n"
       "templates:\n  default:\n    prompt: \"Q: {{ q }}\\nA: {{ target }}\"\n")


def test_generation_task_definition_and_its_errors(tmp_path):
    from fewshot_eval.evaluate.tasks.task_data import load_split

    td = _task(tmp_path, GEN)
    assert td.kind == "generate" and td.metrics == ("exact_match", "f1") and td.labels == []
    docs = load_split(td, "validation")
    assert [d["_references"] for d in docs] == [["here", "there"], ["me"]]
    tmpl = td.templates["default"]
    assert tmpl.split(docs[0]) == ("Q: Where?\nA: ", "") and tmpl.fill(docs[0]) == "Q: Where?\nA: here"
    bad = {
        GEN.replace("kind: generate", "kind: rank"): "key 'kind': unknown kind 'rank'. Valid: choice, generate, perplexity, minimal_pairs",
        GEN.replace("references_field: a\n", ""): "missing required key 'references_field'",
        GEN + "labels: [0, 1]\n": "key 'labels': does not apply to a task of kind 'generate'",
        GEN + "metrics: [accuracy]\n": "metric 'accuracy' scores chosen labels, this task is kind: generate",
        GEN.replace("{{ target }}", "{{ candidate }}"): "must contain {{ target }}",
        GEN + "until: []\n": "key 'until': expected a non-empty string",
        GEN + "max_new_tokens: 0\n": "key 'max_new_tokens': expected a positive integer",
        GEN.replace("references_field: a", "references_field: b"): "field 'b' missing",
    }
    for i, (text, message) in enumerate(bad.items()):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("{", r"\{").replace("}", r"\}")):
            td = _task(tmp_path / str(i), text)
            load_split(td, "validation")
    nested = _task(tmp_path / "nested", GEN.replace("references_field: a", "references_field: t.de"))
    (tmp_path / "nested" / "task_def" / "d.jsonl").write_text('{"q": "Hi", "t": {"de": "Hallo", "en": "Hi"}}\n')
    assert load_split(nested, "validation")[0]["_references"] == ["Hallo"]  # a key of a nested record
    from fewshot_eval.evaluate.tasks.generation_task import generation_settings

    assert generation_settings(td, {"train_sep": "\n\n"})["until"] == ["\n\n"]  # default: train_sep
    assert generation_settings(td, {"until": "###", "max_new_tokens": 5}) == {"until": ["###"], "max_new_tokens": 5, "do_sample": False, "temperature": 1.0}
    with pytest.raises(ConfigError, match="temperature=0.5 has no effect with greedy decoding"):
        generation_settings(td, {"temperature": 0.5})


# ---------------------------------------------------------------- the evaluator, recalc, planning


def test_evaluator_generates_with_demonstrations_within_max_length(tiny_path, theirs):
    from fewshot_eval.evaluate import build_evaluator
    from fewshot_eval.evaluate.rescoring import recalc_metrics
    from fewshot_eval.evaluate.tasks.generation_task import generation_metrics

    model = {"name": "tiny_gpt2", "predictor": "clm", "weights": tiny_path}
    params = {"seed": 0, "predictor": "clm", "device": "cpu", "batch_size": 4, "max_length": 200, "train_sep": "\n\n", "n_eval_samples": 4}
    ev = build_evaluator(model, params)
    res = ev.run_trial(["qa_demo"], params, 3, 0)
    rows = res.predictions["qa_demo.default"]
    assert {"id", "prompt", "output", "references", "n_demos"} <= set(rows[0]) and len(rows) == 4
    for row in rows:
        assert row["prompt"].endswith("\nAnswer:")  # the space before the target is the model's to write
        assert row["prompt"].count("\n\n") == row["n_demos"] and 0 < row["n_demos"] < 3  # ~70 tokens each: not all 3 fit
        assert ev.predictor.num_tokens(row["prompt"]) <= 200 - 8  # max_new_tokens 8 (qa_demo.yaml)
        assert "\n" not in row["output"]  # until: ["\n"]
    assert res.metrics["qa_demo.default"] == generation_metrics(rows, ("exact_match", "f1"))
    assert res.info["preferred_metric"]["qa_demo.default"] == "f1"
    assert not any("not ranked" in w for w in res.info["warnings"])
    mean = ev.run_trial(["qa_demo"], {**params, "scoring": "mean"}, 0, 0)
    assert "qa_demo.default: generated text is not ranked: scoring=mean ignored." in mean.info["warnings"]
    # recalc from stored rows: outputs changed to a reference -> perfect scores, no model involved
    fixed = [{**r, "output": " " + r["references"][-1]} for r in rows]
    assert recalc_metrics(fixed, {"scoring": "mean"}, "qa_demo") == {"exact_match": 100.0, "f1": 100.0, "n_examples": 4}
    # lm-eval's generate_until on the stored prompts (same max_length, batch size) gives the stored outputs
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=tiny_path, device="cpu", batch_size=4, max_length=200, dtype="float32")
    assert lm_eval_generate(lm, [GenerationRequest(r["prompt"], ("\n",), 8) for r in rows]) == [r["output"] for r in rows]


def test_baselines_cannot_generate_planning_error(workdir):
    dry = run_cli(["-m", "model=random,majority,tiny_gpt2", "task=qa_demo,translate_demo", "nshot=0", "dry_run=true"], workdir, check=False)
    lines = [line for line in dry.stdout.splitlines() if line.startswith(("error", "run"))]
    assert sum(line.startswith("error") for line in lines) == 4 and sum(line.startswith("run") for line in lines) == 2
    assert "predictor 'majority' cannot generate (its operations: loglikelihood)" in dry.stdout
    bad = run_cli(["-m", "model=tiny_gpt2", "task=qa_demo", "nshot=0", "dry_run=true", "temperature=0.7"], workdir, check=False)
    assert "temperature=0.7 has no effect with greedy decoding" in bad.stdout + bad.stderr
    from fewshot_eval.evaluate import build_evaluator

    ev = build_evaluator({"name": "random", "predictor": "random"}, {"predictor": "random", "seed": 0})
    with pytest.raises(ConfigError, match="predictor 'random' cannot generate"):
        ev.run_trial(["qa_demo"], {"predictor": "random", "seed": 0, "n_eval_samples": 2}, 0, 0)


@pytest.mark.slow
def test_cli_run_and_recalc_without_the_model(workdir, monkeypatch):
    run_cli(["-m", "model=tiny_gpt2", "task=translate_demo,qa_demo", "nshot=0,2", "num_trials=2", "n_eval_samples=4"], workdir)
    results = sorted((workdir / "results").rglob("results.json"))
    assert len(results) == 4
    for f in results:
        res = json.loads(f.read_text())
        [(sub, metrics)] = res["results"].items()
        if sub == "translate_demo.default":
            assert {"bleu", "chrf", "exact_match_strict"} <= set(metrics) and metrics["preferred_metric"] == "bleu"
            assert metrics["bleu_signature"].startswith("nrefs:") and "tok:13a" in metrics["bleu_signature"]
        rows = [json.loads(line) for line in next(f.parent.glob("trial0/*.predictions.jsonl")).read_text().splitlines()]
        assert all(isinstance(r["output"], str) and r["references"] for r in rows)
    # recalc in-process with model loading made impossible: metrics come from the stored outputs
    import fewshot_eval.evaluate.backends.clm.causal_lm as clm
    from fewshot_eval.config import conf_dir
    from fewshot_eval.report.recalc import recalc_result

    def no_model(*a, **k):
        raise AssertionError("recalc loaded a model")

    monkeypatch.setattr(clm, "load_model", no_model)
    for f in results:
        new_dir, what = recalc_result(f.parent, {"scoring": "mean"}, [conf_dir()])
        assert what == "written"
        old, new = json.loads(f.read_text())["results"], json.loads((new_dir / "results.json").read_text())["results"]
        assert new == old  # scoring modes do not apply to generated text: same metrics, same signatures


# ---------------------------------------------------------------- with the resume cache, per-example demonstrations, chat


def test_generation_goes_through_the_resume_cache_with_per_example_demonstrations(tiny_path, tmp_path):
    """Generated outputs are stored per batch in the trial's score cache and reused by a rerun;
    demo_sampling=per_example gives every example its own demonstrations (rows: demo_ids)."""
    from fewshot_eval.evaluate import build_evaluator
    from fewshot_eval.evaluate.resume import from_json, to_json
    from fewshot_eval.evaluate.tasks.definitions import load_task_def
    from fewshot_eval.evaluate.tasks.selection import split_data

    req = GenerationRequest("Q: x\nA:", ("\n", "."), 8, True, 0.5, 3, "q1")
    assert from_json(json.loads(json.dumps(to_json(req)))) == req  # requests round-trip through the cache's JSON

    model = {"name": "tiny_gpt2", "predictor": "clm", "weights": tiny_path}
    params = {"seed": 0, "predictor": "clm", "device": "cpu", "batch_size": 2, "max_length": None, "train_sep": "\n\n",
              "n_eval_samples": 4, "demo_sampling": "per_example"}
    plain = build_evaluator(model, params).run_trial(["qa_demo"], params, 2, 0)
    cached_ev = build_evaluator(model, params, tmp_path, "fp")
    first = cached_ev.run_trial(["qa_demo"], params, 2, 0)
    assert first.info["score_cache"] == {"reused": 0, "scored": 4}
    again = cached_ev.run_trial(["qa_demo"], params, 2, 0)
    assert again.info["score_cache"] == {"reused": 4, "scored": 0}
    rows = plain.predictions["qa_demo.default"]
    assert first.predictions["qa_demo.default"] == again.predictions["qa_demo.default"] == rows
    assert first.metrics == plain.metrics
    task = load_task_def("qa_demo")
    tmpl = task.templates["default"]
    eval_docs, pool = split_data(task, params, None, None)
    by_id = {d["_id"]: d for d in pool}
    assert plain.info["demonstrations"]["qa_demo.default"]["ids"] is None
    assert len({tuple(r["demo_ids"]) for r in rows}) > 1  # not one shared set
    for doc, row in zip(eval_docs, rows):
        assert len(row["demo_ids"]) == row["n_demos"] == 2 and doc["_id"] not in row["demo_ids"]
        demos = [tmpl.fill(by_id[i]) for i in row["demo_ids"]]
        assert row["prompt"] == "\n\n".join(demos + [tmpl.split(doc)[0].rstrip()])


def test_chat_models_generate_the_assistant_turn(tiny_path, tmp_path):
    """With chat.enabled the demonstrations are user/assistant turns (the target as the answer)
    and the model continues after the generation prompt."""
    import shutil

    from transformers import AutoTokenizer

    from fewshot_eval.evaluate.evaluator import FewShotEvaluator
    from fewshot_eval.settings import model_setting

    weights = tmp_path / "tiny-chat"
    shutil.copytree(tiny_path, weights)
    tok = AutoTokenizer.from_pretrained(weights)
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    tok.save_pretrained(weights)
    model = model_setting({"name": "chatty", "predictor": "clm", "weights": str(weights), "chat": {"enabled": True, "system_prompt": "Be brief."}}, "chatty")
    params = {"seed": 0, "predictor": "clm", "device": "cpu", "batch_size": 4, "max_length": None, "train_sep": "\n\n", "n_eval_samples": 2}
    result = FewShotEvaluator(model, params).run_trial(["qa_demo"], params, 2, 0)
    _, tmpl, eval_docs, demo_docs = trial_docs(result, "qa_demo", params)
    turns = [("system", "Be brief.")]
    for d in demo_docs:
        turns += [("user", tmpl.split(d)[0].rstrip()), ("assistant", d["_references"][0])]
    for doc, row in zip(eval_docs, result.predictions["qa_demo.default"]):
        expected = "".join(f"<|{r}|>\n{t}<|end|>\n" for r, t in turns + [("user", tmpl.split(doc)[0].rstrip())]) + "<|assistant|>\n"
        assert row["prompt"] == expected and isinstance(row["output"], str) and row["n_demos"] == 2


def test_shared_demonstrations_decode_once_and_equal_lm_eval(ours, theirs, monkeypatch):
    """Prompts sharing their demonstrations (this project's regime): the common prefix runs once
    per batch, rows leave the batch when their output is final, greedy outputs stay lm-eval's."""
    rng = random.Random(5)
    demos = "".join(f"Question: {q[:16]}\nAnswer: {a[:8]}\n\n" for q, a in zip(prompts(2, 6), prompts(2, 7)))
    reqs = [GenerationRequest(demos + f"Question: {p[:12]}\nAnswer:", ("\n\n", "Question"), rng.choice([6, 10])) for p in prompts(11, 8)]
    want = lm_eval_generate(theirs, reqs)
    assert len(set(want)) > 3
    calls = []
    forward = ours.model.forward
    steps, copied = [0], [0]  # decoding steps; those that moved the key/value cache to new memory

    @functools.wraps(forward)
    def counted(*args, **kwargs):
        calls.append(tuple(kwargs["input_ids"].shape))
        cache = kwargs.get(ours._cache_arg)
        if cache is None or kwargs["input_ids"].shape[1] != 1:
            return forward(*args, **kwargs)
        where = [layer.keys.untyped_storage().data_ptr() for layer in cache.layers]
        out = forward(*args, **kwargs)
        steps[0] += 1
        copied[0] += where != [layer.keys.untyped_storage().data_ptr() for layer in cache.layers]  # a step concatenating copies
        return out

    assert ours._tree_ok()
    monkeypatch.setattr(ours.model, "generate", lambda *a, **k: pytest.fail("greedy batches decode without generate"))
    monkeypatch.setattr(ours.model, "forward", counted)
    assert ours.generate_until(reqs) == want
    shortest = min(len(ours.tok_encode(r.context)) for r in reqs)
    assert max(len(ours.tok_encode(r.context)) for r in reqs) <= MAX_LENGTH - 10  # no truncation: the demonstrations stay a common prefix
    prefix = [w for n, w in calls if n == 1 and w > shortest // 2]
    assert len(prefix) == 1 and all(w < shortest // 2 for n, w in calls[1:])  # the demonstrations ran once, alone, for all batches
    assert steps[0] > 10 and copied[0] == 0  # each step wrote its keys/values into room kept for them


# ---------------------------------------------------------------- lm-eval's exact match, on data generated here


def test_exact_match_lm_eval_is_lm_evals_generation_exact_match(tiny_path, tmp_path, monkeypatch):
    """On a fresh generation task defined both ways -- ours (``Answer: {{ target }}``) and a real lm-eval
    ConfigurableTask (``doc_to_target: " {{answer}}"``, ``target_delimiter: ""``) -- the prompts are identical
    (demo_sampling=per_example_lm_eval) and exact_match_lm_eval scores every output as lm-eval's
    process_results does; exact_match and exact_match_strict stay as they were (they strip)."""
    import yaml
    from lm_eval.api.task import ConfigurableTask

    from fewshot_eval import config
    from fewshot_eval.evaluate import build_evaluator
    from fewshot_eval.evaluate.tasks.generation_task import generation_metrics

    rng = random.Random(2212)
    words = ["amber", "birch", "cobalt", "dune", "ember", "fjord", "grove", "heron"]
    data = {}
    (tmp_path / "task_def" / "d").mkdir(parents=True)
    for split, n in (("train", 12), ("validation", 6)):
        rows = [{"question": f"what follows {rng.choice(words)} and {rng.choice(words)}", "answer": rng.choice(words)} for _ in range(n)]
        data[split] = tmp_path / "task_def" / "d" / f"{split}.jsonl"
        data[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task_def" / "fresh_qa.yaml").write_text(yaml.safe_dump({
        "kind": "generate", "data": {"local": {"train": "d/train.jsonl", "validation": "d/validation.jsonl"}},
        "references_field": "answer", "until": ["\n"], "max_new_tokens": 4,
        "templates": {"default": {"prompt": "Question: {{ question }}\nAnswer: {{ target }}"}}}))
    monkeypatch.setattr(config, "config_dirs", lambda: [tmp_path, config.conf_dir()])
    model = {"name": "tiny_gpt2", "predictor": "clm", "weights": tiny_path}
    params = {"seed": 5, "predictor": "clm", "device": "cpu", "batch_size": 4, "max_length": None, "train_sep": "\n\n",
              "demo_sampling": "per_example_lm_eval"}
    rows = build_evaluator(model, params).run_trial(["fresh_qa"], params, 2, 0).predictions["fresh_qa.default"]
    assert {r["target_delimiter"] for r in rows} == {" "}

    task = ConfigurableTask(config={
        "task": "fresh_qa_ref", "dataset_path": "json", "dataset_kwargs": {"data_files": {s: str(p) for s, p in data.items()}},
        "training_split": "train", "validation_split": "validation", "output_type": "generate_until",
        "doc_to_text": "Question: {{question}}\nAnswer:", "doc_to_target": " {{answer}}", "target_delimiter": "",
        "fewshot_delimiter": "\n\n", "num_fewshot": 2, "generation_kwargs": {"until": ["\n"]},
        "metric_list": [{"metric": "exact_match"}],
    })
    task.set_fewshot_seed(5)
    task.build_all_requests(rank=0, world_size=1)
    docs = list(task.eval_docs)
    assert [inst.args[0] for inst in sorted(task.instances, key=lambda i: i.doc_id)] == [r["prompt"] for r in rows]

    variants = lambda ref: [" " + ref, ref, " " + ref + " ", " " + ref.upper(), " " + ref + ".", "  " + ref]  # noqa: E731
    for v in range(6):
        outs = [variants(r["references"][0])[(v + j) % 6] for j, r in enumerate(rows)]
        theirs = [task.process_results(doc, [o])["exact_match"] for doc, o in zip(docs, outs)]
        scored = [{**r, "output": o} for r, o in zip(rows, outs)]
        got = generation_metrics(scored, ("exact_match", "exact_match_strict", "exact_match_lm_eval"))
        assert got["exact_match_lm_eval"] == pytest.approx(100.0 * sum(theirs) / len(theirs))
        assert got["exact_match_strict"] >= got["exact_match_lm_eval"] and got["exact_match"] >= got["exact_match_strict"]
        for row, score in zip(scored, theirs):
            assert generation_metrics([row], ("exact_match_lm_eval",))["exact_match_lm_eval"] == 100.0 * score
    old = [{k: v for k, v in r.items() if k != "target_delimiter"} for r in rows]  # rows of an older run: not computable
    assert "exact_match_lm_eval" not in generation_metrics(old, ("exact_match", "exact_match_lm_eval"))
