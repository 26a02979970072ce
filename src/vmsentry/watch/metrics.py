"""``--metrics ADDR:PORT``: the watcher's Prometheus metrics at ``/metrics`` (prometheus-client's text format
and HTTP server, on a private registry: nothing of the process's default collectors is exposed).

The server is started before the watcher enters a network namespace (``--netns``), so it listens on the
host's side. Counters the capture keeps as totals (packets, bytes, kernel drops) are brought up to date
from the capture's stats at every tick (``update``), not per packet.
"""

from __future__ import annotations

import ipaddress

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# response latency: first attack frame -> rule in force (nft ~ms, libvirt ~s)
RESPONSE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class MetricsError(Exception):
    pass


def parse_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:9100', '[::1]:9100', ':9100' (every address) -> (host, port); ValueError with why."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: give ADDR:PORT (e.g. 127.0.0.1:9134, [::1]:9134, :9134)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host != "localhost":
                raise ValueError(f"{text!r}: {host!r} is not an IP address") from None
    return host or "0.0.0.0", int(port)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.packets = Counter("vmsentry_packets", "Frames captured on the watched bridges", registry=r)
        self.bytes = Counter("vmsentry_bytes", "Bytes captured on the watched bridges", registry=r)
        self.kernel_drops = Counter(
            "vmsentry_kernel_drops", "Frames the kernel dropped before the watcher read them", registry=r
        )
        self.alerts = Counter("vmsentry_alerts", "Alerts raised, by type", ["type"], registry=r)
        self.quarantines = Counter(
            "vmsentry_quarantines", "Quarantines put in force, by method", ["method"], registry=r
        )
        self.quarantine_failures = Counter(
            "vmsentry_quarantine_failures", "Quarantines that were wanted and failed", ["method"], registry=r
        )
        self.quarantined = Gauge("vmsentry_quarantined", "VMs held in quarantine now", registry=r)
        self.response = Histogram(
            "vmsentry_response_seconds",
            "First attack frame to quarantine rule in force",
            buckets=RESPONSE_BUCKETS,
            registry=r,
        )
        self.capacity = Gauge(
            "vmsentry_capture_capacity_pps", "Frames per second of busy time the capture sustains", registry=r
        )
        self.ring_fill = Gauge("vmsentry_ring_fill", "Peak fraction of ring blocks held by the watcher", registry=r)
        self.anomaly_windows = Counter(
            "vmsentry_anomaly_windows",
            "Behaviour model (--model): VM windows scored, and of them alarmed",
            ["outcome"],
            registry=r,
        )
        self._seen = {"packets": 0, "bytes": 0, "kernel_drops": 0, "scored": 0, "alarmed": 0}

    def serve(self, address: str) -> None:
        host, port = parse_address(address)
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise MetricsError(f"--metrics {address}: {exc.strerror or exc}") from None

    def update(self, stats, anomaly=None) -> None:
        """Bring the totals up to the capture's ``stats`` (a collect.traffic Stats) and the behaviour model's
        detector (``anomaly``: its ``windows`` scored and ``alarmed``), when there is one."""
        if anomaly is not None:
            for outcome, value in (("scored", anomaly.windows), ("alarmed", anomaly.alarmed)):
                if value > self._seen[outcome]:
                    self.anomaly_windows.labels(outcome).inc(value - self._seen[outcome])
                    self._seen[outcome] = value
        extra = stats.extra
        for name, value in (
            ("packets", stats.packets),
            ("bytes", stats.bytes),
            ("kernel_drops", extra.get("kernel_drops", 0)),
        ):
            delta = value - self._seen[name]
            if delta > 0:
                getattr(self, name).inc(delta)
                self._seen[name] = value
        if extra.get("capture_capacity_pps"):
            self.capacity.set(extra["capture_capacity_pps"])
        if "ring_fill" in extra:
            self.ring_fill.set(extra["ring_fill"])

    def text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.registry).decode()
