"""``--syslog URL``: each alert as an RFC 5424 syslog message whose text is a CEF record (ArcSight Common
Event Format), sent over UDP (RFC 5426, one datagram a message), TCP (RFC 6587 octet counting) or a local
socket (``unix:///dev/log`` or a path: datagram, stream if the socket is one).

Sending never holds up detection: messages go through a bounded queue (``QUEUE`` messages) to a sending
thread. A receiver that is down or slow costs one line on stderr when it goes away and one when it is back
(with the number of alerts dropped meanwhile); a full queue drops the newest and counts them. Reconnection
is tried at most once a second.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from vmsentry import __version__
from vmsentry.model.signatures import signature
from vmsentry.report.alerts import close_quietly, stderr_line
from vmsentry.report.siem import NUMERIC_SEVERITY, flow, iso_time

QUEUE = 1000
MAX_MESSAGE = 8192  # rsyslog's default maxMessageSize; RFC 5426 receivers take at least 2048
FACILITY = 4  # security/authorization messages
# alert severity -> syslog severity (2 critical, 3 error, 4 warning, 5 notice, 6 informational)
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
RETRY_SECONDS = 1.0
SEND_TIMEOUT = 2.0


class SyslogError(ValueError):
    """A --syslog URL that cannot be used (the message names it)."""


def parse_url(url: str) -> tuple[str, object]:
    """("udp"|"tcp", (host, port)) or ("unix", path)."""
    if url.startswith("/"):
        return "unix", url
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise SyslogError(f"{url}: a unix socket URL names a path (unix:///dev/log)")
        return "unix", path
    if parts.scheme not in ("udp", "tcp"):
        raise SyslogError(f"{url}: use udp://HOST:PORT, tcp://HOST:PORT or unix:///dev/log")
    try:
        port = parts.port or 514
    except ValueError:
        raise SyslogError(f"{url}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise SyslogError(f"{url}: no host")
    return parts.scheme, (parts.hostname, port)


def cef_header(text) -> str:
    """A CEF header field: backslash and pipe escaped, no line breaks."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def cef_value(text) -> str:
    """A CEF extension value: backslash, equals sign and line breaks escaped."""
    return (str(text).replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n").replace("\n", "\\n")).replace(
        "\r", "\\r"
    )


def cef(alert: dict, sensor: str, iface: str | None = None) -> str:
    """The CEF record of an alert: CEF:0|vmsentry|vmsentry|VERSION|signature id|name|severity 0-10|ext."""
    sig = signature(alert)
    f = flow(alert)
    ext = {
        "externalId": alert.get("id"),
        "cat": sig.category,
        "start": int(alert["first_seen"] * 1000),
        "end": int(alert["last_seen"] * 1000),
        "cnt": alert.get("count"),
        "smac": f["src_mac"],
        "spt": f["src_port"],
        "dmac": f["dest_mac"],
        "dpt": f["dest_port"],
        "proto": f["proto"],
        "dvchost": sensor,
        "deviceInboundInterface": iface,
        "cs1Label": "mitre_technique_id" if sig.attack_ids else None,
        "cs1": ",".join(sig.attack_ids) or None,
        "cs2Label": "community_id" if f["community_id"] else None,
        "cs2": f["community_id"],
        "cs3Label": "attacker_vm" if (alert.get("attacker") or {}).get("vm") else None,
        "cs3": (alert.get("attacker") or {}).get("vm"),
        "cfp1Label": "confidence",
        "cfp1": alert.get("confidence"),
        "msg": str(alert.get("summary") or "")[:1024],
    }
    for side, ip, v6 in (("src", f["src_ip"], "c6a2"), ("dst", f["dest_ip"], "c6a3")):
        if ip and ":" in ip:
            ext[v6], ext[f"{v6}Label"] = ip, f"{'Source' if side == 'src' else 'Destination'} IPv6 Address"
        elif ip:
            ext[side] = ip
    extension = " ".join(f"{k}={cef_value(v)}" for k, v in ext.items() if v is not None and v != "")
    head = "|".join(
        cef_header(x)
        for x in (
            "vmsentry",
            "vmsentry",
            __version__,
            sig.id,
            f"{sig.name}: {alert.get('type')}",
            NUMERIC_SEVERITY.get(alert.get("severity"), 1),
        )
    )
    return f"CEF:0|{head}|{extension}"


