"""GET /: the web page (upload a video, see its timeline), one HTML file with no external resources."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

INDEX_PAGE = Path(__file__).resolve().parents[1] / "static" / "index.html"

router = APIRouter()


@router.get(
    "/",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}, "description": "The web page: upload a video, see its timeline"}},
)
async def index() -> HTMLResponse:
    return HTMLResponse(INDEX_PAGE.read_text(encoding="utf-8"))
