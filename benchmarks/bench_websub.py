"""Time from a post's due time to a WebSub subscriber receiving it, through `publish serve` and a hub.

Usage: python benchmarks/bench_websub.py [--posts 5] [--gap 4] [--workdir benchmarks/work]

Builds a site from the shipped example, serves its feeds folder over HTTP on 127.0.0.1, starts the small
WebSub hub of the tests (it fetches the feed on a ping and POSTs it to each subscriber) and a subscriber
callback, subscribes to the site-wide Atom feed through the hub, then runs the real `publish serve` with
--posts future posts falling due --gap seconds apart. Prints each post's latency (delivery time minus due
time) and the median and maximum.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.websub import FeedServer, Hub, Subscriber  # noqa: E402

TOKYO = ZoneInfo("Asia/Tokyo")


def site_at(root: Path, feeds_url: str, hub_url: str) -> Path:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copytree(REPO / "posts", root / "posts")
    config = (REPO / "config.toml").read_text(encoding="utf-8")
    config = config.replace('base_url = ""', f'base_url = "{feeds_url}"', 1)
    config = config.replace("websub_hubs = []", f'websub_hubs = ["{hub_url}"]', 1)
    (root / "config.toml").write_text(config, encoding="utf-8")
    return root / "config.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=5)
    parser.add_argument("--gap", type=float, default=4.0)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "work")
    args = parser.parse_args()
    root = args.workdir / "websub-site"
    root.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).with_name("publish"))
    with FeedServer(root) as web, Hub() as hub, Subscriber() as reader:
        config = site_at(root, f"{web.url}feeds/", hub.url)
        subprocess.run([exe, "--config", str(config)], stdout=subprocess.DEVNULL, check=True)
        hub.subscribe(f"{web.url}feeds/all.atom.xml", reader)
        start = datetime.now(TOKYO).replace(microsecond=0) + timedelta(seconds=5)
        due = {}
        for i in range(args.posts):
            when = start + timedelta(seconds=args.gap * i)
            title = f"Benchmark post {i}"
            due[title] = when.timestamp()
            (root / "posts" / f"bench-{i}.md").write_text(
                f'---\ntitle: "{title}"\ndate: {when.strftime("%Y-%m-%d %H:%M:%S %z")}\n---\n\nBody {i}.\n',
                encoding="utf-8")
        proc = subprocess.Popen([exe, "--config", str(config), "serve", "--scan-interval", "3600"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, PUBLISHER_TOKEN_SECRET="bench-secret-0123456789"))
        latencies: dict[str, float] = {}
        deadline = time.monotonic() + 10 + args.gap * args.posts + 30
        try:
            while len(latencies) < args.posts and time.monotonic() < deadline:
                for delivery in list(reader.deliveries):
                    for title, at in due.items():
                        if title not in latencies and f"<title>{title}</title>".encode() in delivery.body:
                            latencies[title] = delivery.at - at
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    for title in due:
        print(f"{title}: {latencies[title]:.3f} s" if title in latencies else f"{title}: not delivered")
    if latencies:
        values = list(latencies.values())
        print(f"median {statistics.median(values):.3f} s, max {max(values):.3f} s over {len(values)} posts")


if __name__ == "__main__":
    main()
