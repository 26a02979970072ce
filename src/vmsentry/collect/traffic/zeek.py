"""Zeek logs (conn, dns, dhcp), TSV with ``#fields`` headers or JSON lines, turned into the same events the
packet decoders produce, so the same detectors run on a Zeek sensor's output.

* conn: the originator's SYN (history ``S``), the responder's SYN-ACK (``h``) or reset (``r``, state REJ),
  and an "established" packet when the originator sent data or completed the handshake (``D``/``A`` after
  ``h``, or data mid-stream). UDP and ICMP connections give their first packet. ``orig_l2_addr`` and
  ``resp_l2_addr`` (policy/protocols/conn/mac-logging) give MACs when present.
* dns: one UDP (or TCP) query to ``id.resp_h`` per record, carrying the query name.
* dhcp: one client and one server message per entry of ``msg_types`` (Zeek 2.6+), or an ACK from
  ``id.resp_h`` for the old format (``assigned_ip``).

Other log types are skipped and counted. A line that does not parse (or is longer than ``MAX_LINE``), a bad
``#separator``, and a record whose fields are not what Zeek writes (a list for an address, a null, a port
of 1e400) are counted with their line number and skipped; the rest of the file is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from vmsentry.collect.traffic.decode import FrameDecoder
from vmsentry.collect.traffic.flow_log import tcp_opening
from vmsentry.collect.traffic.reader import LOG_BATCH, RECORD_ERRORS, FileReader, json_record, port, timestamp
from vmsentry.model.traffic import ACK, ICMP, ICMP6, TCP, UDP, Dhcp, Packet, dns_query_payload, ip_bytes, mac_bytes

PROTOS = {"tcp": TCP, "udp": UDP, "icmp": ICMP, "icmp6": ICMP6}
DHCP_CODES = {"DISCOVER": 1, "OFFER": 2, "REQUEST": 3, "DECLINE": 4, "ACK": 5, "NAK": 6, "RELEASE": 7, "INFORM": 8}
SERVER_CODES = (2, 5, 6)
_SEPARATOR = re.compile(r"(?:\\x[0-9A-Fa-f]{2}|[^\\])+")  # what #separator may say: \xNN escapes, other characters
_HEX_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})")
LOG_PATH = re.compile(r"[A-Za-z0-9_.-]{1,40}")  # a #path / _path worth naming in the stats


class ZeekReader(FileReader):
    def __init__(self, name: str, stream, head: bytes, basename: str) -> None:
        super().__init__(name, stream, head)
        self.path = basename.split(".")[0]  # conn.log -> conn, until #path says otherwise
        self.format = "zeek"
        self.line_problem = "malformed-zeek-line"
        self.fields: list[str] | None = None
        self.sep = "\t"
        self.unset = "-"
        self.last_ts = 0.0

    def run(self, dec: FrameDecoder) -> Iterator[None]:
        stats, out = dec.stats, dec.out
        for lines in self.numbered_lines(stats):
            for number, raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if not line:
                    continue
                if line.startswith("#"):
                    why = self._header(line)
                    if why:
                        self.bad_line(stats, number, why)
                    continue
                record = self._record(line)
                if record is None:
                    self.bad_line(stats, number)
                    continue
                stats.packets += 1
                self._events(record, out, stats, number)
                if len(out) >= LOG_BATCH:
                    yield
            yield
        self.format = f"zeek-{self.path}"

    def _header(self, line: str) -> str | None:
        """Take in a ``#`` header line; returns why it is refused, if it is."""
        key, _, value = line[1:].partition(self.sep if not line.startswith("#separator") else " ")
        if key == "separator":
            if not _SEPARATOR.fullmatch(value):  # Zeek writes it as \xNN escapes; anything else is no separator
                return "bad #separator (the tab is kept)"
            sep = _HEX_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
            if not sep or len(sep) > 8 or sep.isspace() and sep not in ("\t", " "):
                return "bad #separator (the tab is kept)"
            self.sep = sep
        elif key == "unset_field":
            self.unset = value
        elif key == "path":
            self.path = value if LOG_PATH.fullmatch(value) else "unknown"
        elif key == "fields":
            self.fields = value.split(self.sep)

    def _record(self, line: str) -> dict | None:
        if line.startswith("{"):
            record = json_record(line)
            if record is None:
                return None
            if "_path" in record:
                path = record["_path"]
                if not (isinstance(path, str) and LOG_PATH.fullmatch(path)):
                    return None  # (a bad _path is this record's fault, not the rest of the file's)
                self.path = path
            elif self.path not in ("conn", "dns", "dhcp"):
                self.path = _guess_path(record)
            return record
        if not self.fields:
            return None
        values = line.split(self.sep)
        if len(values) != len(self.fields):
            return None
        return {k: v for k, v in zip(self.fields, values) if v != self.unset and v != "(empty)"}

    def _ts(self, record: dict, stats) -> float:
        value = record.get("ts")
        try:
            ts = timestamp(float(value))
        except (TypeError, ValueError, OverflowError):
            ts = _iso(value)
            if ts is None:
                stats.problems["zeek-bad-timestamp"] += 1
                return self.last_ts
        self.last_ts = ts
        stats.see_time(ts, ts)
        return ts

    def _events(self, r: dict, out: list, stats, number: int) -> None:
        handler = {"conn": self._conn, "dns": self._dns, "dhcp": self._dhcp}.get(self.path)
        if handler is None:
            stats.problems[f"zeek-log-not-used ({self.path})"] += 1
            return
        try:
            handler(r, out, self._ts(r, stats))
        except RECORD_ERRORS:
            stats.problem("malformed-zeek-record", f"{self.name}: line {number} ({self.path})")

    def _conn(self, r: dict, out: list, ts: float) -> None:
        src, dst = ip_bytes(r.get("id.orig_h")), ip_bytes(r.get("id.resp_h"))
        proto = PROTOS.get(r.get("proto", ""))
        if src is None or dst is None or proto is None:
            raise ValueError("address or protocol")
        sport, dport = port(r.get("id.orig_p")), port(r.get("id.resp_p"))
        smac, dmac = mac_bytes(r.get("orig_l2_addr")), mac_bytes(r.get("resp_l2_addr"))
        history, state = r.get("history", ""), r.get("conn_state", "")
        if proto != TCP:
            out.append(Packet(ts, smac, dmac, src, dst, proto, sport, dport, 0, 0, b""))
            return
        client_syn = "S" in history or state in ("S0", "REJ", "RSTOS0", "SH")
        accepted = "h" in history or state in ("S1", "SF", "S2", "S3", "RSTO", "RSTR")
        reset = "r" in history or state == "REJ"
        tcp_opening(out, ts, smac, dmac, src, dst, sport, dport, client_syn, accepted, reset)
        if "D" in history or ("h" in history and "A" in history) or (not history and state in ("SF", "S1", "OTH")):
            out.append(Packet(ts, smac, dmac, src, dst, TCP, sport, dport, ACK, 0, b""))

    def _dns(self, r: dict, out: list, ts: float) -> None:
        src, dst = ip_bytes(r.get("id.orig_h")), ip_bytes(r.get("id.resp_h"))
        if src is None or dst is None:
            raise ValueError("address")
        proto = PROTOS.get(r.get("proto", "udp"), UDP)
        query = r.get("query") or ""
        payload = dns_query_payload(query, int(r.get("qtype", 1) or 1)) if query else b""
        flags = ACK if proto == TCP else 0
        out.append(
            Packet(
                ts,
                None,
                None,
                src,
                dst,
                proto,
                port(r.get("id.orig_p")),
                port(r.get("id.resp_p", 53)),
                flags,
                0,
                (len(payload).to_bytes(2, "big") + payload) if proto == TCP else payload,
            )
        )

    def _dhcp(self, r: dict, out: list, ts: float) -> None:
        mac = mac_bytes(r.get("mac"))
        if "msg_types" in r:
            types = r["msg_types"] if isinstance(r["msg_types"], list) else str(r["msg_types"]).split(",")
            server = ip_bytes(r.get("server_addr"))
            client = ip_bytes(r.get("client_addr"))
            assigned = ip_bytes(r.get("assigned_addr"))
        else:  # Zeek < 2.6: one record per ACK
            types = ["ACK"]
            server, client = ip_bytes(r.get("id.resp_h")), ip_bytes(r.get("id.orig_h"))
            assigned = ip_bytes(r.get("assigned_ip"))
        for name in types:
            code = DHCP_CODES.get(str(name).strip().upper())
            if code is None:
                continue
            if code in SERVER_CODES:
                out.append(Dhcp(ts, None, server, client, 2, code, 0, mac, assigned, server, (), ()))
            else:
                out.append(Dhcp(ts, mac, client, server, 1, code, 0, mac, None, None, (), ()))


def _guess_path(record: dict) -> str:
    if "conn_state" in record or "history" in record:
        return "conn"
    if "query" in record or "qtype" in record or "rcode" in record:
        return "dns"
    if "msg_types" in record or "assigned_addr" in record or "assigned_ip" in record:
        return "dhcp"
    return "unknown"


def _iso(value) -> float | None:
    if not isinstance(value, str):
        return None
    from datetime import datetime

    try:
        return timestamp(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except (ValueError, OverflowError):
        return None
