"""Time the body clean-ups (`clean_body`) with and without repeated-sentence detection.

Usage: python benchmarks/bench_cleanup.py [--repeat 5] [--posts 10000]

Cases: a 1 MB Japanese post and a 1 MB English post (distinct sentences with copied paragraphs, re-glued
runs and changed words sprinkled through), and every body of the `bench_feeds.py` corpus (whose synthetic
bodies repeat their six sentences heavily). Each figure is the median wall time of --repeat runs, in
this process; the ratio compares on/off within the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_feeds import make_post  # noqa: E402

from publisher.config import CleanupConfig  # noqa: E402
from publisher.reading.cleanup import clean_body  # noqa: E402
from publisher.reading.posts import split_front_matter  # noqa: E402

JA_CLAUSES = ["需要予測の精度は", "地方の工場では", "新しい半導体の供給は", "クラウド各社の投資計画は", "電力の確保が",
              "研究チームの報告によれば", "現場の担当者は", "翌年度の予算で", "複数の取引先が", "物流の遅れが"]
JA_ENDS = ["改善したと発表した", "まだ不透明だという", "前年より大きく伸びた", "見直しを迫られている", "課題として残った",
           "次の四半期に持ち越された", "想定を上回った"]
EN_WORDS = ("the a new old team city model plan cost chip cloud data power site week year report said found "
            "grew fell kept moved built tested shipped quickly slowly again early late every most some").split()


def japanese_post(size: int, rng: random.Random) -> str:
    paragraphs: list[str] = []
    n = 0
    while sum(map(len, paragraphs)) * 3 < size:
        sentences = []
        for _ in range(4):
            n += 1
            sentences.append(f"{rng.choice(JA_CLAUSES)}第{n}期に{rng.choice(JA_CLAUSES)[:-1]}と並んで"
                             f"{rng.choice(JA_ENDS)}。")
        paragraphs.append("".join(sentences))
        _sprinkle(paragraphs, rng, " ")
    return "\n\n".join(paragraphs)


def english_post(size: int, rng: random.Random) -> str:
    paragraphs: list[str] = []
    n = 0
    while sum(map(len, paragraphs)) < size:
        sentences = []
        for _ in range(4):
            n += 1
            words = [rng.choice(EN_WORDS) for _ in range(rng.randint(8, 18))]
            sentences.append(f"{' '.join(words).capitalize()} in round {n}.")
        paragraphs.append(" ".join(sentences))
        _sprinkle(paragraphs, rng, " ")
    return "\n\n".join(paragraphs)


def _sprinkle(paragraphs: list[str], rng: random.Random, sep: str) -> None:
    """Now and then, the copies a writing pipeline makes: a paragraph again, a run re-glued, a word changed."""
    if len(paragraphs) < 30:
        return
    roll = rng.random()
    if roll < 0.02:
        paragraphs.append(paragraphs[-rng.randint(2, 25)])
    elif roll < 0.03:
        start = rng.randint(len(paragraphs) - 29, len(paragraphs) - 10)
        paragraphs.append(sep.join(paragraphs[start:start + 8])[:-7])
    elif roll < 0.04:
        paragraphs.append(paragraphs[-rng.randint(2, 25)].replace("の", "が", 1).replace(" the ", " a ", 1))


def feed_corpus(count: int) -> list[tuple[str, str]]:
    rng = random.Random(count)
    out = []
    for i in range(count):
        _, body, _, _ = split_front_matter(make_post(i, rng))
        out.append((f"AIニュース第{i}号", body))
    return out


def median_time(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--posts", type=int, default=10_000)
    args = parser.parse_args()
    on = CleanupConfig()
    off = dataclasses.replace(on, repeated_sentences=False)
    rng = random.Random(1)
    cases = {"1 MB Japanese post": [("t", japanese_post(1_000_000, rng))],
             "1 MB English post": [("t", english_post(1_000_000, rng))],
             f"{args.posts:,} bench_feeds bodies": feed_corpus(args.posts)}
    print(f"python {sys.version.split()[0]}, repeat {args.repeat}")
    print("| case | MB | sentences off s | on s | ratio | text removed |\n|---|---|---|---|---|---|")
    for name, posts in cases.items():
        size = sum(len(body.encode()) for _, body in posts)

        def run(cfg, posts=posts):
            return [clean_body(body, title, cfg, "p.md", 1) for title, body in posts]

        t_off, t_on = median_time(lambda: run(off), args.repeat), median_time(lambda: run(on), args.repeat)
        kept = sum(len(r.text.encode()) for r in run(on)) / sum(len(r.text.encode()) for r in run(off))
        print(f"| {name} | {size / 1e6:.2f} | {t_off:.2f} | {t_on:.2f} | {t_on / t_off:.1f}× | {1 - kept:.0%} |",
              flush=True)


if __name__ == "__main__":
    main()
