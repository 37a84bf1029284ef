#!/usr/bin/env bash
# The GPU check, in one go, on a CUDA machine that has torch, transformers and accelerate but maybe
# nothing else of ours and no network (the `device` machines; docs/development.md, "The GPU check"):
#
#   bash benchmarks/gpu_wheels.sh        # once, where pip reaches an index: the wheels it needs -> .whl/
#   bash benchmarks/gpu_check.sh         # on the GPU machine, from the repo root, .whl/ beside it
#   bash benchmarks/gpu_check.sh --cpu   # the same steps on the CPU, small (a dry run of the script)
#
# 1. installs the carried wheels the machine lacks (.whl/*.whl, `pip install --no-index --no-deps`
#    into /tmp/gpu-check-site, first on PYTHONPATH; the machine's own torch/transformers stay);
# 2. benchmarks/bench_gpu_vs_lm_eval.py on the tiny GPT-2, then on a locally built 1024-wide 12-layer
#    GPT-2: clm (prefix tree, SDPA, the greedy loop) against lm-eval's HFLM on the same requests,
#    float32 and bfloat16: log-likelihood agreement, identical generations, time ratio, peak GPU
#    memory of each; with 2+ GPUs, clm sharded (device_map: auto) against clm on one GPU;
# 3. where vllm is installed: tests/test_gpu.py (which then requires it) and bench_gpu_backends.py.
#
# Everything goes to gpu_check.log in $OUT (the `device` tool brings that folder back) or here.
# Exit status: non-zero when a float32 comparison disagrees or a step fails.
set -uo pipefail
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/gpu-check-site}
LOG=${OUT:-.}/gpu_check.log
DEVICE=cuda
SMALL=()
if [ "${1:-}" = "--cpu" ]; then
    DEVICE=cpu
    SMALL=(--n 4 --repeats 1 --batch-size 4)
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
rc=0
{
    date -u
    if [ "$DEVICE" = cuda ]; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no GPU (nvidia-smi failed)"; exit 2; }
    fi
    # 1. the carried wheels, only those whose distribution this Python lacks
    if compgen -G ".whl/*.whl" >/dev/null; then
        missing=$("$PY" - <<'EOF'
import glob, importlib.metadata as md, os
for f in sorted(glob.glob(".whl/*.whl")):
    name = os.path.basename(f).split("-")[0]
    try:
        md.version(name)
    except md.PackageNotFoundError:
        print(f)
EOF
)
        echo "installing: ${missing:-nothing (all present)}"
        if [ -n "$missing" ]; then
            # shellcheck disable=SC2086
            "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" $missing || exit 3
        fi
    fi
    export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
    "$PY" -c "import torch, transformers, accelerate, lm_eval; print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'lm_eval', lm_eval.__version__, 'gpus', torch.cuda.device_count())" || exit 3
    # 2. clm vs lm-eval's HFLM: the tiny GPT-2 (every path, exactness), then a wider one (time, memory)
    "$PY" benchmarks/bench_gpu_vs_lm_eval.py --device "$DEVICE" --n 32 "${SMALL[@]}" || rc=1
    if [ "$DEVICE" = cuda ]; then
        "$PY" benchmarks/bench_gpu_vs_lm_eval.py --device cuda --width 1024 --layers 12 --n 64 --batch-size 16 || rc=1
    fi
    # 3. vLLM, where it is installed (the device image has none)
    if [ "$DEVICE" = cuda ] && "$PY" -c "import vllm" 2>/dev/null; then
        FEWSHOT_REQUIRE_GPU=$(nvidia-smi -L | wc -l) "$PY" -m pytest tests/test_gpu.py -q -rs -p no:cacheprovider -s || rc=1
        "$PY" benchmarks/bench_gpu_backends.py --nshot 2 || rc=1
    else
        echo "vllm: not installed here, its checks skipped"
    fi
    echo "gpu_check: exit $rc"
    exit $rc
} 2>&1 | tee "$LOG"
