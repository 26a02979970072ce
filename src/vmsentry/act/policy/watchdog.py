"""The rollback watchdog: ``python -m vmsentry.act.policy.watchdog --state-dir D --token T``.

Started detached by ``apply --confirm-within S``. It waits until the deadline in ``D/pending.json``; if
that file still carries its token then (nobody confirmed, nobody applied again), it restores the saved
tables (``apply.rollback``) and writes ``D/rollback.json``. ``policy confirm`` removes ``pending.json`` and
sends SIGTERM, and the watchdog exits without touching anything.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path


def _log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} watchdog: {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vmsentry-policy-watchdog")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--token", required=True)
    args = ap.parse_args(argv)
    from vmsentry.act.policy.apply import read_pending, rollback

    sd = Path(args.state_dir)
    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__("flag", True))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pending = read_pending(sd)
    if not pending or pending.get("token") != args.token:
        _log("nothing pending for my token; exiting")
        return 0
    deadline = float(pending["deadline"])
    _log(f"armed: rollback at {deadline:.3f} ({deadline - time.time():.1f} s) unless confirmed")
    while not stop["flag"]:
        now = time.time()
        if now >= deadline:
            break
        time.sleep(min(0.02, deadline - now))
        p = read_pending(sd)
        if not p or p.get("token") != args.token:
            _log("confirmed or superseded; exiting")
            return 0
    if stop["flag"]:
        _log("stopped (confirmed or superseded)")
        return 0
    result = rollback(sd, args.token, "confirm deadline passed")
    _log(f"rollback: {result}")
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
