"""Digest throughput: the full send path against a bare smtplib loop, over SMTP and an HTTP batch API.

Usage: python benchmarks/bench_digest.py [--subscribers 100000] [--baseline 20000] [--workdir benchmarks/work]

Everything runs on 127.0.0.1: an aiosmtpd sink and a SendGrid-like HTTP sink, each in its own process.
Reported: messages per second of `publish digest --send` (render per subscriber, ledger, send) and of a
plain smtplib loop sending one pre-built message over one connection, and peak RSS of each sender.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import Process, Value
from pathlib import Path

NOW = "2026-03-16T09:00:00+09:00"
CATEGORIES = ["投資分析", "半導体", "市場動向", "政策", "導入事例", "Research"]
MIXES = [[], ["半導体", "Research"], ["投資分析", "市場動向", "政策"]]
SECRET = "benchmark-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smtp_sink(port: int, count) -> None:
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            with count.get_lock():
                count.value += 1
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    asyncio.run(asyncio.sleep(10**6))


def http_sink(port: int, count) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with count.get_lock():
                count.value += len(body["personalizations"])
            self.send_response(202)
            self.send_header("X-Message-Id", "bench")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def start(target, port: int) -> tuple[Process, object]:
    count = Value("l", 0)
    proc = Process(target=target, args=(port, count), daemon=True)
    proc.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, count
        time.sleep(0.05)
    raise SystemExit("sink did not start")


def make_site(root: Path, subscribers: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    (root / "posts").mkdir(parents=True)
    repo = Path(__file__).resolve().parent.parent
    shutil.copy(repo / "config.toml", root / "config.toml")
    rng = random.Random(7)
    for i in range(30):
        cats = ", ".join(f'"{c}"' for c in rng.sample(CATEGORIES, rng.choice((1, 2))))
        (root / "posts" / f"post-{i:02d}.md").write_text(
            f'---\ntitle: "ベンチマーク記事 {i}：AIインフラの最新動向"\ndate: 2026-03-{10 + i % 5:02d} 10:{i:02d}:00 +0900\n'
            f'categories: [{cats}]\nexcerpt: "**第{i}回**の要約です。データセンター投資と半導体の動きを解説します。"\n'
            f"reading_time: 5\n---\n\n本文です。\n", encoding="utf-8")
    run(root, "--now", "2026-03-15T12:00:00+09:00")
    db = root / "state" / "publisher.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO subscribers (email, name, categories, status, joined, updated) VALUES (?, ?, ?, 'active', ?, ?)",
            ((f"reader{i:06d}@example.com", f"読者 {i}", json.dumps(MIXES[i % 3], ensure_ascii=False),
              "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00") for i in range(subscribers)))


def configure(root: Path, transport: str, smtp_port: int, http_port: int) -> None:
    text = (root / "config.toml").read_text(encoding="utf-8")
    text = text.replace('transport = "file"', f'transport = "{transport}"')
    text = text.replace("port = 587", f"port = {smtp_port}").replace('security = "starttls"', 'security = "none"')
    text = text.replace('api_url = ""', f'api_url = "http://127.0.0.1:{http_port}"')
    (root / "config.toml").write_text(text, encoding="utf-8")


def reset_ledger(root: Path) -> None:
    with sqlite3.connect(root / "state" / "publisher.sqlite3") as conn:
        conn.execute("DELETE FROM ledger")
        conn.execute("DELETE FROM digests")


def run(root: Path, *args: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `publish` run."""
    exe = Path(sys.executable).with_name("publish")
    env = dict(os.environ, PUBLISHER_TOKEN_SECRET=SECRET, PUBLISHER_API_KEY="bench")
    start_time = time.perf_counter()
    proc = subprocess.Popen([str(exe), "--config", str(root / "config.toml"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start_time
    output = proc.stdout.read().decode()
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"publish {' '.join(args)} failed:\n{output}")
    return elapsed, usage.ru_maxrss / 1024


def baseline(root: Path, port: int, count: int) -> tuple[float, float]:
    """A plain smtplib loop: one pre-built digest message, one connection; messages per second."""
    run(root, "--now", NOW, "digest", "--preview", str(root / "preview"))
    message = next((root / "preview").glob("*.eml")).read_bytes()
    conn = smtplib.SMTP("127.0.0.1", port)
    start_time = time.perf_counter()
    for i in range(count):
        conn.sendmail("digest@news.example.jp", [f"reader{i:06d}@example.com"], message)
    elapsed = time.perf_counter() - start_time
    conn.quit()
    import resource

    return count / elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100_000])
    parser.add_argument("--baseline", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "work")
    args = parser.parse_args()
    smtp_port, http_port = free_port(), free_port()
    smtp_proc, smtp_count = start(smtp_sink, smtp_port)
    http_proc, http_count = start(http_sink, http_port)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    print("| path | subscribers | messages | seconds | msg/s | peak RSS MiB |\n|---|---|---|---|---|---|")
    try:
        root = args.workdir / "digest-site"
        for subscribers in args.subscribers:
            make_site(root, subscribers)
            configure(root, "smtp", smtp_port, http_port)
            rate, rss = baseline(root, smtp_port, min(args.baseline, subscribers))
            print(f"| bare smtplib loop (baseline) | – | {min(args.baseline, subscribers):,} | – | {rate:,.0f} | "
                  f"{rss:.0f} |", flush=True)
            before = smtp_count.value
            seconds, rss = run(root, "--now", NOW, "digest", "--send")
            sent = smtp_count.value - before
            print(f"| publish digest --send, SMTP | {subscribers:,} | {sent:,} | {seconds:.1f} | {sent / seconds:,.0f} | "
                  f"{rss:.0f} |", flush=True)
            reset_ledger(root)
            text = (root / "config.toml").read_text(encoding="utf-8").replace('transport = "smtp"',
                                                                              'transport = "sendgrid"')
            (root / "config.toml").write_text(text, encoding="utf-8")
            before = http_count.value
            seconds, rss = run(root, "--now", NOW, "digest", "--send")
            sent = http_count.value - before
            print(f"| publish digest --send, HTTP batch (SendGrid API) | {subscribers:,} | {sent:,} | {seconds:.1f} | "
                  f"{sent / seconds:,.0f} | {rss:.0f} |", flush=True)
    finally:
        smtp_proc.terminate()
        http_proc.terminate()


if __name__ == "__main__":
    main()
