"""A TCP forwarder standing in for the load balancer in front of the web processes.

Each client connection goes to the first backend, in the order given, that accepts a
connection, and stays there (HTTP keep-alive and sockets alike), as a load balancer does
in TCP mode with its health checks failing over. When the backend's end closes (its
process died), the client's end is closed too, so the client sees the connection drop and
connects again: through the forwarder, to a backend that is still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Routed:
    """One client connection: the backend port it went to and its first request line."""

    port: int
    request: str


class FailoverProxy:
    def __init__(self, backends: list[int], host: str = "127.0.0.1") -> None:
        self.backends = list(backends)
        self.host = host
        self.routed: list[Routed] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="failover-proxy", daemon=True)
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def went_to(self, port: int, path: str) -> int:
        """How many connections whose first request was for ``path`` went to ``port``."""
        return sum(1 for r in list(self.routed) if r.port == port and f" {path}" in r.request)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            connections = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in connections:
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _backend(self) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for port in self.backends:
            with contextlib.suppress(OSError, TimeoutError):
                reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, port), timeout=2)
                return port, reader, writer
        return None

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        try:
            # HTTP clients speak first: the first bytes name the request, for the test to read.
            first = await client_reader.read(65536)
            found = await self._backend() if first else None
            if found is None:
                return
            port, backend_reader, backend_writer = found
            self._writers.add(backend_writer)
            self.routed.append(Routed(port, first.split(b"\r\n", 1)[0].decode("latin-1")))
            backend_writer.write(first)
            pipes = [
                asyncio.ensure_future(self._pipe(client_reader, backend_writer)),
                asyncio.ensure_future(self._pipe(backend_reader, client_writer)),
            ]
            # Either end closing ends the connection: a dead backend drops its clients.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for pipe in pipes:
                pipe.cancel()
            backend_writer.close()
            self._writers.discard(backend_writer)
        except (ConnectionError, OSError):
            pass
        finally:
            client_writer.close()
            self._writers.discard(client_writer)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                target.write(data)
                await target.drain()
