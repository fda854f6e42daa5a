"""Time `publish` on a synthetic corpus: cold, nothing new, one new post; peak memory of each run.

Usage: python benchmarks/bench_feeds.py [--posts 10000 50000] [--repeat 3] [--workdir benchmarks/work]

Each measurement runs the real `publish` console script in a child process and reads its wall time and
peak RSS (ru_maxrss from wait4). Medians over --repeat runs are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CATEGORIES = ["投資分析", "半導体", "市場動向", "政策", "導入事例", "研究", "生成AI", "クラウド", "ロボット",
              "Research", "Startups", "Hardware"]
SENTENCES = [
    "生成AIの学習需要が伸び続けるなか、高性能GPUの納期は依然として長いままです。",
    "大手クラウド各社は、複数年の購入契約と自社設計チップの併用で供給リスクを下げようとしています。",
    "推論の単価が下がるほど、新しい用途が採算に乗ります。",
    "データセンターの電力確保は、建設計画そのものを左右する要因になりました。",
    "投資家は売上に占めるAI関連収入の比率と、減価償却費の伸びのバランスに注目しています。",
    "Teams that ship agents keep a person in the loop for anything that spends money.",
]


def make_post(i: int, rng: random.Random) -> str:
    day = 1_700_000_000 + i * 600  # one post every ten minutes
    when = time.strftime("%Y-%m-%d %H:%M:%S +0000", time.gmtime(day))
    cats = rng.sample(CATEGORIES, rng.choice((1, 1, 2)))
    title = f"AIニュース第{i}号：{rng.choice(CATEGORIES)}の最新動向を読み解く"
    paragraphs = ["".join(rng.choice(SENTENCES) for _ in range(6)) for _ in range(12)]
    body = "\n\n".join([title, "**見出し**", *paragraphs, "---END---"])
    cat_list = ", ".join(f'"{c}"' for c in cats)
    return (f'---\nlayout: post\ntitle: "{title}"\ndate: {when}\ncategories: [{cat_list}]\n'
            f'tags: ["AI", "最新ニュース"]\nauthor: "編集部"\nexcerpt: "**{title}**について詳細に分析します。"\n'
            f"reading_time: 8\n---\n\n{body}\n")


def make_site(root: Path, count: int) -> None:
    if root.exists():
        shutil.rmtree(root)
    (root / "posts").mkdir(parents=True)
    repo = Path(__file__).resolve().parent.parent
    config = (repo / "config.toml").read_text(encoding="utf-8")
    (root / "config.toml").write_text(config, encoding="utf-8")
    rng = random.Random(count)
    for i in range(count):
        (root / "posts" / f"{i:06d}_{rng.getrandbits(48):012x}.txt").write_text(make_post(i, rng), encoding="utf-8")


def run_publish(root: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS in MiB of one `publish` run in a child process."""
    exe = Path(sys.executable).with_name("publish")
    start = time.perf_counter()
    proc = subprocess.Popen([str(exe), "--config", str(root / "config.toml"), "--now", "2100-01-01T00:00"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while True:
        # wait4 on any child reports the main process and every worker it started and reaped.
        pid, status, usage = os.wait4(-1, 0)
        peak = max(peak, usage.ru_maxrss)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"publish failed: {proc.stderr.read().decode()}")
    return elapsed, peak / 1024


def add_post(root: Path, n: int) -> None:
    rng = random.Random(-n)
    (root / "posts" / f"new_{n:06d}.txt").write_text(make_post(10_000_000 + n, rng), encoding="utf-8")


def measure(root: Path, count: int, repeat: int) -> dict[str, tuple[float, float]]:
    results: dict[str, list[tuple[float, float]]] = {"cold": [], "nothing new": [], "one new post": []}
    for r in range(repeat):
        shutil.rmtree(root / "state", ignore_errors=True)
        shutil.rmtree(root / "feeds", ignore_errors=True)
        results["cold"].append(run_publish(root))
        results["nothing new"].append(run_publish(root))
        add_post(root, r)
        results["one new post"].append(run_publish(root))
    return {k: (statistics.median(t for t, _ in v), max(m for _, m in v)) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "work")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, repeat {args.repeat}")
    print("| posts | run | median s | peak RSS MiB |\n|---|---|---|---|")
    for count in args.posts:
        root = args.workdir / f"site-{count}"
        make_site(root, count)
        for name, (seconds, mib) in measure(root, count, args.repeat).items():
            print(f"| {count:,} | {name} | {seconds:.2f} | {mib:.0f} |", flush=True)


if __name__ == "__main__":
    main()
