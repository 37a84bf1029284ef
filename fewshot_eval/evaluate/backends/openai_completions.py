"""``openai_completions``: a model behind any OpenAI-compatible completions server (vLLM, SGLang,
TGI, llama.cpp's server, ...), scored through ``/v1/completions``.

    # conf/model/served_llama.yaml
    name: served_llama
    predictor: openai_completions
    weights: meta-llama/Llama-3.1-70B   # the model name the server knows (part of the result identity)
    server: {base_url: "http://node12:8000/v1", api_key_env: MY_SERVER_KEY}
    max_parallel: 8                     # requests in flight per job

Log-likelihood as lm-evaluation-harness's ``local-completions``: the prompt is
``context + continuation`` (trailing whitespace of the context moved to the continuation, as for
``clm``), sent with ``echo: true, logprobs: 1, max_tokens: 1, temperature: 0``; the server
returns the prompt's tokens with their log-probs (the one generated token is dropped). The
continuation's tokens are those after the context's last character: if the server's tokenisation
has no token boundary there (a token spans both), the request fails with an error saying so,
since the numbers would not be comparable with ``clm``. The API key is read from the environment
variable that ``server.api_key_env`` names; it is never written into configs or results.
Requests: at most ``max_parallel`` in flight, each with ``server.timeout_s``; 429, 5xx, timeouts
and refused connections are retried ``server.max_retries`` times with exponential backoff
(``Retry-After`` honoured). Checked against ``clm`` on vLLM's server (tests/test_served_vllm.py: within
1e-3 per candidate); llama-cpp-python's server shifts echoed log-probs by one position (tests/test_served_model.py).
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence

from fewshot_eval.config import ConfigError
from fewshot_eval.evaluate.backends.predictor import Loglik, Predictor, Request, split_whitespace
from fewshot_eval.evaluate.registry import register_predictor

log = logging.getLogger("fewshot_eval")

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class ServerError(RuntimeError):
    """The server refused or failed a request for good (after retries, or a 4xx that retrying cannot fix)."""


class TokenisationMismatch(ValueError):
    """The server's tokens of context + continuation do not split at the context's end."""


@register_predictor("openai_completions")
class OpenAICompletionsPredictor(Predictor):
    is_lm = True
    uses_gpus = False  # the server has them: its SLURM jobs ask for none

    def __init__(self, base_url: str, model: str, *, api_key: Optional[str] = None, max_parallel: int = 4,
                 timeout_s: float = 120.0, max_retries: int = 5, name: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.max_parallel = max(1, int(max_parallel))
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.name = name or model
        self._local = threading.local()

    # ------------------------------------------------------------------ settings
    @classmethod
    def check_settings(cls, model: dict[str, Any], params: dict[str, Any]) -> None:
        where = f"model '{model.get('name', '?')}'"
        server = model.get("server") or {}
        url = server.get("base_url")
        if not url or not re.match(r"https?://", str(url)):
            raise ConfigError(f"{where}: predictor 'openai_completions' needs server.base_url, the server's OpenAI API root "
                              f"(e.g. http://node12:8000/v1), got {url!r}.")
        if not model.get("weights"):
            raise ConfigError(f"{where}: predictor 'openai_completions' needs 'weights': the model name the server serves "
                              f"(what its /v1/models lists).")
        for key, low in (("timeout_s", 0), ("max_retries", -1)):
            value = server.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= low):
                raise ConfigError(f"{where}: server.{key} must be a number {'> 0 (seconds per request)' if low == 0 else '>= 0'}, got {value!r}.")
        env = server.get("api_key_env")
        if env is not None:
            if not _ENV_NAME.fullmatch(str(env)):
                raise ConfigError(f"{where}: server.api_key_env must be the NAME of an environment variable holding the key "
                                  f"(e.g. MY_SERVER_KEY), not the key itself; got a value that is no variable name.")
            if env not in os.environ:
                raise ConfigError(f"{where}: server.api_key_env names {env}, which is not set here. "
                                  f"Export {env}=<key> before launching (jobs inherit it).")

    @classmethod
    def from_settings(cls, model: dict[str, Any], params: dict[str, Any]) -> "OpenAICompletionsPredictor":
        cls.check_settings(model, params)
        server = model.get("server") or {}
        env = server.get("api_key_env")
        return cls(str(server["base_url"]), str(model["weights"]), api_key=os.environ.get(env) if env else None,
                   max_parallel=model.get("max_parallel") or 4, timeout_s=server.get("timeout_s") or 120.0,
                   max_retries=server.get("max_retries", 5), name=model.get("name", ""))

    def describe(self) -> dict:
        return {"predictor": "openai_completions", "model": self.model, "base_url": self.base_url,
                "max_parallel": self.max_parallel}

    # ------------------------------------------------------------------ HTTP
    def _session(self) -> Any:
        import requests

        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            if self._api_key:
                s.headers["Authorization"] = f"Bearer {self._api_key}"
        return s

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST ``payload`` to ``<base_url>/<path>``; retries 429/5xx/timeouts/refused connections with backoff."""
        import requests

        url = f"{self.base_url}/{path.lstrip('/')}"
        for attempt in range(self.max_retries + 1):
            wait: Optional[float] = None
            try:
                r = self._session().post(url, json=payload, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as e:
                problem = f"{type(e).__name__}: {e}"
            else:
                if r.status_code == 200:
                    return r.json()
                problem = f"HTTP {r.status_code}: {r.text[:300]}"
                if r.status_code not in RETRY_STATUS:
                    raise ServerError(f"{url} refused the request ({problem}). Check server.base_url and the model name "
                                      f"'{self.model}' (weights).")
                try:
                    wait = float(r.headers.get("Retry-After", ""))
                except ValueError:
                    wait = None
            if attempt == self.max_retries:
                raise ServerError(f"{url}: no answer after {self.max_retries + 1} tries ({problem}). Is the server up? "
                                  f"(server.base_url, server.timeout_s, server.max_retries)")
            delay = wait if wait is not None else min(60.0, 0.5 * 2 ** attempt) * (1 + random.random() / 4)
            log.warning("%s: %s; retry %d/%d in %.1fs", url, problem, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ scoring
    def score(self, context: str, continuation: str) -> Loglik:
        """One (context, continuation) pair, whitespace already moved to the continuation."""
        if not context:
            raise ConfigError("openai_completions cannot score an empty context: the server is sent text, and the "
                              "end-of-text token that clm puts there has no text form. Use a prompt with a context.")
        prompt = context + continuation
        out = self.post("completions", {"model": self.model, "prompt": prompt, "echo": True, "logprobs": 1,
                                        "max_tokens": 1, "temperature": 0})
        lp = out["choices"][0]["logprobs"]
        return continuation_logprobs(prompt, len(context), lp["tokens"], lp["token_logprobs"], lp.get("text_offset"),
                                     lp.get("top_logprobs"))

    def loglikelihood(self, requests: Sequence[Request]) -> list[Loglik]:
        pairs = list(dict.fromkeys(split_whitespace(r.context, r.continuation) for r in requests))
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:  # at most max_parallel requests in flight
            scored = dict(zip(pairs, pool.map(lambda p: self.score(*p), pairs)))
        return [scored[split_whitespace(r.context, r.continuation)] for r in requests]


def continuation_logprobs(prompt: str, boundary: int, tokens: Sequence[str], logprobs: Sequence[Optional[float]],
                          offsets: Optional[Sequence[int]] = None, top: Optional[Sequence[Any]] = None) -> Loglik:
    """The continuation's part of an echoed prompt: the tokens starting at or after character
    ``boundary`` of ``prompt`` (the generated token(s) after the prompt dropped). Token positions
    come from the token strings (or the server's ``text_offset`` when the strings do not spell the
    prompt, e.g. byte tokens of a multi-byte character). Raises TokenisationMismatch when no token
    starts at ``boundary``."""
    starts: list[int] = []
    pos = 0
    for t in tokens:
        starts.append(pos)
        pos += len(t)
    if "".join(tokens)[: len(prompt)] != prompt and offsets is not None:
        starts = list(offsets)
    n_prompt = sum(1 for s in starts if s < len(prompt))
    if boundary not in starts[:n_prompt]:
        i = max(k for k in range(n_prompt) if starts[k] < boundary)
        raise TokenisationMismatch(
            f"the server tokenised context + continuation with token {tokens[i]!r} spanning the end of the context "
            f"(...{prompt[max(0, boundary - 30):boundary]!r} | {prompt[boundary:boundary + 30]!r}...), so its continuation "
            f"tokens differ from clm's (which tokenises the context alone). Scores would not be comparable: use a "
            f"template whose continuations start a new token (e.g. a leading space), or the clm / vllm predictor.")
    first = starts.index(boundary)
    lps = [float(x) for x in logprobs[first:n_prompt]]
    greedy = None
    if top is not None:
        greedy = all(t and lp >= max(t.values()) - 1e-6 for lp, t in zip(lps, top[first:n_prompt]))
    return Loglik(lps, list(tokens[first:n_prompt]), greedy)  # token strings stand for ids (shared prefix/suffix)
