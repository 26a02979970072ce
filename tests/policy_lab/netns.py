"""Sockets inside named network namespaces, from this process.

``setns(2)`` changes the namespace of the calling *thread* only, and a socket stays in the namespace it was
created in. So a short-lived thread enters the namespace, creates the socket and exits; the socket is then
used from anywhere. No subprocess per probe: a 30-probe connection matrix runs in about one timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from vmsentry.act.policy.netns import open_in_netns


def in_netns(ns: str, fn, *args):
    """Run fn(*args) in a fresh thread that has entered netns ``ns``; return its result or raise
    (the product's own helper, so the tests exercise the code ``policy apply --netns`` uses)."""
    return open_in_netns(ns, lambda: fn(*args))


def ns_socket(ns: str, kind=socket.SOCK_STREAM, family=socket.AF_INET) -> socket.socket:
    return in_netns(ns, socket.socket, family, kind)


class Servers:
    """TCP banner servers and UDP echo servers inside namespaces, served by daemon threads."""

    def __init__(self):
        self.socks: list[socket.socket] = []
        self.stop = threading.Event()
        self.udp_log: list[tuple[str, str, int, bytes]] = []  # (namespace, peer address, port, data)

    def tcp(self, ns: str, addr: str, port: int, tag: str) -> None:
        s = ns_socket(ns)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(64)
        s.settimeout(0.2)
        self.socks.append(s)

        def loop():
            while not self.stop.is_set():
                try:
                    c, peer = s.accept()
                except (TimeoutError, OSError):
                    continue
                try:
                    c.sendall(f"{tag}:{port} from {peer[0]}\n".encode())
                except OSError:
                    pass
                finally:
                    c.close()

        threading.Thread(target=loop, daemon=True).start()

    def udp(self, ns: str, addr: str, port: int, tag: str) -> None:
        s = ns_socket(ns, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.settimeout(0.2)
        self.socks.append(s)

        def loop():
            while not self.stop.is_set():
                try:
                    data, peer = s.recvfrom(2048)
                    self.udp_log.append((ns, peer[0], port, data))
                    s.sendto(f"{tag}:{port} from {peer[0]}".encode(), peer)
                except (TimeoutError, OSError):
                    continue

        threading.Thread(target=loop, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        time.sleep(0.25)
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def probe(ns: str, proto: str, dst: str, port: int, timeout: float = 0.8, src: str | None = None) -> str:
    """'open' (got the banner/echo), 'refused' (RST: reached, nothing listening) or 'blocked' (timeout)."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = ns_socket(ns, kind)
    try:
        s.settimeout(timeout)
        if src:
            s.bind((src, 0))
        if proto == "tcp":
            try:
                s.connect((dst, port))
                data = s.recv(200)
                return "open" if data else "closed"
            except ConnectionRefusedError:
                return "refused"
            except TimeoutError:
                return "blocked"
            except OSError as exc:
                return f"error:{exc.strerror}"
        s.sendto(b"ping", (dst, port))
        try:
            s.recvfrom(2048)
            return "open"
        except TimeoutError:
            return "blocked"
        except ConnectionRefusedError:
            return "refused"
    finally:
        s.close()


def probe_many(probes: list[tuple], timeout: float = 0.8) -> list[str]:
    """probes: (ns, proto, dst, port[, src]) -> results in the same order, all run in parallel."""
    with ThreadPoolExecutor(max_workers=max(1, len(probes))) as ex:
        futs = [ex.submit(probe, p[0], p[1], p[2], p[3], timeout, p[4] if len(p) > 4 else None) for p in probes]
        return [f.result() for f in futs]


def send_frames(ns: str, ifname: str, frames: list[bytes]) -> None:
    """Send raw Ethernet frames (whatever source MAC/IP they carry) out of an interface in a namespace."""
    s = in_netns(ns, socket.socket, socket.AF_PACKET, socket.SOCK_RAW)
    try:
        in_netns(ns, s.bind, (ifname, 0))
        for f in frames:
            s.send(f)
    finally:
        s.close()
