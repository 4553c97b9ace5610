"""Video in, frames out: see engine/video/decode.py (the CPU decoders, isolated) and nvdec.py (the GPU)."""
