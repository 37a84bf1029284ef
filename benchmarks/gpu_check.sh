#!/usr/bin/env bash
# The GPU checks of multi-GPU / vLLM support, in one go (run from the repo root on a CUDA machine
# where fewshot-eval, vllm (and for the 2-GPU test, 2 GPUs) are installed):
#
#   bash benchmarks/gpu_check.sh
#
# 1. tests/test_gpu.py: vLLM TP=1 vs clm on the tiny GPT-2 (per token, same argmax; prints the largest
#    difference), clm sharded over 2 GPUs vs one GPU (skipped with fewer than 2);
# 2. benchmarks/bench_gpu_backends.py: the same comparison on copa_demo + nli_demo, with examples/s
#    of clm and of vLLM. Output also goes to gpu_check.log.
set -euo pipefail
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
{
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no GPU (nvidia-smi failed)"; exit 2; }
    "$PY" -c "import torch, vllm; print('torch', torch.__version__, 'vllm', vllm.__version__, 'gpus', torch.cuda.device_count())"
    # every GPU test this machine can run must run: a missing vllm (or GPU) fails instead of skipping
    FEWSHOT_REQUIRE_GPU=$(nvidia-smi -L | wc -l) "$PY" -m pytest tests/test_gpu.py -q -rs -p no:cacheprovider -s
    "$PY" benchmarks/bench_gpu_backends.py --nshot 2
} 2>&1 | tee gpu_check.log
