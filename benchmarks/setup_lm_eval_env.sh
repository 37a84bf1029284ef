#!/usr/bin/env bash
# Create benchmarks/.venv-lm-eval: a separate venv with lm-evaluation-harness for
# benchmarks/bench_vs_lm_eval.py. lm-eval is NOT a dependency of fewshot-eval.
# torch is installed FIRST (pinned, CPU wheel) so lm-eval does not pull another build.
#   bash benchmarks/setup_lm_eval_env.sh [python]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
py="${1:-python3.11}"
venv="$here/.venv-lm-eval"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
echo "*" > "$venv/.gitignore"   # keep the venv out of git
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "torch==2.13.0"
"$venv/bin/pip" install -q "lm-eval[hf]"   # [hf]: accelerate, peft for its HF model
"$venv/bin/pip" install -q -e "$repo"
"$venv/bin/python" -c "import lm_eval, torch, transformers; print('lm_eval', getattr(lm_eval, '__version__', '?'), 'torch', torch.__version__, 'transformers', transformers.__version__)"
