"""Prompts for chat models: the context wrapped with the tokenizer's chat template.

A model setting turns it on with ``chat.enabled`` (``fewshot_eval.settings.ChatSetting``)::

    chat:
      enabled: true
      system_prompt: You are a careful annotator.   # optional; the ``description`` param follows it
      fewshot_as_multiturn: true                    # demonstrations as user/assistant turns

Messages, as lm-evaluation-harness builds them with ``--apply_chat_template``: an optional
system message (``system_prompt`` and ``description``, joined by ``train_sep``); then each
demonstration as a user turn (the template's prompt up to the candidate) and an assistant turn
(the gold candidate and the rest of the template) -- or, with ``fewshot_as_multiturn: false``,
the demonstrations and the test prompt in one user message, joined by ``train_sep``; then the
test prompt as the last user turn. The context is the rendered template with the generation
prompt (``add_generation_prompt=True``); each candidate is scored as the assistant's answer.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from fewshot_eval.evaluate.backends.hf_base import check_chat_template


class ChatFormat:
    """Renders (demonstrations, test prompt) to a chat-templated context string."""

    def __init__(self, tokenizer: Any, system_prompt: Optional[str] = None, fewshot_as_multiturn: bool = True) -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.multiturn = fewshot_as_multiturn

    def messages(self, demos: Sequence[tuple[str, str]], prompt: str, sep: str, description: Optional[str]) -> list[dict[str, str]]:
        """``demos``: (user text, assistant text) per demonstration; ``prompt``: the test prompt up to the candidate."""
        out = []
        system = sep.join(x for x in (self.system_prompt, description) if x)
        if system:
            out.append({"role": "system", "content": system})
        if self.multiturn:
            for user, answer in demos:
                out += [{"role": "user", "content": user.rstrip()}, {"role": "assistant", "content": answer.strip()}]
            out.append({"role": "user", "content": prompt.rstrip()})
        else:
            out.append({"role": "user", "content": sep.join([u + a for u, a in demos] + [prompt]).rstrip()})
        return out

    def context(self, demos: Sequence[tuple[str, str]], prompt: str, sep: str, description: Optional[str]) -> str:
        return self.tokenizer.apply_chat_template(self.messages(demos, prompt, sep, description), tokenize=False, add_generation_prompt=True)


def chat_format(setting: Optional[dict[str, Any]], predictor: Any, model_name: str = "?") -> Optional[ChatFormat]:
    """The chat format of a validated model setting's ``chat`` (None: plain prompts); needs a tokenizer with a chat template."""
    if setting is None:
        return None
    check_chat_template(getattr(predictor, "tokenizer", None), model_name, getattr(predictor, "name", "?"))
    return ChatFormat(predictor.tokenizer, setting.get("system_prompt"), bool(setting.get("fewshot_as_multiturn", True)))
