"""Planning checks of a model setting: what would make a predictor die at its start (no model is loaded).

* the predictor is registered and its own ``check_settings`` passes;
* ``dtype`` and ``device`` are valid values; ``chat`` and ``hf_overrides`` are set only where they apply
  (a language model; a predictor that loads HuggingFace weights);
* the predictor's own checks of local files (``check_files``: for those loading a HuggingFace
  checkpoint, the weights dir, chat template and ``hf_overrides`` keys, see ``hf_base.py``);
* a hub model not in the local cache gets a note on its plan row (planning never downloads).

What applies to which predictor is read from its class's capabilities (``is_lm``,
``loads_hf_weights``), never from its name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

from fewshot_eval.config import ConfigError, env_flag
from fewshot_eval.evaluate.backends.hf_base import DTYPES, check_chat_template

_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_model(model_key: str, model: dict[str, Any], params: dict[str, Any], local: bool = False) -> None:
    """A model setting and the job's params (dtype, device, max_length) as its predictor will take them; raises
    ConfigError. ``local``: the job runs on this machine (a local launcher), so a ``device=cuda[:N]`` must exist
    here (a SLURM sweep planned on a login node without GPUs plans GPU jobs all the same)."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_class, predictors_with

    predictor = params.get("predictor") or model.get("predictor")
    cls = predictor_class(predictor, config_dirs())  # registered? (else the error lists the names)
    cls.check_settings(model, params)
    dtype = params.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"dtype: unknown dtype '{dtype}'. Valid: {', '.join(DTYPES)}.")
    device = params.get("device")
    if device is not None and not (isinstance(device, str) and _DEVICE.fullmatch(device)):
        raise ConfigError(f"device: unknown device {device!r}. Valid: auto, cpu, cuda, cuda:<index>.")
    dp = (model.get("parallel") or {}).get("data_parallel_size") or 1
    if dp != 1 and not cls.data_parallel:
        raise ConfigError(f"model '{model_key}': parallel.data_parallel_size={dp} applies to predictors "
                          f"{_and(predictors_with('data_parallel'))}, not '{predictor}'. Remove it (or set it to 1).")
    if model.get("chat") is not None and not cls.is_lm:
        check_chat_template(None, model_key, predictor)
    if model.get("hf_overrides") and not cls.loads_hf_weights:
        raise ConfigError(f"model '{model_key}': hf_overrides applies to predictors {_and(predictors_with('loads_hf_weights'))} "
                          f"(they load a HuggingFace config), not '{predictor}'. Remove hf_overrides from the setting.")
    cls.check_files(model_key, model)
    if cls.loads_hf_weights:
        check_max_length(model_key, model, params.get("max_length"))
        if local:
            check_device_here(device)


def check_max_length(model_key: str, model: dict[str, Any], max_length: Any) -> None:
    """``max_length`` fits the model's positions (read from its config.json when it is on this machine)."""
    from fewshot_eval.evaluate.backends.hf_base import model_positions

    if not isinstance(max_length, int) or isinstance(max_length, bool):
        return
    positions = model_positions(model_key, model)
    if positions is not None and max_length > positions:
        raise ConfigError(f"max_length={max_length}: model '{model_key}' has {positions} positions (its config.json), so longer "
                          f"contexts cannot be scored. Pass max_length=null (the model's) or at most max_length={positions}.")


def check_device_here(device: Any) -> None:
    """``device=cuda`` / ``cuda:N`` names a GPU this machine has (torch is imported only for such a device)."""
    if not isinstance(device, str) or not device.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= count:
        have = f"{count} GPU{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})" if count else "no GPU torch can use"
        raise ConfigError(f"device={device}: this machine has {have}, and the local launcher runs jobs here. Pass device=auto "
                          f"(a GPU when there is one) or device=cpu, or launch on GPU nodes (hydra/launcher=submitit_slurm).")


def _and(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def weights_note(model: dict[str, Any], params: dict[str, Any]) -> Optional[str]:
    """A note for a plan row whose predictor loads HuggingFace weights from the hub that are not in
    the local cache (planning never downloads; the job does, unless offline), else None."""
    from fewshot_eval.config import config_dirs
    from fewshot_eval.evaluate.registry import predictor_capability
    from fewshot_eval.settings import is_local_weights

    weights = model.get("weights")
    if not weights or weights == "tiny-gpt2" or is_local_weights(str(weights)):
        return None
    if not predictor_capability(params.get("predictor") or model.get("predictor"), "loads_hf_weights", config_dirs()):
        return None
    home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub").expanduser()
    if (hub / f"models--{str(weights).replace('/', '--')}").is_dir():
        return None
    rev = f"@{model['revision']}" if model.get("revision") else ""
    offline = [v for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if env_flag(v)]
    tail = f" ({offline[0]}=1 here: the job needs a HuggingFace cache that holds it)" if offline else ""
    return f"weights {weights}{rev}: hub model, not in the local cache -- the job downloads it{tail}"
