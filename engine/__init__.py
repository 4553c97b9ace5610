"""The model runner, importable without FastAPI: video in, actions out (docs/design.md, "Layout").

engine/localizer.py   Localizer: frames -> features -> head -> segments, with cost per stage
engine/video/         decoding: the isolated decoder child, decord / torchcodec / NVDEC, the one sampling
                      and resize rule, the container precheck, the stream's info
engine/features/      the one clip windower and the feature extractor (CPU and CUDA alike)
engine/heads.py       the onnxruntime and TensorRT heads beside model/head.py's torch head
engine/settings.py    what a Localizer is built from; the limits of one piece of work
"""
