"""The HTTP ceiling for goal 3: ``python -m bench.echo PORT`` serves PUTs that only read their body.

Same stack as the gateway (uvicorn, Starlette, ``request.stream()``) and nothing else, so the gap
between it and the gateway is what DodoLens adds, and its gap to raw XADD is HTTP's own cost.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dodolens.server import HttpLimits, server_config


async def drain(request: Request) -> JSONResponse:
    size = 0
    async for part in request.stream():
        size += len(part)
    return JSONResponse({"bytes": size})


app = Starlette(routes=[Route("/sessions/{sid}/chunks/{index}", drain, methods=["PUT"])])

if __name__ == "__main__":
    uvicorn.Server(server_config(app, host="127.0.0.1", port=int(sys.argv[1]), limits=HttpLimits(),
                                 log_level="warning")).run()
