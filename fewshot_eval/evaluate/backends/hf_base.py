"""``HFPredictor``: the base of the predictors that load a HuggingFace checkpoint (``weights``), like
lm-evaluation-harness's ``TemplateLM``. ``clm`` and ``vllm`` subclass it.

It owns what they share:

* tokenisation, exactly lm-evaluation-harness's HF model (``HFLM``) on the subclass's ``tokenizer``:
  trailing whitespace of the context moves to the continuation; ``whole = encode(context +
  continuation)``, ``ctx = encode(context)``, continuation tokens = ``whole[len(ctx):]``; an empty
  context becomes the BOS (else EOS) token (:meth:`HFPredictor.encode_pair`, batched:
  :meth:`HFPredictor.encode_pairs`);
* the checks only such predictors need: ``weights`` is set (:meth:`HFPredictor.check_settings`, at
  planning and at the job's start); at planning, from local files only (never a download), a local
  ``weights`` path is a checkpoint dir, ``chat`` has a chat template to apply and ``hf_overrides`` keys
  are fields of the model's config (:meth:`HFPredictor.check_files`);
* ``weights: tiny-gpt2`` (:func:`weights_path`) and the ``dtype`` param (:meth:`HFPredictor.job_dtype`).

Its capability ``loads_hf_weights`` also gives the job a weights fingerprint (``plan/unit.py``) and a
plan row the hub-cache note (``model_checks.weights_note``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.predictor import Predictor, split_whitespace
from fewshot_eval.param_schema import choices, typed_params

WEIGHTS_DIR_ENV = "FEWSHOT_WEIGHTS_DIR"


DTYPES = choices("dtype")  # the schema holds them (fewshot_eval/param_schema.py)


def weights_path(weights: str) -> str:
    """What ``from_pretrained`` loads for a setting's ``weights``: the local tiny GPT-2 for ``tiny-gpt2``."""
    if weights == "tiny-gpt2":
        from fewshot_eval.evaluate.backends.tiny_model import tiny_gpt2_path

        return str(tiny_gpt2_path())
    return weights


class HFPredictor(Predictor):
    """A predictor whose model is a HuggingFace checkpoint; subclasses set ``self.tokenizer`` (a
    ``transformers`` tokenizer, or one that behaves like it) and implement the operations."""

    is_lm = True
    loads_hf_weights = True
    tokenizer: Any

    # ------------------------------------------------------------------ checks
    @classmethod
    def check_settings(cls, model: dict[str, Any], params: dict[str, Any]) -> None:
        """The setting names its ``weights`` (subclasses add their own checks after this one)."""
        if not model.get("weights"):
            raise ConfigError(f"model '{model.get('name', '?')}': predictor '{cls.name}' needs 'weights' (a local dir, a hub id, or 'tiny-gpt2').")

    @classmethod
    def check_files(cls, model_key: str, model: dict[str, Any]) -> None:
        """A local ``weights`` path is a checkpoint dir; with ``chat``, its tokenizer has a chat template;
        ``hf_overrides`` keys are fields of its config. The last two read local files only: a hub model
        not in the local cache is the job's to load (and report)."""
        from fewshot_eval.settings import is_local_weights

        weights = model.get("weights")
        if weights and weights != "tiny-gpt2" and is_local_weights(str(weights)):
            _check_weights_dir(model_key, Path(str(weights)).expanduser())
        _check_chat_tokenizer(model_key, model)
        _check_hf_overrides(model_key, model)

    @staticmethod
    def job_dtype(params: dict[str, Any]) -> str:
        """The job's ``dtype`` param (float32 when unset), one of :data:`DTYPES`."""
        dtype = typed_params(params).dtype
        if dtype not in DTYPES:
            raise ConfigError(f"dtype: unknown dtype '{dtype}'. Valid: {', '.join(DTYPES)}.")
        return dtype

    # ------------------------------------------------------------------ tokenisation (lm-eval's)
    def tok_encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def num_tokens(self, text: str) -> int:
        return len(self.tok_encode(text)) if text else 1

    def prefix_token_id(self) -> int:
        tid = self.tokenizer.bos_token_id
        return tid if tid is not None else self.tokenizer.eos_token_id

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens), as lm-evaluation-harness's HFLM."""
        if context == "":
            cont = list(self.tokenizer.encode(continuation, add_special_tokens=False))
            return ([self.prefix_token_id()], cont) if cont and cont[0] != self.prefix_token_id() else (cont[:1], cont[1:])
        context, continuation = split_whitespace(context, continuation)
        whole = self.tok_encode(context + continuation)
        ctx = self.tok_encode(context)
        return ctx, whole[len(ctx) :]

    def encode_many(self, texts: Sequence[str]) -> dict[str, list[int]]:
        """``tok_encode`` of many texts in batched tokenizer calls (each distinct text once)."""
        return dict(self.iter_encoded(texts))

    def iter_encoded(self, texts: Sequence[str], chunk: int = 128, special: bool = True) -> Iterator[tuple[str, list[int]]]:
        """(text, ``tok_encode(text)``) of each distinct text, tokenised ``chunk`` texts per batched call:
        a fast tokenizer's per-token records (offsets, token strings ...) of one call are alive at once,
        so one call over a whole task's requests would hold them for every token of the task.
        ``special=False``: ``tokenizer.encode(text, add_special_tokens=False)`` instead."""
        distinct = list(dict.fromkeys(texts))
        for a in range(0, len(distinct), chunk):
            part = distinct[a : a + chunk]
            ids = self.tokenizer(part, return_attention_mask=False, add_special_tokens=special)["input_ids"]
            yield from zip(part, (list(x) for x in ids))

    def encode_pairs(self, pairs: Sequence[tuple[str, str]], chunk: int = 256) -> list[tuple[list[int], list[int]]]:
        """:meth:`encode_pair` of each (context, continuation), the contexts and whole texts tokenised
        in batched calls (:meth:`iter_encoded`), the whole texts ``chunk`` pairs at a time (only
        their continuations are kept); empty contexts go through :meth:`encode_pair`."""
        split = [split_whitespace(ctx, cont) for ctx, cont in pairs]
        contexts = dict(self.iter_encoded([c for c, _ in split if c]))
        out = []
        for a in range(0, len(pairs), chunk):
            whole = dict(self.iter_encoded([c + t for c, t in split[a : a + chunk] if c]))
            for (ctx_raw, cont_raw), (ctx, cont) in zip(pairs[a : a + chunk], split[a : a + chunk]):
                if ctx:
                    c = contexts[ctx]
                    out.append((c, whole[ctx + cont][len(c) :]))
                else:
                    out.append(self.encode_pair(ctx_raw, cont_raw))
        return out


