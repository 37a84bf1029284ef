"""Write the tiny GPT-2 (a HuggingFace dir) as a GGUF file that llama.cpp serves: same weights (f32),
same byte-level BPE vocab and merges, GPT-2's pre-tokenizer.

    python tests/tiny_gguf.py <hf dir> <out.gguf>

Runs in the python that has llama-cpp-python (needs only ``gguf`` and ``numpy`` there): it
reads ``model.safetensors`` itself. The tensor names and metadata are those llama.cpp's
``convert_hf_to_gguf.py`` writes for ``GPT2LMHeadModel`` (HF's Conv1D weights are stored
[in, out]: transposed to [out, in] as for a Linear).
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(info["shape"]).copy()
    return out


def write_gguf(hf_dir: Path, out: Path) -> None:
    import gguf

    cfg = json.loads((hf_dir / "config.json").read_text())
    tok = json.loads((hf_dir / "tokenizer.json").read_text())
    w = gguf.GGUFWriter(str(out), "gpt2")
    w.add_name("tiny-gpt2")
    w.add_context_length(cfg["n_positions"])
    w.add_embedding_length(cfg["n_embd"])
    w.add_feed_forward_length(cfg.get("n_inner") or 4 * cfg["n_embd"])
    w.add_block_count(cfg["n_layer"])
    w.add_head_count(cfg["n_head"])
    w.add_layer_norm_eps(cfg["layer_norm_epsilon"])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tok["model"]["vocab"]
    for t in tok["added_tokens"]:
        vocab[t["content"]] = t["id"]
    tokens = [None] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    special = {t["id"] for t in tok["added_tokens"] if t.get("special")}
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_add_bos_token(False)  # like HF's GPT-2 tokenizer: no BOS added to a prompt

    sd = read_safetensors(hf_dir / "model.safetensors")
    names = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
             "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
    per_layer = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
                 "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    for key, value in sd.items():
        name = key.removeprefix("transformer.")
        if name in names:
            w.add_tensor(names[name], value)
            if name == "wte.weight":
                w.add_tensor("output.weight", value)  # tied lm_head
            continue
        if not name.startswith("h."):
            continue  # attn.bias masks of old checkpoints
        _, layer, rest = name.split(".", 2)
        module, _, kind = rest.rpartition(".")
        if module not in per_layer:
            continue
        if kind == "weight" and module not in ("ln_1", "ln_2"):
            value = np.ascontiguousarray(value.T)  # Conv1D [in, out] -> [out, in]
        w.add_tensor(f"blk.{layer}.{per_layer[module]}.{kind}", value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    write_gguf(Path(sys.argv[1]), Path(sys.argv[2]))
