"""What would make a job die at its start, checked at planning instead (no model is loaded).

The planner calls these once per distinct (task setting, params) and per distinct model
setting -- not per job -- and marks the affected rows ``error: <reason>``:

* task data: every split a job reads exists and parses (errors name file and line), gold labels
  are in the label set, the selected templates' fields are in the evaluated split and (nshot != 0)
  in the demonstration split; templates, languages, splits, scoring mode, calibrator, calibration
  options and ``demo_sampling`` are valid; ``seed`` is an int; ``balanced`` divides nshot and each
  class has enough rows;
* task shapes: a perplexity task's predictor supports ``loglikelihood_rolling``; no majority
  baseline or calibration on minimal pairs; no ``balanced`` without a fixed label set; a
  generation task's settings (``until``, ``max_new_tokens``, sampling) are valid and its
  predictor can generate (not a baseline);
* model: the predictor is registered; a local ``weights`` path exists; ``dtype`` and ``device``
  are valid values; with ``chat`` set, the tokenizer has a chat template.

Sources through HuggingFace ``datasets`` are not read at planning (that would download).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from fewshot_eval.config import ConfigError

DTYPES = ("float32", "float16", "bfloat16")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
WEIGHTS_DIR_ENV = "FEWSHOT_WEIGHTS_DIR"


def check_tasks(task_names: Sequence[str], params: dict[str, Any], search: Sequence[Path]) -> None:
    """Validate what the tasks of one task setting read under ``params``; raises ConfigError."""
    from fewshot_eval.evaluate.calibration import check_calibrator, parse_option, task_options
    from fewshot_eval.evaluate.demonstrations import check_demo_sampling
    from fewshot_eval.evaluate.scoring import check_mode
    from fewshot_eval.evaluate.tasks import LocalSource, load_task_def, select_languages, select_templates, split_data

    check_mode(params.get("scoring"))
    check_demo_sampling(params.get("demo_sampling"), balanced=bool(params.get("balanced")))
    calibrator = check_calibrator(params.get("calibrator"))
    seed = params.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"seed must be an integer, got {seed!r}.")
    for name in task_names:
        td = load_task_def(name, search)
        if td.kind == "generate":
            _check_generation(td, params)
        select_templates(td, params)
        langs, train_lang = select_languages(td, params)
        if td.kind == "perplexity":
            check_operation(params.get("predictor"), "loglikelihood_rolling", f"task '{name}' is a perplexity task")
        if td.kind == "minimal_pairs" and calibrator:
            raise ConfigError(f"calibrator={calibrator}: task '{name}' is a minimal-pairs task (whole sentences, no shared prompt "
                              "to make content-free); use calibrator=null.")
        if td.kind == "minimal_pairs" and params.get("predictor") == "majority":
            raise ConfigError(f"predictor 'majority': task '{name}' is a minimal-pairs task, whose gold is always the 'good' sentence, "
                              "so a majority class would score 100%. Use predictor 'random' as the chance baseline.")
        if calibrator and td.kind not in ("perplexity", "generate"):  # generation: the calibrator is ignored (a warning)
            for option in task_options(params, name):
                pairs = parse_option(option, name)
                if td.choices_field and any(k == td.choices_field for k, _ in pairs):
                    raise ConfigError(f"calibration_options.{name}: option '{option}' blanks '{td.choices_field}', the field holding "
                                      "the candidates; blank the context fields instead.")
        if isinstance(td.source, LocalSource):
            for lang in langs:
                split_data(td, params, lang, train_lang, demonstrations=False)


def check_operation(predictor: Optional[str], operation: str, why: str) -> None:
    """The predictor supports ``operation`` (a registry operation), else a ConfigError saying which do."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_class, predictor_names

    if not predictor:
        return
    cls = predictor_class(predictor, config_dirs())
    if operation not in cls.operations:
        able = [n for n in predictor_names() if operation in predictor_class(n).operations]
        raise ConfigError(f"predictor '{predictor}': {why} and needs '{operation}', which it does not support "
                          f"(it supports {', '.join(sorted(cls.operations))}). Predictors that do: {', '.join(able) or 'none'}.")


