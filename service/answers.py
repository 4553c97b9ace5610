"""The /localize answer (and a job's result, and `tzn localize`'s output) from the engine's Localization."""

from __future__ import annotations

from engine.localizer import Localization, Localizer
from engine.video.info import VideoSummary
from service.schemas import Flops, LocalizeResponse, ModelInfo, Segment, Timing
from service.trace import boundary_trace, depth_trace


def localize_answer(
    result: Localization, localizer: Localizer, request_id: str, include: frozenset[str] = frozenset()
) -> LocalizeResponse:
    """`include` adds the per-position traces ("depth", "boundary") a timeline needs, copied from the device only
    then."""
    positions = result.positions() if include else None
    return LocalizeResponse(
        request_id=request_id,
        video=VideoSummary(**result.info.model_dump()),
        segments=[Segment(**segment) for segment in result.segments],
        model=ModelInfo(**localizer.model_info(result.decoder)),
        timing_ms=Timing(**result.timing_ms),
        flops=Flops(**result.flops),
        realtime_factor=result.realtime_factor,
        depth=depth_trace(positions, result.zoom) if "depth" in include else None,
        boundary=boundary_trace(positions) if "boundary" in include else None,
        zoom=result.zoom,
    )


def answer_json(
    result: Localization, localizer: Localizer, request_id: str, include: frozenset[str] = frozenset()
) -> dict:
    return localize_answer(result, localizer, request_id, include).model_dump(mode="json", exclude_none=True)