# ---------------------------------------------------------------------- planning checks (local files only)
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
    read_model_config(model_key, path / "config.json")
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
        raise ConfigError(f"model '{model_key}': weights dir {path} holds no weight files ({', '.join(WEIGHT_FILES)}): "
                          f"copy the checkpoint's weights there, or point the setting's 'weights' at the dir that has them.")


# What a HuggingFace checkpoint dir holds its weights in (transformers' and vLLM's formats, shards included)
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.gguf")


def read_model_config(model_key: str, path: Path) -> dict[str, Any]:
    """A checkpoint's config.json as a dict; one that is not a JSON object is a ConfigError naming it."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"model '{model_key}': {path} is not valid JSON ({e}): the checkpoint's config.json is damaged; "
                          f"copy it again from where the checkpoint came from.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"model '{model_key}': {path} holds {type(data).__name__}, not a JSON object: not a HuggingFace config.")
    return data


POSITION_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "seq_length")  # as the clm predictor reads them


def model_positions(model_key: str, model: dict[str, Any]) -> Optional[int]:
    """The context length (positions) of the setting's model from its config.json when it is on this machine
    (a local dir, the built tiny model, a hub model in the local cache), ``hf_overrides`` applied; else None."""
    import os

    from fewshot_eval.settings import is_local_weights

    weights = str(model.get("weights") or "")
    if not weights:
        return None
    if weights == "tiny-gpt2":
        from fewshot_eval.config import cache_dir
        from fewshot_eval.evaluate.backends.tiny_model import VERSION

        config = cache_dir() / VERSION / "config.json"
    elif is_local_weights(weights):
        config = Path(weights).expanduser() / "config.json"
    else:
        home = Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser()
        repo = Path(os.environ.get("HF_HUB_CACHE") or home / "hub").expanduser() / f"models--{weights.replace('/', '--')}"
        ref = repo / "refs" / str(model.get("revision") or "main")
        try:
            config = repo / "snapshots" / (ref.read_text().strip() if ref.is_file() else str(model.get("revision"))) / "config.json"
        except OSError:
            return None
    if not config.is_file():
        return None
    data = {**read_model_config(model_key, config), **(model.get("hf_overrides") or {})}
    for key in POSITION_KEYS:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _local(model: dict[str, Any], loader: str) -> Optional[Any]:
    """The setting's config or tokenizer (``loader``: ``AutoConfig`` | ``AutoTokenizer``) from local
    files only, or None when it is not available here (a hub id not in the local cache: the job
    loads it and reports what is wrong)."""
    weights = weights_path(str(model.get("weights")))
    try:
        import transformers

        kwargs = {"revision": model["revision"]} if model.get("revision") else {}
        return getattr(transformers, loader).from_pretrained(weights, local_files_only=True, **kwargs)
    except Exception:  # noqa: BLE001 - not available here
        return None


def _check_hf_overrides(model_key: str, model: dict[str, Any]) -> None:
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


def _check_chat_tokenizer(model_key: str, model: dict[str, Any]) -> None:
    """``chat`` set: the model's tokenizer must have a chat template."""
    if model.get("chat") is None:
        return
    tok = _local(model, "AutoTokenizer")
    if tok is not None:
        check_chat_template(tok, model_key, str(model.get("weights")))


def check_chat_template(tokenizer: Any, model_name: str, what: str) -> None:
    """A clear error when ``chat`` is set but there is no tokenizer or it has no chat template."""
    if tokenizer is None:
        raise ConfigError(f"model '{model_name}': chat.enabled is true but predictor '{what}' has no tokenizer to apply a chat template. "
                          f"Set chat.enabled=false or use predictor clm.")
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"model '{model_name}': chat.enabled is true but the tokenizer of '{what}' has no chat template. Set "
                          f"chat.enabled=false, or use weights whose tokenizer defines one (tokenizer_config.json "
                          f"'chat_template' or chat_template.jinja).")
