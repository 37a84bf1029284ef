#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on a GPU machine that has torch, transformers and accelerate
# but nothing else of ours and no network (the `device` machines): lm-eval (the reference) and the pure-
# Python packages that `fewshot_eval.evaluate.backends.clm`, lm-eval's HFLM and the benchmark import beyond
# those three (found by running benchmarks/bench_gpu_vs_lm_eval.py --device cpu in a venv holding only them).
# All pure Python (py3-none-any; antlr4's 4.9.3 is an sdist only, so it is built into a wheel here),
# about 10 MB together, within the 64 MiB a `device` call may carry. Run where pip can reach an index:
#
#   bash benchmarks/gpu_wheels.sh            # -> .whl/ (ignored by git; the `device` tool's carry: [".whl"])
#   bash benchmarks/gpu_wheels.sh DIR
#
# gpu_check.sh installs them with `pip install --no-index --no-deps` (lm-eval's declared dependencies,
# datasets and pyarrow among them, are not needed for HFLM and would not fit).
set -euo pipefail
DEST=${1:-.whl}
PY=${PYTHON:-python3}
mkdir -p "$DEST"
# pinned to what the project's tests run (pyproject.toml; lm-eval 0.4.13 is the reference version). The last
# five are in the device image already (gpu_check.sh installs only what is missing), not in a bare venv.
WHEELS=(lm_eval==0.4.13 hydra-core==1.3.8 omegaconf==2.3.1 dill==0.4.1
        requests==2.34.2 urllib3==2.8.0 certifi==2026.10.19.post1 charset-normalizer==3.5.3 idna==3.21)
SDISTS=(antlr4-python3-runtime==4.9.3)
# pure-Python wheels only (any Python >= 3.10, any platform: the device's Python need not be this one)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 --implementation py --abi none --platform any \
    -d "$DEST" "${WHEELS[@]}"
"$PY" -m pip wheel -q --no-deps -w "$DEST" "${SDISTS[@]}"
rm -f "$DEST"/*.tar.gz
du -ch "$DEST"/*.whl | tail -1
ls "$DEST"
