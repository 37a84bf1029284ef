"""What would make a job die at its start, checked at planning instead (no model is loaded).

The planner calls these once per distinct (task setting, params) and per distinct model
setting -- not per job -- and marks the affected rows ``error: <reason>``:

* task data: every split a job reads exists and parses (errors name file and line), gold labels
  are in the label set, every template field is in the data; templates, languages, splits,
  scoring mode, calibrator and calibration options are valid; ``seed`` is an int;
  ``balanced`` divides nshot and each class has enough rows;
* model: the predictor is registered; a local ``weights`` path exists; ``dtype`` and ``device``
  are valid values.

Sources through HuggingFace ``datasets`` are not read at planning (that would download).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from fewshot_eval.config import ConfigError

DTYPES = ("float32", "float16", "bfloat16")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's sharding strategies
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
WEIGHTS_DIR_ENV = "FEWSHOT_WEIGHTS_DIR"


def check_tasks(task_names: Sequence[str], params: dict[str, Any], search: Sequence[Path]) -> None:
    """Validate what the tasks of one task setting read under ``params``; raises ConfigError."""
    from fewshot_eval.evaluate.calibration import check_calibrator, parse_option, task_options
    from fewshot_eval.evaluate.scoring import check_mode
    from fewshot_eval.evaluate.tasks import LocalSource, load_task_def, select_languages, select_templates, split_data

    check_mode(params.get("scoring"))
    calibrator = check_calibrator(params.get("calibrator"))
    seed = params.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError(f"seed must be an integer, got {seed!r}.")
    for name in task_names:
        td = load_task_def(name, search)
        select_templates(td, params)
        langs, train_lang = select_languages(td, params)
        if calibrator:
            for option in task_options(params, name):
                parse_option(option, name)
        if isinstance(td.source, LocalSource):
            for lang in langs:
                split_data(td, params, lang, train_lang)


def demo_pool_size(task_names: Sequence[str], params: dict[str, Any], search: Sequence[Path]) -> Optional[int]:
    """The largest demonstration pool over the tasks and languages (None: a task reads ``datasets``)."""
    from fewshot_eval.evaluate.tasks import LocalSource, load_task_def, select_languages, split_data

    sizes = []
    for name in task_names:
        td = load_task_def(name, search)
        if not isinstance(td.source, LocalSource):
            return None
        langs, train_lang = select_languages(td, params)
        sizes += [len(split_data(td, params, lang, train_lang)[1]) for lang in langs]
    return max(sizes) if sizes else None


def check_balanced(task_names: Sequence[str], params: dict[str, Any], nshot: int, search: Sequence[Path]) -> None:
    """``balanced=true``: nshot divides by the classes and every class has enough demonstration rows."""
    if not params.get("balanced") or nshot <= 0:
        return
    from fewshot_eval.evaluate.tasks import LocalSource, load_task_def, select_languages, split_data

    for name in task_names:
        td = load_task_def(name, search)
        n = len(td.labels)
        if nshot % n:
            raise ConfigError(
                f"balanced=true for task '{name}': nshot={nshot} is not divisible by its {n} classes {td.labels}. "
                f"Use a multiple of {n} or balanced=false."
            )
        if isinstance(td.source, LocalSource):
            langs, train_lang = select_languages(td, params)
            for lang in langs:
                pool = split_data(td, params, lang, train_lang)[1]
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
    predictor_class(predictor, config_dirs()).check_settings(model, params)  # registered? (else the error lists the names)
    dtype = params.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"dtype: unknown dtype '{dtype}'. Valid: {', '.join(DTYPES)}.")
    device = params.get("device")
    if device is not None and not (isinstance(device, str) and _DEVICE.fullmatch(device)):
        raise ConfigError(f"device: unknown device {device!r}. Valid: auto, cpu, cuda, cuda:<index>.")
    if predictor not in ("clm", "vllm"):
        return
    weights = model.get("weights")
    if not weights or weights == "tiny-gpt2" or not is_local_weights(str(weights)):
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
