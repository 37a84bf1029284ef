"""A small OpenAI-compatible ``/v1/completions`` server over the tiny GPT-2, in a thread of the test process.

Its log-probs are the real model's (one forward pass per request, float32 CPU); ``mode`` says how it
echoes a prompt's log-probs:

* ``aligned`` -- as vLLM's server: prompt token i gets log p(token i | tokens before i) (row i-1);
* ``shifted`` -- as llama-cpp-python's server (tests/test_served_model.py): row i, the next position's;
* ``split`` -- aligned, but the echo reads every token of two or more characters back as two tokens
  (its echo tokenises otherwise than its generation).

Greedy generation of ``max_tokens`` (only 1 is needed here) with ``logprobs`` top tokens, ``echo``, and
``text_offset``. ``requests`` counts the completions it served. Lets the start-up check of
``openai_completions`` be tested without llama-cpp-python or vLLM.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

MODES = ("aligned", "shifted", "split")


class EchoServer:
    def __init__(self, model_path: str, mode: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        assert mode in MODES, mode
        self.mode = mode
        self.tok = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
        self.requests = 0
        self._lock = threading.Lock()

    def _rows(self, ids: list[int]) -> Any:
        import torch

        with self._lock, torch.no_grad():
            return torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), -1)

    def _top(self, row: Any, k: int) -> dict[str, float]:
        values, idx = row.topk(k)
        return {self.tok.decode([int(i)]): float(v) for v, i in zip(values, idx)}

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        prompt, k = body["prompt"], int(body.get("logprobs") or 0)
        ids = self.tok.encode(prompt)
        rows = self._rows(ids)
        nxt = int(rows[-1].argmax())
        tokens, lps, tops = [], [], []
        if body.get("echo"):
            for i, t in enumerate(ids):
                row = None if i == 0 else rows[i - 1] if self.mode != "shifted" else rows[i]
                text = self.tok.decode([t])
                parts = [text[:1], text[1:]] if self.mode == "split" and len(text) > 1 else [text]
                for part in parts:
                    tokens.append(part)
                    lps.append(None if row is None else float(row[t]))
                    tops.append(None if row is None else self._top(row, k))
        tokens.append(self.tok.decode([nxt]))
        lps.append(float(rows[-1][nxt]))
        tops.append(self._top(rows[-1], k))
        offsets, pos = [], 0
        for t in tokens:
            offsets.append(pos)
            pos += len(t)
        logprobs = {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets} if k else None
        return {"object": "text_completion", "model": body.get("model"),
                "choices": [{"index": 0, "text": (prompt if body.get("echo") else "") + tokens[-1], "logprobs": logprobs,
                             "finish_reason": "length"}]}


@contextlib.contextmanager
def running(model_path: str, mode: str) -> Iterator[tuple[str, EchoServer]]:
    """(base_url, server) of an EchoServer listening on a free loopback port; stopped afterwards."""
    server = EchoServer(model_path, mode)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path.rstrip("/") != "/v1/completions":
                self.send_error(404)
                return
            data = json.dumps(server.complete(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", server
    finally:
        httpd.shutdown()
        httpd.server_close()
