"""Delivery under faults at scale: random SIGKILLs per transport, a paused lease holder, a stalled database.

Usage: python benchmarks/chaos.py [--subscribers 1000] [--cycles 20] [--transports smtp postmark ...]
                                  [--cases kills paused stalled] [--workdir benchmarks/work]

Each transport: `publish digest --send` (a real process) is killed with SIGKILL at a random moment after
its first request reaches the server, 20 times over; then the send is completed, unknown messages are
reconciled where the provider can be asked (Postmark again after two minutes, when its search may be
trusted to say a message was never accepted), and the receiving server's record is compared with the
ledger. Paused: a sender stopped with SIGSTOP past its lease while a second sender runs, then resumed.
Stalled: the database held locked past [state] busy_timeout mid-send. Outage: the provider answers 503
for six hours of hourly scheduled passes, then comes back. Everything runs on 127.0.0.1: the
fake providers of tests/fakes.py and aiosmtpd.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.chaos import http_chaos, outage, paused_holder, smtp_chaos, stalled_database  # noqa: E402

TRANSPORTS = ["smtp", "postmark", "sendgrid", "mailgun", "resend"]
HEADER = ("| case | recipients | crashes | duplicates | never delivered | unknown after the crashes | "
          "unknown after --reconcile | sent but not received | seconds |\n|---|---|---|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--transports", nargs="+", default=TRANSPORTS, choices=TRANSPORTS)
    parser.add_argument("--cases", nargs="+", default=["kills", "paused", "stalled", "outage"],
                        choices=["kills", "paused", "stalled", "outage"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=REPO / "benchmarks" / "work")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {args.subscribers} recipients, "
          f"{args.cycles} kill cycles, HTTP batch size {args.batch_size}")
    print(HEADER, flush=True)
    root = args.workdir / "chaos-site"
    if "kills" in args.cases:
        for transport in args.transports:
            if transport == "smtp":
                outcome = smtp_chaos(root, args.subscribers, args.cycles, seed=args.seed)
            else:
                outcome = http_chaos(root, transport, args.subscribers, args.cycles, seed=args.seed,
                                     batch_size=args.batch_size,
                                     search_wait=125.0 if transport == "postmark" else 0.0)
            print(outcome.row().replace(f"| {transport} |", f"| kills, {transport} |", 1), flush=True)
    for case, run in (("paused", paused_holder), ("stalled", stalled_database), ("outage", outage)):
        if case not in args.cases:
            continue
        for kind in ("postmark", "resend"):
            outcome = run(root, kind, args.subscribers)
            print(outcome.row().replace(f"| {kind} |", f"| {case}, {kind} |", 1), flush=True)
            notes = [n for n in outcome.notes if "\n" not in n]  # leave out the senders' full output
            print(f"<!-- {case} {kind}: {'; '.join(notes)} -->", flush=True)


if __name__ == "__main__":
    main()
