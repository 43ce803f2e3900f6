"""The page's web server: uvicorn (a kept ASGI server) in a thread of its own, on a
socket of 127.0.0.1 bound first, so that a port in use is a clear error."""

from __future__ import annotations

import errno
import signal
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette

from tonic.errors import TonicError

HOST = "127.0.0.1"


class WebServer:
    def __init__(self, app: Starlette, port: int) -> None:
        self.sock = _bound(port)
        self.port = int(self.sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._serve, name="tonic-web", daemon=True)

    def _serve(self) -> None:
        # Ctrl-C and SIGTERM are the main thread's (see observe/observer.py's reader).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        self.server.run(sockets=[self.sock])

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise TonicError("the web server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(3)
        self.sock.close()


def _bound(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise TonicError(
                f"port {port} is in use; choose another (--port N), or --port 0 for a free one"
            ) from None
        raise TonicError(f"cannot listen on {HOST}:{port}: {err.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock
