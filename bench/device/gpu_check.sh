#!/usr/bin/env bash
# One run on a CUDA host (under 8 minutes): install carried wheels, run the CUDA-marked tests (NVDEC against the
# CPU decoders on real footage, the CUDA-graph head), print the parity table, load the served path through HTTP
# (bench/http_load.py: 1-16 client processes, default settings, the NVDEC limit in the same run; `intake`: the
# same with TZN_INTAKE_WORKERS=4), NVDEC's parts cut at keyframes against even cuts (bench/nvdec_parts.py), and,
# given the time, the head's GPU table and the TensorRT check.
#
#   bench/device/gpu_check.sh [OUT_DIR] [SECTIONS]     (default OUT_DIR: $OUT or /tmp/tzn-gpu;
#                                                        SECTIONS: any of tests,parity,http,parts,head,tensorrt,
#                                                        and intake, which runs only when named)
#
# The GPU machine may be offline. Missing Python packages are installed only from wheels carried in the working
# tree (TZN_WHEELS, default .whl; nothing is fetched), into /tmp/tzn-site. What a host with torch 2.11 (cu130)
# and Python 3.12 needs, fetched on a connected machine with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl \
#     torchcodec==0.14.0 decord2==3.4.0 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 \
#     annotated-types annotated-doc typing-inspection typing-extensions python-dotenv fastapi==0.165.0 \
#     starlette==1.10.0 anyio opentelemetry-api==1.45.2 uvicorn==0.54.0 h11 httptools==0.9.0 \
#     python-multipart==0.0.34 fastapi-offline==1.7.7
# (torchcodec 0.11, the release paired with torch 2.11, has no CUDA build on PyPI; 0.14's CUDA build loads and
# decodes with NVDEC under torch 2.11.) torchcodec needs FFmpeg 4-8 shared libraries: without system ones this
# script points it at the FFmpeg 8 that the decord2 wheel bundles. The parity files (tests/conftest.py's
# parity_media: real footage in every format the decoders must agree on) come from TZN_PARITY_MEDIA (default
# .media), made on a machine with ffmpeg: python -m tests.parity_media .media
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3}"
WHEELS="${TZN_WHEELS:-.whl}"
OUT_DIR="${1:-${OUT:-/tmp/tzn-gpu}}"
SECTIONS="${2:-tests,parity,http,parts,head,tensorrt}"
export TZN_PARITY_MEDIA="${TZN_PARITY_MEDIA:-$PWD/.media}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
wants() { [[ ",$SECTIONS," == *",$1,"* ]]; }

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
"$PYTHON" -c "import torch, torchcodec, uvicorn; print('torch', torch.__version__, '| torchcodec', torchcodec.__version__)"

if wants tests; then
    echo "== CUDA-marked tests: NVDEC against the CPU decoders, the CUDA-graph head"
    timeout 240 "$PYTHON" -m pytest -q -rs -m cuda -p no:cacheprovider tests/engine/test_nvdec.py \
        tests/model/test_graphs.py tests/model/test_postprocess.py 2>&1 | tee "$OUT_DIR/cuda_tests.log" | tail -30
fi

if wants parity; then
    echo "== parity table: NVDEC (or the CPU decoder a format goes to) against decord and torchcodec on the CPU"
    timeout 150 "$PYTHON" bench/device/parity.py 2>&1 | tee "$OUT_DIR/parity.log" | grep -v "^WARNING"
fi

if wants http; then
    echo "== the served path through HTTP: tzn serve (default settings), client processes, the NVDEC limit"
    timeout 330 "$PYTHON" bench/http_load.py --seconds 60 --clients 1,2,4,8,16 --requests 2 --out "$OUT_DIR/http" \
        2>&1 | tee "$OUT_DIR/http_load.log" | grep -v "^WARNING"
    tail -40 "$OUT_DIR/http/server.log" > "$OUT_DIR/server_tail.log" 2>/dev/null || true
fi

if wants intake; then
    echo "== the same with intake processes (TZN_INTAKE_WORKERS=4: uploads received beside the engine's process)"
    video="$OUT_DIR/http/video_60s_720p.mp4"  # the http section's file, when it ran
    timeout 240 "$PYTHON" bench/http_load.py --seconds 60 --clients 1,8,16 --requests 2 --out "$OUT_DIR/http-intake" \
        --env TZN_INTAKE_WORKERS=4 $([[ -f "$video" ]] && echo --video "$video") 2>&1 \
        | tee "$OUT_DIR/http_intake.log" | grep -v "^WARNING"
fi

if wants parts; then
    echo "== NVDEC's parts: cut at keyframes against even cuts (frames decoded, the pool's time), one 60 s 720p file"
    video="$OUT_DIR/http/video_60s_720p.mp4"  # the http section's file, when it ran
    timeout 120 "$PYTHON" bench/nvdec_parts.py --repeats 3 $([[ -f "$video" ]] && echo --video "$video") 2>&1 \
        | tee "$OUT_DIR/nvdec_parts.log" | grep -v "^WARNING"
fi

if wants head; then
    echo "== the head's GPU table"
    timeout 150 "$PYTHON" bench/device/gpu_table.py --out "$OUT_DIR" 2>&1 | tee "$OUT_DIR/gpu_table.log" | tail -30
fi

if wants tensorrt; then
    echo "== TensorRT"
    if "$PYTHON" -c "import tensorrt" 2>/dev/null; then
        "$PYTHON" bench/device/gpu_check.py 2>&1 | tee "$OUT_DIR/tensorrt.log" | tail -20
        "$PYTHON" -m pytest tests/export/test_tensorrt.py -q -m tensorrt -rs 2>&1 | tail -5
    else
        echo "TensorRT is not installed here and no tensorrt wheel was carried: engine build and parity NOT checked"
    fi
fi
