"""``openai_completions``: a model behind an OpenAI-compatible completions server (vLLM's, or any other
that passes the start-up check below), scored through ``/v1/completions``.

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
5e-5 per candidate, 1.6e-5 measured).

Before its first request a predictor checks the server once (:func:`check_server`, once per server and
model in a process): it scores a known text both ways -- the server's own next-token log-probs after a
context (generation), and the log-probs it echoes for that token inside context + token -- and refuses,
with one line naming the server, when the echoed ones belong to another position (llama-cpp-python's
server echoes log-probs shifted by one: tests/test_served_model.py) or when the server reads back a
token it generated as other tokens. Either would silently give wrong scores.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Optional, Sequence

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


class ServerCheckFailed(ServerError):
    """The start-up check found that the server's echoed log-probs would give wrong scores."""


# Known texts for the start-up check: the server's next-token log-probs after each are compared with the
# log-probs it echoes for that token inside context + token.
PROBE_CONTEXTS = ("The quick brown fox jumps over the lazy dog. The quick brown",
                  "Question: What is the capital of France?\nAnswer: The capital of France is")
PROBE_TOP = 5  # log-probs of the top tokens compared at each probed position
PROBE_MAX_GAP = 1.0  # nats: echoed and generated log-probs further apart than this match no position
_checked: dict[tuple[str, str], Optional[str]] = {}  # (base_url, model) -> None (passed) or the refusal
_check_lock = threading.Lock()


