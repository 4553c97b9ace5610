"""The answer's per-position traces on request (`include=depth,boundary`): parsing the option, and the
traces' shapes from the engine's `PositionTrace`."""

from __future__ import annotations

from engine.trace import PositionTrace
from service.errors import IncludeError
from service.schemas import INCLUDE_CHOICES, BoundaryTrace, DepthTrace


def parse_include(text: str | None) -> frozenset[str]:
    """'depth,boundary' -> {'depth', 'boundary'}; None or '' -> {}."""
    if not text or not text.strip():
        return frozenset()
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in INCLUDE_CHOICES]
    if unknown:
        raise IncludeError(f"include={text!r}: choose from {', '.join(INCLUDE_CHOICES)}, comma-separated")
    return frozenset(names)


def depth_trace(positions: PositionTrace, zoom: dict | None = None) -> DepthTrace:
    """The ATR depth per point; with a zoom answer's `zoom`, also the frame rate the backbone saw there."""
    rates = None if zoom is None else positions.zoom_points(zoom)
    return DepthTrace(**positions.depth_points(), sample_fps=rates)


def boundary_trace(positions: PositionTrace) -> BoundaryTrace | None:
    """None for models without a BDR head."""
    points = positions.boundary_points()
    return None if points is None else BoundaryTrace(**points)
