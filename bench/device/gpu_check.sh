#!/usr/bin/env bash
# One run on a CUDA host (< 8 minutes): install carried wheels, run every CUDA-marked test, build and check
# TensorRT where it is installed, time Soft-NMS (bench/postprocess.py), print the GPU table (bench/device/gpu_table.py).
#
#   bench/device/gpu_check.sh [OUT_DIR]        (logs and gpu_table.json land in OUT_DIR, default $OUT or /tmp/tzn-gpu)
#
# The GPU machine may be offline. Missing Python packages are installed only from wheels carried in the
# working tree (TZN_WHEELS, default .whl; nothing is fetched), into /tmp/tzn-site. What a host with torch
# 2.11 (cu130) needs, fetched on a connected machine with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl \
#     torchcodec==0.14.0 decord2==3.4.0 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 \
#     annotated-types typing-inspection python-dotenv fastapi==0.165.0 starlette==1.10.0 opentelemetry-api==1.45.2
# (torchcodec 0.11, the release paired with torch 2.11, has no CUDA build on PyPI; 0.14's CUDA build was seen
# to load and decode with NVDEC under torch 2.11.) torchcodec needs FFmpeg 4-8 shared libraries: without
# system ones this script points it at the FFmpeg 8 that the decord2 wheel bundles.
# TensorRT is checked only if `import tensorrt` works (or tensorrt wheels are carried, see bench/device/gpu_check.py).
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
WHEELS="${TZN_WHEELS:-.whl}"
OUT_DIR="${1:-${OUT:-/tmp/tzn-gpu}}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU visible to torch; nothing to check" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/tzn-site \
        "$WHEELS"/*.whl || { echo "gpu_check: installing the carried wheels failed" >&2; exit 3; }
    export PYTHONPATH="$PYTHONPATH:/tmp/tzn-site"
fi
if ! ldconfig -p | grep -q "libavcodec.so"; then
    bundled=$("$PYTHON" -c "import decord, pathlib; print(pathlib.Path(decord.__file__).parents[1] / 'decord2.libs')")
    mkdir -p /tmp/tzn-ffmpeg
    for lib in "$bundled"/lib{avcodec,avformat,avutil,avdevice,avfilter,swscale,swresample}-*.so*; do
        base=$(basename "$lib"); stem=${base%%-*}; version=${base##*.so.}
        ln -sf "$lib" "/tmp/tzn-ffmpeg/$stem.so.${version%%.*}"
    done
    export LD_LIBRARY_PATH="/tmp/tzn-ffmpeg:$bundled${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "gpu_check: no system FFmpeg; torchcodec uses decord2's bundled FFmpeg ($bundled)"
fi
"$PYTHON" -c "import torch, torchcodec; print('torch', torch.__version__, '| torchcodec', torchcodec.__version__)"

echo "== CUDA-marked tests"
"$PYTHON" -m pytest -q -rs -m cuda -p no:cacheprovider --continue-on-collection-errors tests/model tests/service/test_gpu_features.py \
    tests/service/test_torchcodec_video.py tests/service/test_gpu_pipeline.py tests/training 2>&1 | tee "$OUT_DIR/cuda_tests.log" | tail -25

echo "== TensorRT"
if "$PYTHON" -c "import tensorrt" 2>/dev/null; then
    "$PYTHON" bench/device/gpu_check.py 2>&1 | tee "$OUT_DIR/tensorrt.log" | tail -20
    "$PYTHON" -m pytest tests/export/test_tensorrt.py -q -m tensorrt -rs 2>&1 | tail -5
else
    echo "TensorRT is not installed here and no tensorrt wheel was carried: engine build and parity NOT checked"
fi

echo "== Soft-NMS: the tensor-op loop on CPU and CUDA against the NumPy soft_nms"
"$PYTHON" bench/postprocess.py --random-only --repeats 5 2>&1 | tee "$OUT_DIR/postprocess.log"

echo "== GPU table"
"$PYTHON" bench/device/gpu_table.py --out "$OUT_DIR" 2>&1 | tee "$OUT_DIR/gpu_table.log"
