"""Real servers on 127.0.0.1 for tests: an aiosmtpd SMTP server that records what arrives."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Recorder:
    """An aiosmtpd handler: keeps every accepted message; can refuse or stall chosen recipients."""

    messages: list = field(default_factory=list)
    rcpt_codes: dict[str, list[str]] = field(default_factory=dict)  # address → replies to give, in order
    data_codes: dict[str, list[str]] = field(default_factory=dict)
    delay: float = 0.0
    drop_after_data: set[str] = field(default_factory=set)  # accept the message, then hang up before replying

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        codes = self.rcpt_codes.get(address)
        if codes:
            return codes.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        for rcpt in envelope.rcpt_tos:
            codes = self.data_codes.get(rcpt)
            if codes:
                return codes.pop(0)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        if self.drop_after_data & set(envelope.rcpt_tos):
            self.drop_after_data -= set(envelope.rcpt_tos)
            server.transport.abort()  # the connection drops after the final '.', before the 250 reply
            return "421 closing"
        return "250 2.0.0 queued as test"

    def parsed(self):
        return [message_from_bytes(content, policy=policy.default) for _, _, content in self.messages]

    def recipients(self) -> list[str]:
        return [rcpt for _, rcpts, _ in self.messages for rcpt in rcpts]

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)


class SMTPServer:
    """aiosmtpd on a free loopback port, in a background thread."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.controller.loop.is_running():
            self.controller.stop()

    def stop(self) -> None:
        self.controller.stop()

    def restart(self) -> None:
        """Start a new server on the same port, keeping what was recorded."""
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self.controller.start()


def wait_port_closed(port: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)


class HTTPSServer:
    """A small https server on 127.0.0.1 (certificate from tests.pki) serving fixed answers by path, recording
    every request path; plays the SNS certificate host and the SubscribeURL."""

    def __init__(self, cert: str, key: str) -> None:
        import ssl
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.routes: dict[str, bytes] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                body = outer.routes.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> HTTPSServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class PublishWeb:
    """`publish web` in a subprocess on a free loopback port; its stdout and stderr (the logs) kept in a file."""

    def __init__(self, config, log_path, env: dict | None = None) -> None:
        import os
        import sys
        from pathlib import Path

        self.exe = str(Path(sys.executable).with_name("publish"))
        self.config, self.log_path = str(config), log_path
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> PublishWeb:
        import subprocess

        import httpx

        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.exe, "--config", self.config, "web", "--port", str(self.port)],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"publish web exited {self.proc.returncode}: {self.log()}")
            try:
                httpx.get(self.base + "subscribe", timeout=2)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"publish web did not answer within 30 s: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=20)

    def log(self) -> str:
        with open(self.log_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def raw(self, data: bytes, timeout: float = 10.0, read: bool = True) -> bytes:
        """Send raw bytes on a fresh connection; what came back before the server closed or `timeout` passed."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            if not read:
                return b""
            return read_until_closed(sock, timeout)


def read_until_closed(sock, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    chunks = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
