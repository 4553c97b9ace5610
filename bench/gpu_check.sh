#!/usr/bin/env bash
# GPU host check of the TensorRT path: build an engine from a THUMOS-size export, compare with onnxruntime.
#
#   bench/gpu_check.sh [--fp16] [--lengths 1 37 256 2304 5000]
#
# The GPU machine has no internet. Missing packages (tensorrt; onnxruntime-gpu is optional) are installed
# only from wheels carried in the working tree: put them in ./wheels (or point TZN_WHEELS at a folder),
# e.g. on a connected machine `pip download --only-binary=:all: --python-version 3.11 -d wheels tensorrt-cu12`
# (tensorrt-cu12, tensorrt-cu12-libs, tensorrt-cu12-bindings). Nothing is fetched from an index.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
WHEELS="${TZN_WHEELS:-wheels}"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU visible to torch; nothing to check" >&2
    exit 2
fi
if ! "$PYTHON" -c "import tensorrt" 2>/dev/null; then
    if compgen -G "$WHEELS/tensorrt*.whl" >/dev/null; then
        echo "gpu_check: installing TensorRT from $WHEELS (offline)"
        "$PYTHON" -m pip install --no-index --find-links "$WHEELS" tensorrt-cu12 || \
            "$PYTHON" -m pip install --no-index --find-links "$WHEELS" tensorrt
    else
        echo "gpu_check: TensorRT is not installed and $WHEELS/ holds no tensorrt wheels (this host is offline);" >&2
        echo "           add them to the working tree as described at the top of this script" >&2
        exit 3
    fi
fi
"$PYTHON" -c "import tensorrt; print('TensorRT', tensorrt.__version__)"
PYTHONPATH=. "$PYTHON" bench/gpu_check.py "$@"
PYTHONPATH=. "$PYTHON" -m pytest tests/export/test_tensorrt.py -q -m tensorrt -rs