def _check_generation(td: Any, params: dict[str, Any]) -> None:
    """Generation settings are valid and the job's predictor implements ``generate_until``."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.generation import check_predictor_generates, generation_settings
    from fewshot_eval.evaluate.registry import predictor_class

    generation_settings(td, params)
    predictor = params.get("predictor")
    if predictor:
        try:
            cls = predictor_class(predictor, config_dirs())
        except ConfigError:
            return  # an unknown predictor is the model check's error
        check_predictor_generates(td, predictor, cls)


def demo_pool_size(task_names: Sequence[str], params: dict[str, Any], search: Sequence[Path]) -> Optional[int]:
    """The largest demonstration pool over the tasks and languages (None: a task reads ``datasets``)."""
    from fewshot_eval.evaluate.tasks import LocalSource, load_task_def, select_languages, split_data

    sizes = []
    for name in task_names:
        td = load_task_def(name, search)
        if not isinstance(td.source, LocalSource):
            return None
        langs, train_lang = select_languages(td, params)
        sizes += [len(split_data(td, params, lang, train_lang, demonstrations=False)[1]) for lang in langs]
    return max(sizes) if sizes else None


def check_nshot(task_names: Sequence[str], params: dict[str, Any], nshot: int, search: Sequence[Path]) -> None:
    """What depends on nshot: with demonstrations, the templates' fields are in the demonstration
    split; ``balanced`` (see :func:`check_balanced`)."""
    from fewshot_eval.evaluate.tasks import LocalSource, load_task_def, select_languages, split_data

    if nshot != 0:
        for name in task_names:
            td = load_task_def(name, search)
            if isinstance(td.source, LocalSource):
                langs, train_lang = select_languages(td, params)
                for lang in langs:
                    split_data(td, params, lang, train_lang, demonstrations=True)
    check_balanced(task_names, params, nshot, search)


def check_balanced(task_names: Sequence[str], params: dict[str, Any], nshot: int, search: Sequence[Path]) -> None:
    """``balanced=true``: nshot divides by the classes and every class has enough demonstration rows."""
    if not params.get("balanced") or nshot <= 0:
        return
    from fewshot_eval.evaluate.tasks import LocalSource, load_task_def, select_languages, split_data

    for name in task_names:
        td = load_task_def(name, search)
        n = len(td.labels)
        if not n:
            raise ConfigError(f"balanced=true for task '{name}': it has no fixed label set ({td.kind} task"
                              f"{', candidates per example' if td.choices_field else ''}); use balanced=false.")
        if nshot % n:
            raise ConfigError(
                f"balanced=true for task '{name}': nshot={nshot} is not divisible by its {n} classes {td.labels}. "
                f"Use a multiple of {n} or balanced=false."
            )
        if isinstance(td.source, LocalSource):
            langs, train_lang = select_languages(td, params)
            for lang in langs:
                pool = split_data(td, params, lang, train_lang, demonstrations=False)[1]
                for label in td.labels:
                    have = sum(1 for d in pool if d["_label"] == label)
                    if have < nshot // n:
                        raise ConfigError(
                            f"balanced=true for task '{name}': class '{label}' has {have} demonstration rows, "
                            f"{nshot // n} needed for nshot={nshot}."
                        )


def check_model(model_key: str, model: dict[str, Any], params: dict[str, Any]) -> None:
    """A language model's weights path, dtype and device; raises ConfigError."""
    from fewshot_eval.settings import is_local_weights

    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_class

    predictor = params.get("predictor") or model.get("predictor")
    predictor_class(predictor, config_dirs())  # registered? (else the error lists the names)
    dtype = params.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"dtype: unknown dtype '{dtype}'. Valid: {', '.join(DTYPES)}.")
    device = params.get("device")
    if device is not None and not (isinstance(device, str) and _DEVICE.fullmatch(device)):
        raise ConfigError(f"device: unknown device {device!r}. Valid: auto, cpu, cuda, cuda:<index>.")
    if model.get("chat") is not None and not predictor_class(predictor, config_dirs()).is_lm:
        from fewshot_eval.evaluate.chat import check_chat_template

        check_chat_template(None, model_key, predictor)
    if predictor != "clm":
        return
    weights = model.get("weights")
    if not weights or weights == "tiny-gpt2" or not is_local_weights(str(weights)):
        check_chat_tokenizer(model_key, model)
        return
    path = Path(str(weights)).expanduser()
    if not path.is_dir():
        hint = (f" ({WEIGHTS_DIR_ENV}={os.environ[WEIGHTS_DIR_ENV]})" if os.environ.get(WEIGHTS_DIR_ENV)
                else f" ({WEIGHTS_DIR_ENV} is not set)")
        raise ConfigError(
            f"model '{model_key}': weights {path} does not exist{hint}. Set the setting's 'weights' key "
            f"(model.weights=<dir or hub id>) or export {WEIGHTS_DIR_ENV}=<dir holding your checkpoints>."
        )
    if not (path / "config.json").is_file():
        raise ConfigError(f"model '{model_key}': weights dir {path} has no config.json: not a HuggingFace checkpoint dir.")
    check_chat_tokenizer(model_key, model)


def check_chat_tokenizer(model_key: str, model: dict[str, Any]) -> None:
    """``chat`` set on a ``clm`` model: its tokenizer must have a chat template. The tokenizer is
    read from local files only (a hub id not in the local cache is checked by the job)."""
    if model.get("chat") is None:
        return
    from fewshot_eval.evaluate.chat import check_chat_template

    weights = str(model.get("weights"))
    if weights == "tiny-gpt2":
        from fewshot_eval.evaluate.tiny_model import tiny_gpt2_path

        weights = str(tiny_gpt2_path())
    try:
        from transformers import AutoTokenizer

        kwargs = {"revision": model["revision"]} if model.get("revision") else {}
        tok = AutoTokenizer.from_pretrained(weights, local_files_only=True, **kwargs)
    except Exception:  # noqa: BLE001 - not available here: the job's own check reports it
        return
    check_chat_template(tok, model_key, str(model.get("weights")))