@register_predictor("openai_completions")
class OpenAICompletionsPredictor(Predictor):
    is_lm = True
    uses_gpus = False  # the server has them: its SLURM jobs ask for none

    def __init__(self, base_url: str, model: str, *, api_key: Optional[str] = None, max_parallel: int = 4,
                 timeout_s: float = 120.0, max_retries: int = 5, name: str = "", check: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.max_parallel = max(1, int(max_parallel))
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.name = name or model
        self.check = check  # run check_server before the first request (tests of other things turn it off)
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
        if self.check:
            check_server(self)
        pairs = list(dict.fromkeys(split_whitespace(r.context, r.continuation) for r in requests))
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:  # at most max_parallel requests in flight
            scored = dict(zip(pairs, pool.map(lambda p: self.score(*p), pairs)))
        return [scored[split_whitespace(r.context, r.continuation)] for r in requests]


def _token_starts(prompt: str, tokens: Sequence[str], offsets: Optional[Sequence[int]]) -> tuple[list[int], int]:
    """(each token's start in ``prompt``, how many tokens start inside it). Positions come from the token
    strings, or from the server's ``text_offset`` when the strings do not spell the prompt (byte tokens
    of a multi-byte character)."""
    starts: list[int] = []
    pos = 0
    for t in tokens:
        starts.append(pos)
        pos += len(t)
    if "".join(tokens)[: len(prompt)] != prompt and offsets is not None:
        starts = list(offsets)
    return starts, sum(1 for s in starts if s < len(prompt))


def continuation_logprobs(prompt: str, boundary: int, tokens: Sequence[str], logprobs: Sequence[Optional[float]],
                          offsets: Optional[Sequence[int]] = None, top: Optional[Sequence[Any]] = None) -> Loglik:
    """The continuation's part of an echoed prompt: the tokens starting at or after character
    ``boundary`` of ``prompt`` (the generated token(s) after the prompt dropped). Raises
    TokenisationMismatch when no token starts at ``boundary``."""
    first, n_prompt = boundary_token(prompt, boundary, tokens, offsets)
    lps = [float(x) for x in logprobs[first:n_prompt]]
    greedy = None
    if top is not None:
        greedy = all(t and lp >= max(t.values()) - 1e-6 for lp, t in zip(lps, top[first:n_prompt]))
    return Loglik(lps, list(tokens[first:n_prompt]), greedy)  # token strings stand for ids (shared prefix/suffix)


def boundary_token(prompt: str, boundary: int, tokens: Sequence[str], offsets: Optional[Sequence[int]] = None) -> tuple[int, int]:
    """(index of the token that starts at character ``boundary`` of ``prompt``, number of prompt tokens);
    TokenisationMismatch when a token spans ``boundary``."""
    starts, n_prompt = _token_starts(prompt, tokens, offsets)
    if boundary not in starts[:n_prompt]:
        i = max(k for k in range(n_prompt) if starts[k] < boundary)
        raise TokenisationMismatch(
            f"the server tokenised context + continuation with token {tokens[i]!r} spanning the end of the context "
            f"(...{prompt[max(0, boundary - 30):boundary]!r} | {prompt[boundary:boundary + 30]!r}...), so its continuation "
            f"tokens differ from clm's (which tokenises the context alone). Scores would not be comparable: use a "
            f"template whose continuations start a new token (e.g. a leading space), or the clm / vllm predictor.")
    return starts.index(boundary), n_prompt


# ---- the start-up check -------------------------------------------------------------------------

def check_server(pred: OpenAICompletionsPredictor) -> None:
    """Refuse (ServerCheckFailed, one line naming the server) a server whose echoed log-probs would give
    wrong scores; once per server and model in this process. See :func:`probe_problem`."""
    key = (pred.base_url, pred.model)
    with _check_lock:
        if key not in _checked:
            _checked[key] = probe_problem(pred)
            if _checked[key] is None:
                log.info("%s (model %s) passed the start-up check of its echoed log-probs", pred.base_url, pred.model)
        problem = _checked[key]
    if problem:
        raise ServerCheckFailed(
            f"openai_completions: the server at {pred.base_url} (model '{pred.model}') fails fewshot-eval's start-up check: "
            f"{problem}. Its scores would be wrong: serve the model with a server that passes (vLLM's does; "
            f"llama.cpp's does not), or use the clm or vllm predictor.")


def _gap(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """How far apart two top-token log-prob maps are: the largest difference over the plain tokens both
    list (inf when they share fewer than all but one of the shorter map's plain tokens: other distributions).
    Byte tokens are left out: servers show several of them as the same string."""
    p, q = ({t: v for t, v in m.items() if _plain(t)} for m in (p, q))
    shared = p.keys() & q.keys()
    if not shared or len(shared) < min(len(p), len(q)) - 1:
        return math.inf
    return max(abs(float(p[t]) - float(q[t])) for t in shared)


def _plain(token: str) -> bool:
    """A token that is text: printable, not a piece of a multi-byte character, not a special token."""
    return bool(token.strip()) and token.isprintable() and "\ufffd" not in token and not token.startswith(("<|", "bytes:"))


def probe_problem(pred: OpenAICompletionsPredictor) -> Optional[str]:
    """What is wrong with the server's echoed log-probs (None: nothing): for each of PROBE_CONTEXTS, the
    server's top next-token log-probs after the context (generation, D) are compared with those it echoes
    at the position of a next token t (one of D's, a plain word) inside context + t (E), and with those it
    generates after context + t (D'). A correct server echoes E = D (up to its arithmetic); a server that
    echoes each token with the distribution of the position after it has E = D'. Also refused: a server
    that reads every such t back as other tokens (its echo and its generation tokenise differently)."""
    for context in PROBE_CONTEXTS:
        gen = pred.post("completions", {"model": pred.model, "prompt": context, "max_tokens": 1, "logprobs": PROBE_TOP,
                                        "temperature": 0, "echo": False})
        lp = gen["choices"][0].get("logprobs") or {}
        top = (lp.get("top_logprobs") or [None])[0]
        if not top:
            return "it returns no log-probs for the tokens it generates (logprobs: 5)"
        read_back = []
        # plain tokens of two or more characters (only they show a re-tokenisation; single characters when
        # there are none), likeliest first
        plain = [t for t in top if _plain(t)]
        longer = [t for t in plain if len(t.strip()) > 1]
        for token in sorted(longer or plain, key=top.get, reverse=True):
            prompt = context + token
            out = pred.post("completions", {"model": pred.model, "prompt": prompt, "echo": True, "logprobs": PROBE_TOP,
                                            "max_tokens": 1, "temperature": 0})
            echo = out["choices"][0].get("logprobs") or {}
            tokens, tops = echo.get("tokens") or [], echo.get("top_logprobs") or []
            try:
                first, n_prompt = boundary_token(prompt, len(context), tokens, echo.get("text_offset"))
            except (TokenisationMismatch, ValueError):
                first, n_prompt = -1, 0
            if first < 0 or tokens[first:n_prompt] != [token]:
                read_back.append(f"{token!r} as {tokens[first:n_prompt] if first >= 0 else 'a token spanning the context'}")
                continue
            if first >= len(tops) or not tops[first]:
                return "it echoes no top log-probs for prompt tokens (echo: true, logprobs: 5)"
            echoed, after = tops[first], tops[n_prompt] if n_prompt < len(tops) and tops[n_prompt] else {}
            right, shifted = _gap(echoed, top), _gap(echoed, after)
            if right <= PROBE_MAX_GAP and right < shifted:
                break
            where = f"the log-probs it echoes for {token!r} after {context[-24:]!r}"
            if shifted < right:
                return f"{where} are its next-token log-probs one position later (echoed log-probs shifted by one)"
            if math.isinf(right):
                return f"{where} list other top tokens than it generates there (they belong to no position near it)"
            return f"{where} differ from those it generates there by {right:.3g} nats (more than {PROBE_MAX_GAP})"
        else:
            return (f"it reads back tokens it generated after {context[-24:]!r} as other tokens ({'; '.join(read_back[:3]) or 'none printable'}): "
                    f"its echo and its generation tokenise differently")
    return None
