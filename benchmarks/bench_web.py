"""Load test of `publish web` on 127.0.0.1: requests per second, and memory under slow clients.

Builds a site from the shipped example with N subscribers, starts the real `publish web` (uvicorn) in a child
process, and drives it with an asyncio client over raw keep-alive sockets:

* one-click unsubscribe POSTs (RFC 8058), each with another subscriber's token;
* the sign-up page (GET /subscribe);
* sign-up POSTs (CSRF cookie and form; the file transport writes each confirmation mail; limits off);
* 200 slow clients (half trickle their headers, half their body, one byte a second, reconnecting when
  dropped) while a normal visitor loads the sign-up page every 0.25 s: the server's RSS and that visitor's
  waits.

Example:
    .venv/bin/python benchmarks/bench_web.py --seconds 10 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_site(root: Path, subscribers: int) -> list[str]:
    """The example site, published, with `subscribers` active subscribers; their unsubscribe tokens."""
    shutil.copy(REPO / "config.toml", root / "config.toml")
    shutil.copytree(REPO / "posts", root / "posts")
    text = (root / "config.toml").read_text(encoding="utf-8")
    for key in ("per_client_per_hour", "per_address_per_day", "per_domain_per_hour", "mails_per_hour"):
        text = re.sub(rf"^{key} = .*$", f"{key} = 0", text, flags=re.M)
    (root / "config.toml").write_text(text, encoding="utf-8")
    exe = str(Path(sys.executable).with_name("publish"))
    env = dict(os.environ, PUBLISHER_TOKEN_SECRET=SECRET)
    subprocess.run([exe, "--config", str(root / "config.toml"), "--now", "2026-03-12T20:00:00+09:00"], env=env,
                   check=True, capture_output=True)
    sys.path.insert(0, str(REPO))
    from publisher.store.sqlite import SQLiteStore
    from publisher.tokens import Secrets, make_token

    store = SQLiteStore.open(root / "state" / "publisher.sqlite3")
    tokens = []
    with store.transaction():
        for i in range(subscribers):
            sub = store.insert_subscriber(f"reader{i}@example.com", "", [], "active", "2026-01-01T00:00:00+00:00")
            tokens.append(make_token(Secrets(SECRET.encode()), sub.id, sub.email, "unsubscribe"))
    store.close()
    return tokens


class Server:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        exe = str(Path(sys.executable).with_name("publish"))
        env = dict(os.environ, PUBLISHER_TOKEN_SECRET=SECRET)
        self.log = open(root / "web.log", "ab")
        self.proc = subprocess.Popen([exe, "--config", str(root / "config.toml"), "web", "--port", str(self.port)],
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("publish web did not start")

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.log.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def load(port: int, make_request, seconds: float, connections: int) -> tuple[int, list[float], dict]:
    """Keep-alive connections sending `make_request(n)` for `seconds`; (done, latencies, status counts)."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                writer.write(make_request(next(counter)))
                status, headers, _ = await read_response(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1
                if headers.get("connection") == "close":
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return len(latencies), latencies, statuses


def one_click(tokens: list[str]):
    body = b"List-Unsubscribe=One-Click"

    def request(n: int) -> bytes:
        return (f"POST /unsubscribe/{tokens[n % len(tokens)]} HTTP/1.1\r\nHost: bench\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    return request


def signup_page(n: int) -> bytes:
    return b"GET /subscribe HTTP/1.1\r\nHost: bench\r\n\r\n"


async def signup_posts(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(signup_page(0))
    _, headers, body = await read_response(reader)
    writer.close()
    cookie = headers["set-cookie"].split(";")[0]
    csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()

    def request(n: int) -> bytes:
        form = f"csrf={csrf}&email=bench{n}%40example.org".encode()
        return (f"POST /subscribe HTTP/1.1\r\nHost: bench\r\nCookie: {cookie}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(form)}\r\n\r\n"
                ).encode() + form
    return request


def rps(server: Server, make_request, seconds: float, connections: int) -> dict:
    done, latencies, statuses = asyncio.run(load(server.port, make_request, seconds, connections))
    latencies.sort()
    return {"rps": done / seconds, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "statuses": statuses}


async def slow_clients(server: Server, count: int, seconds: float) -> dict:
    """`count` slow clients for `seconds` while a normal visitor loads the sign-up page every 0.25 s."""
    deadline = time.monotonic() + seconds
    dropped = 0
    rss = [server.rss_mib()]
    waits: list[float] = []
    failures = 0

    async def slow(kind: int) -> None:
        nonlocal dropped
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                if kind % 2:
                    writer.write(b"POST /unsubscribe/x HTTP/1.1\r\nHost: bench\r\nContent-Length: 10000\r\n\r\n")
                while time.monotonic() < deadline:
                    writer.write(b"X")
                    await writer.drain()
                    try:
                        data = await asyncio.wait_for(reader.read(1024), 1.0)
                    except TimeoutError:
                        continue
                    if not data or b"HTTP/1.1" in data:
                        dropped += 1
                        break
                writer.close()
            except OSError:
                dropped += 1
                await asyncio.sleep(0.1)

    async def visitor() -> None:
        nonlocal failures
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(signup_page(0))
                status, _, _ = await asyncio.wait_for(read_response(reader), 10)
                writer.close()
                if status != 200:
                    failures += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                failures += 1
            waits.append(time.perf_counter() - started)
            rss.append(server.rss_mib())
            await asyncio.sleep(0.25)

    await asyncio.gather(visitor(), *(slow(i) for i in range(count)))
    return {"rss_before": rss[0], "rss_peak": max(rss), "visits": len(waits), "failures": failures,
            "wait_median_ms": statistics.median(waits) * 1000, "wait_max_ms": max(waits) * 1000,
            "dropped": dropped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--slow-seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokens = build_site(root, args.subscribers)
        server = Server(root)
        try:
            rps(server, signup_page, 2, 4)  # warm up
            results: dict[str, list[dict]] = {"one-click POST": [], "sign-up page GET": [], "sign-up POST": []}
            for _ in range(args.repeat):
                results["one-click POST"].append(rps(server, one_click(tokens), args.seconds, args.connections))
                results["sign-up page GET"].append(rps(server, signup_page, args.seconds, args.connections))
                request = asyncio.run(signup_posts(server.port))
                results["sign-up POST"].append(rps(server, request, args.seconds, args.connections))
            for name, runs in results.items():
                print(f"{name:18} median {statistics.median(r['rps'] for r in runs):7.0f} req/s   "
                      f"p50 {statistics.median(r['p50_ms'] for r in runs):6.1f} ms   "
                      f"p99 {statistics.median(r['p99_ms'] for r in runs):6.1f} ms   statuses {runs[-1]['statuses']}")
            slow = asyncio.run(slow_clients(server, args.slow, args.slow_seconds))
            print(f"{args.slow} slow clients for {args.slow_seconds:.0f} s: RSS {slow['rss_before']:.1f} → peak "
                  f"{slow['rss_peak']:.1f} MiB; a normal visitor: {slow['visits']} visits, {slow['failures']} failed, "
                  f"median {slow['wait_median_ms']:.1f} ms, max {slow['wait_max_ms']:.1f} ms; "
                  f"slow connections dropped by the server: {slow['dropped']}")
            print(f"RSS after: {server.rss_mib():.1f} MiB")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
