"""The upload page at ``/``: plain HTML, CSS and JS served from the package, no build step."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from schemas import catalogue as movers_catalogue

STATIC = Path(__file__).parent / "static"
CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; media-src 'self' blob: mediastream:; "
       "style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
"""Only our own files run; the page talks only to this gateway (HTTP and WebSocket)."""


async def index(_request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={
        "Content-Security-Policy": CSP, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer", "Permissions-Policy": "camera=(self), microphone=(self)",
    })


async def catalogue(_request: Request) -> JSONResponse:
    """Item names by catalogue id: results carry ids only (they must stay small), pages show names."""
    cat = movers_catalogue.load()
    items = {item_id: {"fr": item.fr, "en": item.en} for item_id, item in cat.items.items()}
    return JSONResponse({"version": cat.version, "items": items}, headers={"Cache-Control": "public, max-age=3600"})


routes = [
    Route("/", index, methods=["GET"]),
    Route("/catalogue.json", catalogue, methods=["GET"]),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]
