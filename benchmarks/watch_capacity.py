"""The capture parts of ``bench_watch.py`` (issue 12 §1): the TPACKET_V3 ring under replayed traffic, beside
``tcpdump -w /dev/null`` on the same bridge in the same run.

capacity  ``gen_traffic.py``'s typical mix (1,000,000 packets by default) replayed by ``tcpreplay --topspeed``
          into a lab bridge (tests/traffic_lab/replay.py) while ``vmsentry detect -i`` captures it, pinned
          to its own CPU. Capacity = packets / the watcher's busy CPU seconds (stats.capture_busy_seconds:
          reading, decoding and detecting, not waiting). Target >= 1,000,000 packets/s. tcpdump's anchor
          figure is its packets / its CPU seconds (utime + stime from /proc), which is what writing frames
          to /dev/null costs without decoding anything.
drops     the highest rate this machine generates: ``trafgen`` flat out (no rate limit) with new UDP flows
          (the source port counts up), several senders if asked; its own rate from its report. Target: 0
          kernel drops in the watcher; tcpdump's drops from its "dropped by kernel" line, same run.

On the 2-core machine the generator takes CPU 0 and the watcher CPU 1; tcpdump shares them (no core is
left): the watcher's drops are measured while tcpdump competes with it, as on a busy host.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / ".data"
sys.path.insert(0, str(REPO / "tests"))

from traffic_lab.replay import BRIDGE, ReplayLab  # noqa: E402

UDP_FLOWS = (
    "{ eth(da=52:54:00:99:00:12, sa=52:54:00:99:00:11), ipv4(saddr=10.99.0.11, daddr=10.99.0.12, ttl=64), "
    "udp(sp=dinc(1024, 65000, 1), dp=9999), fill(0x41, 18) }"
)


def mix_capture(packets: int) -> tuple[Path, Path]:
    DATA.mkdir(parents=True, exist_ok=True)
    pcap, inv = DATA / f"watch-typical-{packets}.pcap", DATA / "watch-inventory.json"
    if not pcap.exists() or not inv.exists():
        subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "gen_traffic.py"), str(pcap), "--packets", str(packets)]
            + ["--mix", "typical", "--inventory", str(inv)],
            check=True,
            capture_output=True,
        )
    return pcap, inv


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime, stime (clock ticks, USER_HZ = 100)


class Run:
    """A watcher and tcpdump on the lab bridge; ``finish()`` stops both and returns their figures."""

    def __init__(self, lab: ReplayLab, seconds: float, inventory: Path | None, watcher_cpu: int) -> None:
        argv = ["taskset", "-c", str(watcher_cpu), sys.executable, "-m", "vmsentry", "detect", "-i", BRIDGE]
        argv += ["--format", "json", "--duration", str(seconds)]
        if inventory:
            argv += ["--inventory", str(inventory)]
        self.watcher = lab.spawn(
            lab.bridge_ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO)
        )
        line = self.watcher.stderr.readline()
        assert "watching" in line, line + self.watcher.stderr.read()
        self.tcpdump = lab.spawn(
            lab.bridge_ns,
            ["tcpdump", "-i", BRIDGE, "-B", "131072", "-s", "0", "-w", "/dev/null"],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "listening" in self.tcpdump.stderr.readline()
        time.sleep(0.5)

    def finish(self) -> dict:
        out, err = self.watcher.communicate(timeout=600)
        if self.watcher.returncode not in (0, 1):
            raise SystemExit(f"the watcher failed: {err.strip()}")
        stats = json.loads(out)["stats"]
        cpu = _cpu_seconds(self.tcpdump.pid)
        self.tcpdump.send_signal(signal.SIGINT)
        err = self.tcpdump.communicate(timeout=30)[1]
        captured = int(re.search(r"(\d+) packets? captured", err).group(1))
        dropped = int(re.search(r"(\d+) packets? dropped by kernel", err).group(1))
        return {
            "watcher": {
                k: stats[k]
                for k in (
                    "packets",
                    "kernel_packets",
                    "kernel_drops",
                    "ring_fill",
                    "capture_busy_seconds",
                    "capture_capacity_pps",
                )
            },
            "tcpdump": {
                "captured": captured,
                "dropped_by_kernel": dropped,
                "cpu_seconds": cpu,
                "packets_per_cpu_second": round(captured / cpu) if cpu else None,
            },
        }


def capacity(packets: int = 1_000_000) -> dict:
    pcap, inv = mix_capture(packets)
    with ReplayLab() as lab:
        run = Run(lab, seconds=max(10.0, packets / 50_000), inventory=inv, watcher_cpu=1)
        sent, rate = lab.replay(str(pcap), 0, "--topspeed", "--preload-pcap", cpu=0)
        figures = run.finish()
    figures["generator"] = {"tool": "tcpreplay --topspeed", "sent": sent, "packets_per_second": round(rate)}
    figures["target_pps"] = 1_000_000
    return figures


def drops(packets: int = 2_000_000, senders: int = 1) -> dict:
    per_sender = packets // senders
    with ReplayLab(senders=senders) as lab:
        run = Run(lab, seconds=max(10.0, packets / 100_000), inventory=None, watcher_cpu=1)
        gens = [
            lab.spawn(
                lab.gen(i),
                ["taskset", "-c", str(i % 2), "trafgen", "--dev", "eth0", "--num", str(per_sender), "--cpus", "1"]
                + ["--no-sock-mem", UDP_FLOWS],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for i in range(senders)
        ]
        rates = []
        for g in gens:
            report = g.communicate(timeout=600)[0]
            # trafgen's own account: "<s> sec, <us> usec on CPU0 (<n> packets)", the time its send loop took
            m = re.search(r"(\d+) sec, (\d+) usec on CPU\d+ \((\d+) packets\)", report)
            if not m:
                raise SystemExit(f"trafgen: {report.strip()}")
            rates.append(int(m.group(3)) / (int(m.group(1)) + int(m.group(2)) / 1e6))
        figures = run.finish()
    figures["generator"] = {
        "tool": f"trafgen x{senders}, new UDP flows",
        "sent": per_sender * senders,
        "packets_per_second": round(sum(rates)),
    }
    figures["target_kernel_drops"] = 0
    return figures


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), read from /proc while it still runs."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def live_memory(pcap: Path, inventory: Path, seconds: float) -> dict:
    """The live watcher (the ring, the decoder, the detectors) under a flood replayed into the bridge: its peak
    RSS, read from /proc just before it stops (the ring's pages count once touched), beside tcpdump's."""
    with ReplayLab() as lab:
        run = Run(lab, seconds=seconds, inventory=inventory, watcher_cpu=1)
        sent, rate = lab.replay(str(pcap), 0, "--topspeed", "--preload-pcap", cpu=0)
        # (`ip netns exec` and `taskset` exec the next program: the spawned pid is the watcher itself)
        watcher_peak = tcpdump_peak = 0.0
        while run.watcher.poll() is None:
            try:
                watcher_peak = max(watcher_peak, _peak_rss_mb(run.watcher.pid))
                tcpdump_peak = max(tcpdump_peak, _peak_rss_mb(run.tcpdump.pid))
            except OSError:  # it ended between the poll and the read
                break
            time.sleep(0.2)
        figures = run.finish()
    figures["watcher"]["peak_rss_mb"] = watcher_peak
    figures["tcpdump"]["peak_rss_mb"] = tcpdump_peak
    figures["generator"] = {"tool": "tcpreplay --topspeed", "sent": sent, "packets_per_second": round(rate)}
    return figures
