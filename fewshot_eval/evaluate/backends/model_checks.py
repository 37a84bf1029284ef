"""Planning checks of a model setting: what would make a predictor die at its start (no model is loaded).

* the predictor is registered and its own ``check_settings`` passes;
* a local ``weights`` path is a HuggingFace checkpoint dir; ``dtype`` and ``device`` are valid values;
* with ``chat`` set, the tokenizer has a chat template; ``hf_overrides`` keys are fields of the model's config;
* a hub model not in the local cache gets a note on its plan row (planning never downloads).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from fewshot_eval.config import ConfigError, env_flag

DTYPES = ("float32", "float16", "bfloat16")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's sharding strategies
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
WEIGHTS_DIR_ENV = "FEWSHOT_WEIGHTS_DIR"


def check_model(model_key: str, model: dict[str, Any], params: dict[str, Any]) -> None:
    """A language model's weights path, dtype and device; raises ConfigError."""
    from fewshot_eval.settings import is_local_weights

    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_class

    predictor = params.get("predictor") or model.get("predictor")
    cls = predictor_class(predictor, config_dirs())  # registered? (else the error lists the names)
    cls.check_settings(model, params)
    dtype = params.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"dtype: unknown dtype '{dtype}'. Valid: {', '.join(DTYPES)}.")
    device = params.get("device")
    if device is not None and not (isinstance(device, str) and _DEVICE.fullmatch(device)):
        raise ConfigError(f"device: unknown device {device!r}. Valid: auto, cpu, cuda, cuda:<index>.")
    if model.get("chat") is not None and not cls.is_lm:
        from fewshot_eval.evaluate.tasks.chat import check_chat_template

        check_chat_template(None, model_key, predictor)
    if model.get("hf_overrides") and predictor not in ("clm", "vllm"):
        raise ConfigError(f"model '{model_key}': hf_overrides applies to predictors clm and vllm (they load a HuggingFace "
                          f"config), not '{predictor}'. Remove hf_overrides from the setting.")
    if predictor not in ("clm", "vllm"):
        return
    weights = model.get("weights")
    if weights and weights != "tiny-gpt2" and is_local_weights(str(weights)):
        _check_weights_dir(model_key, Path(str(weights)).expanduser())
    check_chat_tokenizer(model_key, model)
    check_hf_overrides(model_key, model)


def _check_weights_dir(model_key: str, path: Path) -> None:
    """A local ``weights`` path is a HuggingFace checkpoint dir."""
    if not path.is_dir():
        hint = (f" ({WEIGHTS_DIR_ENV}={os.environ[WEIGHTS_DIR_ENV]})" if os.environ.get(WEIGHTS_DIR_ENV)
                else f" ({WEIGHTS_DIR_ENV} is not set)")
        raise ConfigError(
            f"model '{model_key}': weights {path} does not exist{hint}. Set the setting's 'weights' key "
            f"(model.weights=<dir or hub id>) or export {WEIGHTS_DIR_ENV}=<dir holding your checkpoints>."
        )
    if not (path / "config.json").is_file():
        raise ConfigError(f"model '{model_key}': weights dir {path} has no config.json: not a HuggingFace checkpoint dir.")


def _local(model: dict[str, Any], loader: str) -> Any:
    """The setting's config or tokenizer (``loader``: ``AutoConfig`` | ``AutoTokenizer``) from local
    files only, or None when it is not available here (a hub id not in the local cache: the job
    loads it and reports what is wrong)."""
    weights = str(model.get("weights"))
    if weights == "tiny-gpt2":
        from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

        weights = str(tiny_gpt2_path())
    try:
        import transformers

        kwargs = {"revision": model["revision"]} if model.get("revision") else {}
        return getattr(transformers, loader).from_pretrained(weights, local_files_only=True, **kwargs)
    except Exception:  # noqa: BLE001 - not available here
        return None


def check_hf_overrides(model_key: str, model: dict[str, Any]) -> None:
    """Each ``hf_overrides`` key must be a field of the model's config (else transformers passes it
    on to the model's constructor, which dies at load)."""
    overrides = model.get("hf_overrides") or {}
    cfg = _local(model, "AutoConfig") if overrides else None
    if cfg is None:
        return
    unknown = [k for k in overrides if not hasattr(cfg, k)]
    if unknown:
        fields = sorted(k for k in cfg.to_dict() if not k.startswith("_"))
        raise ConfigError(f"model '{model_key}': hf_overrides key '{unknown[0]}' is not a field of its {type(cfg).__name__} "
                          f"({model.get('weights')}). Its fields: {', '.join(fields)}.")


def check_chat_tokenizer(model_key: str, model: dict[str, Any]) -> None:
    """``chat`` set on a ``clm`` model: its tokenizer must have a chat template."""
    if model.get("chat") is None:
        return
    from fewshot_eval.evaluate.tasks.chat import check_chat_template

    tok = _local(model, "AutoTokenizer")
    if tok is not None:
        check_chat_template(tok, model_key, str(model.get("weights")))


def weights_note(model: dict[str, Any], params: dict[str, Any]) -> Optional[str]:
    """A note for a plan row whose language model comes from the hub and is not in the local cache
    (planning never downloads; the job does, unless offline), else None."""
    from fewshot_eval.settings import is_local_weights

    weights = model.get("weights")
    if (params.get("predictor") or model.get("predictor")) != "clm" or not weights or weights == "tiny-gpt2" or is_local_weights(str(weights)):
        return None
    home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub").expanduser()
    if (hub / f"models--{str(weights).replace('/', '--')}").is_dir():
        return None
    rev = f"@{model['revision']}" if model.get("revision") else ""
    offline = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if env_flag(v)]
    tail = f" ({offline[0]}=1 here: the job needs a HuggingFace cache that holds it)" if offline else ""
    return f"weights {weights}{rev}: hub model, not in the local cache -- the job downloads it{tail}"
