"""Serving the pages with uvicorn, plus the two guards uvicorn lacks: a deadline for a request's headers (a
client that trickles them in is dropped, so slow clients cannot hold connections for ever) and the security
headers on the 400 answers uvicorn writes itself for requests it cannot parse."""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import Config


def guarded_protocol(header_timeout: float, headers: list[tuple[bytes, bytes]]) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header deadline and security headers on its own 400 answers."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _waiting_cycle: Any = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            """Start the deadline for the next request's headers (the cycle now current is the one before it)."""
            self._disarm()
            self._waiting_cycle = self.cycle
            self._header_timer = self.loop.call_later(header_timeout, self._expired)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expired(self) -> None:
            self._header_timer = None
            if self.cycle is self._waiting_cycle and not self.transport.is_closing():
                self.transport.close()  # no complete request headers in time

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not self._waiting_cycle:
                self._disarm()  # a request's headers arrived

        def on_response_complete(self) -> None:
            if not self.transport.is_closing():
                self._arm()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            base = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
            try:
                self.transport.write(self.conn.send(h11.Response(status_code=400, headers=base + headers,
                                                                 reason=b"Bad Request")) or b"")
                self.transport.write(self.conn.send(h11.Data(data=b"Bad Request")) or b"")
                self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
            except h11.LocalProtocolError:
                pass  # a response was already under way: just close
            self.transport.close()

    return GuardedH11Protocol


def uvicorn_config(asgi: Any, cfg: Config, host: str, port: int, headers: list[tuple[bytes, bytes]],
                   log_level: str = "info") -> uvicorn.Config:
    """uvicorn settings for the pages: the security headers on every answer (uvicorn's own 500 and 503
    included; `asgi` must not add them again), no forwarded headers (the app reads them from trusted
    proxies only), no access log of its own (the app's redacts tokens) and no log format of its own, a
    connection cap, the guarded protocol."""
    web = cfg.web
    return uvicorn.Config(asgi, host=host, port=port, http=guarded_protocol(web.request_timeout, headers),
                          headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers],
                          proxy_headers=False, server_header=False, access_log=False, log_level=log_level,
                          log_config=None,  # uvicorn's lines go through the root logger, stamped like ours
                          limit_concurrency=web.max_connections, timeout_keep_alive=5,
                          h11_max_incomplete_event_size=16 * 1024, lifespan="off")


def serve(asgi: Any, cfg: Config, host: str, port: int, headers: list[tuple[bytes, bytes]]) -> None:
    """Serve `asgi` (built with `create_app(app, server_adds_headers=True)`) until SIGINT or SIGTERM."""
    uvicorn.Server(uvicorn_config(asgi, cfg, host, port, headers)).run()
