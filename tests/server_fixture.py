"""A real uvicorn server on loopback running carbonsched's ASGI app, for the API tests and the
benchmark: ``with ApiServer(config) as srv: httpx.get(srv.url + "/healthz")``."""
from __future__ import annotations

import threading
import time

import uvicorn

from carbonsched.server.app import create_app
from pgserver import free_port


class ApiServer:
    def __init__(self, config):
        self.app = create_app(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ApiServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.app.app.state.stores.close()
