# TZN service image: `docker build --target gpu -t tzn:gpu .` or `docker build --target cpu -t tzn:cpu .`
# (gpu, the last stage, is the default target).
#
# Why the gpu image is based on python:3.11-slim and not on an nvidia/cuda image: torch 2.14.1,
# onnxruntime-gpu 1.31.1 and tensorrt-cu13 11.4 from PyPI bring their CUDA 13 user-space libraries
# (cudart, cuBLAS, cuDNN, ...) as pip wheels and load those; a cuda/cudnn-runtime base image would add a
# second, unused copy of several GB. The host needs an NVIDIA driver for CUDA 13 (>= 580) and the NVIDIA
# Container Toolkit, which mounts the driver into the container (NVIDIA_* variables below).
#
# Model files are mounted at /models (docker-compose.yml), or baked in at build time from a folder of the
# build context: `--build-arg MODELS_DIR=deploy/models` (the default holds only a README).
# decord2's wheel bundles its FFmpeg, and python:3.11-slim (Debian) already has the libstdc++ and zlib it
# links against; the only apt packages are FFmpeg's shared libraries, for torchcodec (NVDEC decoding). No secret enters a layer: TZN_API_KEY is set at
# run time.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# The project itself as a wheel (pure Python, no compiler needed).
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model/ model/
COPY training/ training/
COPY export/ export/
COPY engine/ engine/
COPY service/ service/
COPY viz/ viz/
COPY raybatch/ raybatch/
COPY tzn.py ./
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Dependencies come from pyproject.toml alone, so this layer is rebuilt only when they change.
FROM ${PYTHON_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml .
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
open('/src/requirements.txt', 'w').write('\n'.join(deps) + '\n'); \
open('/src/requirements-gpu.txt', 'w').write('\n'.join(d for d in deps if not d.startswith('onnxruntime==')) + '\n')"

FROM ${PYTHON_IMAGE} AS venv-cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=requirements /src/requirements.txt /tmp/requirements.txt
# CPU wheels of torch first (no CUDA libraries); `torch==2.14.1` in the requirements accepts 2.14.1+cpu.
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1+cpu torchvision==0.29.1+cpu \
    && pip install --no-cache-dir -r /tmp/requirements.txt
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl

FROM ${PYTHON_IMAGE} AS venv-gpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=requirements /src/requirements-gpu.txt /tmp/requirements.txt
# PyPI's torch is the CUDA 13 build; onnxruntime-gpu replaces the CPU onnxruntime (same module name).
RUN pip install --no-cache-dir -r /tmp/requirements.txt \
        onnxruntime-gpu==1.31.1 \
        tensorrt-cu13==11.4.0.106 tensorrt-cu13-libs==11.4.0.106 tensorrt-cu13-bindings==11.4.0.106
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl

FROM ${PYTHON_IMAGE} AS runtime
ARG MODELS_DIR=deploy/models
# FFmpeg's shared libraries (Debian bookworm: FFmpeg 5) for torchcodec, which decodes with NVDEC on GPU hosts
# (engine/video/nvdec.py; the driver's libnvcuvid comes in with NVIDIA_DRIVER_CAPABILITIES' "video"), and the
# ffmpeg program, which remuxes what the decoders cannot open or seek right: MPEG-TS/M2TS/PS whose start they
# cannot reach, Ogg, WebM recorded live (engine/video/readers.py, `playable`; without it such uploads are refused).
# Installed here, while the stage still runs as root, so the cpu image carries them too (unused there).
# Unpinned: Debian's security updates of FFmpeg replace the exact version, which would break the build.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libavcodec59 libavformat59 libavutil57 libavdevice59 libavfilter8 libswscale6 libswresample4 ffmpeg \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 tzn \
    && useradd --system --uid 10001 --gid tzn --create-home --home-dir /home/tzn tzn \
    && mkdir -p /var/lib/tzn/jobs && chown -R 10001:10001 /var/lib/tzn
COPY --chown=10001:10001 ${MODELS_DIR}/ /models/
# Without TZN_CHECKPOINT the service runs the bundled demo model; point it at /models/... to serve yours.
# Jobs (POST /jobs): their SQLite store and spooled uploads; docker-compose.yml mounts a volume here.
ENV TZN_JOBS_DIR=/var/lib/tzn/jobs \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/tzn
EXPOSE 8000
# Ready only once the model is loaded and warmed up; urlopen raises (exit 1) on any non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]
# Numeric, so that runtimes enforcing non-root (Kubernetes runAsNonRoot) can check it.
USER 10001:10001
CMD ["tzn", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM runtime AS cpu
COPY --from=venv-cpu /opt/venv /opt/venv

FROM runtime AS gpu
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video
COPY --from=venv-gpu /opt/venv /opt/venv
