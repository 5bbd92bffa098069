"""A fast loopback file server for the hot-update figures (run as its own process).

    python bench/fileserver.py --dir DIR --port-file PATH

Serves the files of DIR at ``/files/<name>`` with aiohttp's ``FileResponse`` (``sendfile``, with a
Content-Length) on 127.0.0.1 and a free port, which it writes to PATH once it listens. The same
server feeds kidecar and ``curl``, so their throughputs are comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from pathlib import Path

from aiohttp import web


async def serve(directory: Path, port_file: Path) -> None:
    async def send(request: web.Request) -> web.StreamResponse:
        path = directory / request.match_info["name"]
        if "/" in request.match_info["name"] or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/files/{name}", send)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.replace(port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.dir, args.port_file))


if __name__ == "__main__":
    main()
