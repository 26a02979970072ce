"""Run `vmsentry detect -i br-test --follow` inside the lab's bridge namespace and collect its JSON lines
with the wall-clock time each one arrived (for the time-to-alert measurements)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "tests" / "fixtures" / "traffic" / "lab-inventory.json"


class Watcher:
    def __init__(self, lab, *extra: str, cpu: int | None = None) -> None:
        argv = [
            sys.executable,
            "-m",
            "vmsentry",
            "detect",
            "-i",
            "br-test",
            "--follow",
            "--inventory",
            str(INVENTORY),
            *extra,
        ]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        self.lab = lab
        self.proc = lab.spawn(
            lab.bridge_ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO)
        )
        self.lines: list[tuple[float, dict]] = []
        ready = self.proc.stderr.readline()
        assert "watching br-test" in ready, ready + self.proc.stderr.read()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.time(), json.loads(line)))

    def raised(self, kind: str | None = None) -> list[tuple[float, dict]]:
        return [(t, a) for t, a in self.lines if a.get("event") == "raised" and (kind is None or a["type"] == kind)]

    def wait_for(self, kind: str, timeout: float = 5.0) -> tuple[float, dict] | None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = self.raised(kind)
            if found:
                return found[0]
            time.sleep(0.01)
        return None

    def stop(self, sig: int) -> tuple[int, str]:
        self.proc.send_signal(sig)
        rc = self.proc.wait(15)
        self._thread.join(5)
        return rc, self.proc.stderr.read()
