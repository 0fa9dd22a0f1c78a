"""The ceiling for the serving benchmark: a bare aiohttp handler returning a constant.

Same process model as the agent: its own process, uvloop, AppRunner without an access log.
Serves both benchmarked paths, so the load generator's requests are identical.

    python -m bench.bare_server PORT
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

VALUE = b"postgres://app@db.internal:5432/app"


async def constant(request: web.Request) -> web.Response:
    return web.Response(body=VALUE, content_type="text/plain", charset="utf-8")


async def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/v1/parameters/{name:.+}", constant)
    app.router.add_get("/systemsmanager/parameters/get", constant)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    port = int(sys.argv[1])
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