def rfc5424(alert: dict, sensor: str, iface: str | None = None) -> bytes:
    """``<PRI>1 TIMESTAMP HOST vmsentry PID TYPE - CEF...`` (RFC 5424 header fields are printable ASCII)."""
    pri = FACILITY * 8 + SYSLOG_SEVERITY.get(alert.get("severity"), 6)
    host = _header_field(sensor, 255)
    msgid = _header_field(alert.get("type"), 32)
    line = f"<{pri}>1 {iso_time(alert['last_seen'])} {host} vmsentry {os.getpid()} {msgid} - "
    return (line + cef(alert, sensor, iface)).encode("utf-8")[:MAX_MESSAGE]


def _header_field(text, limit: int) -> str:
    cleaned = "".join(c for c in str(text or "") if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


class SyslogSender:
    """Sends alerts to one syslog receiver from a thread of its own (see the module's docstring)."""

    def __init__(self, url: str, sensor: str | None = None, on_problem: Callable[[str], None] | None = None):
        self.url = url
        self.transport, self.address = parse_url(url)
        self.sensor = sensor or socket.gethostname()
        self.on_problem = on_problem or stderr_line
        self.queue: queue.Queue = queue.Queue(QUEUE)
        self.sent = self.dropped = 0
        self._sock: socket.socket | None = None
        self._sock_sends = 0
        self._down_since: float | None = None
        self._dropped_while_down = 0
        self._next_try = 0.0
        self._thread = threading.Thread(target=self._run, name="vmsentry-syslog", daemon=True)
        self._thread.start()

    def send(self, alert: dict, sensor: str | None = None, iface: str | None = None) -> None:
        """Queue one alert (never blocks; a full queue drops it and counts it)."""
        try:
            self.queue.put_nowait(rfc5424(alert, sensor or self.sensor, iface))
        except queue.Full:
            self.dropped += 1
            self._dropped_while_down += 1

    def close(self, timeout: float = 3.0) -> None:
        """Send what is queued (waiting at most ``timeout`` s), then close."""
        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline and self._thread.is_alive():
            time.sleep(0.01)
        try:
            self.queue.put(None, timeout=max(0.1, deadline - time.monotonic()))
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.1)
        left = self.queue.qsize()
        if left:
            self.dropped += left
        if self.dropped:
            self.on_problem(f"syslog {self.url}: {self.dropped} alert(s) could not be sent")
        self._disconnect()

    # --- the sending thread -------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            message = self.queue.get()
            if message is None:
                return
            if not self._deliver(message):
                self.dropped += 1
                self._dropped_while_down += 1

    def _deliver(self, message: bytes) -> bool:
        if self._sock is None:
            if time.monotonic() < self._next_try:
                return False
            try:
                self._sock, self._sock_sends = self._connect(), 0
            except OSError as exc:
                self._failed(exc)
                return False
        try:
            if self.transport == "tcp" or self._sock.type == socket.SOCK_STREAM:
                self._sock.sendall(b"%d %s" % (len(message), message))  # RFC 6587 octet counting
            else:
                self._sock.send(message)
        except OSError as exc:
            self._failed(exc)
            return False
        self.sent += 1
        self._sock_sends += 1
        # a datagram is refused only on the send after it (the ICMP answer): UDP is back after two sends
        proven = self.transport == "tcp" or self._sock.type == socket.SOCK_STREAM or self._sock_sends >= 2
        if self._down_since is not None and proven:
            self.on_problem(f"syslog {self.url}: sending again ({self._dropped_while_down} alert(s) dropped meanwhile)")
            self._down_since, self._dropped_while_down = None, 0
        return True

    def _connect(self) -> socket.socket:
        if self.transport == "unix":
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                sock = socket.socket(socket.AF_UNIX, kind)
                try:
                    sock.settimeout(SEND_TIMEOUT)
                    sock.connect(self.address)
                    return sock
                except OSError as exc:
                    sock.close()
                    if exc.errno != 91:  # EPROTOTYPE: a stream socket; try that
                        raise
            raise OSError("not a syslog socket")
        host, port = self.address
        kind = socket.SOCK_STREAM if self.transport == "tcp" else socket.SOCK_DGRAM
        family, _, _, _, address = socket.getaddrinfo(host, port, type=kind)[0]
        sock = socket.socket(family, kind)
        try:
            sock.settimeout(SEND_TIMEOUT)
            sock.connect(address)  # UDP too: a refused datagram then shows as an error on the next send
        except OSError:
            sock.close()
            raise
        return sock

    def _failed(self, exc: OSError) -> None:
        self._disconnect()
        self._next_try = time.monotonic() + RETRY_SECONDS
        if self._down_since is None:
            self._down_since = time.monotonic()
            reason = exc.strerror or str(exc) or type(exc).__name__
            self.on_problem(f"syslog {self.url}: cannot send: {reason} (alerts are dropped until it answers)")

    def _disconnect(self) -> None:
        self._sock = close_quietly(self._sock)
