"""Alerts as other tools take them: Suricata eve.json alert events and Elastic Common Schema documents, one
JSON object per line (CONTRACTS.md "Alerts for other tools").

Both read an alert dict (``Alert.to_dict()``): the attacker is the source, the first victim the destination,
the signature and ATT&CK techniques come from its detector reason (model/signatures.py). A flow (protocol,
both addresses and ports) is known for connection alerts (``evidence.connections``); then ``community_id``
is written. Each line also carries the whole alert under ``vmsentry``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from vmsentry import __version__
from vmsentry.model.signatures import signature

ECS_VERSION = "8.17.0"
# Suricata: 1 is the most severe, 3 the least
EVE_SEVERITY = {"critical": 1, "high": 1, "medium": 2, "low": 3, "info": 3}
# 0-10 as CEF and ECS event.severity take it
NUMERIC_SEVERITY = {"critical": 10, "high": 8, "medium": 5, "low": 3, "info": 1}
# the transport an alert type is about, when it is about one (Suricata's spelling)
PROTO = {
    "nd_spoof": "IPv6-ICMP",
    "rogue_ra": "IPv6-ICMP",
    "rogue_dhcp": "UDP",
    "dhcp_flood": "UDP",
    "mgmt_access": "TCP",
    "lateral_movement": "TCP",
}
_compact = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode


def eve_time(ts: float) -> str:
    """Suricata's timestamp: 2026-12-07T23:15:00.123456+0000."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f%z")


def iso_time(ts: float) -> str:
    """ISO 8601 in UTC with microseconds: 2026-12-07T23:15:00.123456Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def flow(alert: dict) -> dict:
    """What is known of the alert's flow: src/dest ip, mac and port, proto, community_id (None when not)."""
    from vmsentry.report.community_id import community_id

    attacker = alert.get("attacker") or {}
    victim = next(iter(alert.get("victims") or ()), {})
    evidence = alert.get("evidence") or {}
    proto = PROTO.get(alert.get("type", ""))
    if alert.get("type") == "policy_violation" and evidence.get("proto"):
        proto = str(evidence["proto"]).upper()
    elif alert.get("type") == "dns_unsanctioned":
        proto = "TCP" if 853 in (alert.get("ports") or ()) else "UDP"
    sport = dport = None
    connections = evidence.get("connections") or ()
    if connections:
        sport, dport = connections[0]
    elif len(alert.get("ports") or ()) == 1:
        dport = alert["ports"][0]
    out = {
        "src_ip": attacker.get("ip"),
        "src_mac": attacker.get("mac"),
        "src_port": sport,
        "dest_ip": victim.get("ip"),
        "dest_mac": victim.get("mac"),
        "dest_port": dport,
        "proto": proto,
        "community_id": None,
    }
    if proto in ("TCP", "UDP") and sport is not None and dport is not None and out["src_ip"] and out["dest_ip"]:
        try:
            out["community_id"] = community_id(proto, out["src_ip"], out["dest_ip"], sport, dport)
        except ValueError:  # an address that is not one (a log record's): no flow hash
            pass
    return out


def eve_record(alert: dict, sensor: str, iface: str | None, phase: str | None = None) -> dict:
    f = flow(alert)
    sig = signature(alert)
    record = {
        "timestamp": eve_time(alert["last_seen"]),
        "event_type": "alert",
        "in_iface": iface,
        "src_ip": f["src_ip"],
        "src_port": f["src_port"],
        "dest_ip": f["dest_ip"],
        "dest_port": f["dest_port"],
        "proto": f["proto"],
        "community_id": f["community_id"],
        "src_mac": f["src_mac"],
        "dest_mac": f["dest_mac"],
    }
    ether = {k: f[k] for k in ("src_mac", "dest_mac") if f[k]}
    if ether:
        record["ether"] = ether
    metadata = {"vmsentry_alert_id": [alert["id"]], "confidence": [str(alert.get("confidence"))]}
    if sig.attack_ids:
        metadata["mitre_technique_id"] = list(sig.attack_ids)
    record["alert"] = {
        "action": "allowed",
        "gid": 1,
        "signature_id": sig.id,
        "rev": 1,
        "signature": f"VMSENTRY {sig.name}",
        "category": sig.category,
        "severity": EVE_SEVERITY.get(alert.get("severity"), 3),
        "metadata": metadata,
    }
    record["host"] = sensor
    record["vmsentry"] = dict(alert, event=phase) if phase else alert
    return {k: v for k, v in record.items() if v is not None}


def eve_line(alert: dict, sensor: str, iface: str | None, phase: str | None = None) -> str:
    """One Suricata eve.json ``alert`` event (a line, newline included)."""
    return _compact(eve_record(alert, sensor, iface, phase)) + "\n"


def ecs_record(alert: dict, sensor: str, iface: str | None, phase: str | None = None) -> dict:
    f = flow(alert)
    sig = signature(alert)
    drift = alert.get("type") == "config_drift"
    techniques = sorted({t.split(".")[0] for t in sig.attack_ids})
    subtechniques = [t for t in sig.attack_ids if "." in t]
    threat = {"framework": "MITRE ATT&CK"}
    if techniques:
        threat["technique"] = {
            "id": techniques,
            "reference": [f"https://attack.mitre.org/techniques/{t}/" for t in techniques],
        }
        if subtechniques:
            threat["technique"]["subtechnique"] = {
                "id": subtechniques,
                "reference": [f"https://attack.mitre.org/techniques/{t.replace('.', '/')}/" for t in subtechniques],
            }
    record = {
        "@timestamp": iso_time(alert["last_seen"]),
        "ecs": {"version": ECS_VERSION},
        "message": alert.get("summary"),
        "event": {
            "kind": "alert",
            "category": ["configuration"] if drift else ["network", "intrusion_detection"],
            "type": ["change"] if drift else ["info"],
            "id": alert["id"],
            "action": phase or "raised",
            "severity": NUMERIC_SEVERITY.get(alert.get("severity"), 1),
            "risk_score": round(float(alert.get("confidence") or 0) * 100, 1),
            "start": iso_time(alert["first_seen"]),
            "end": iso_time(alert["last_seen"]),
            "module": "vmsentry",
            "dataset": "vmsentry.alert",
        },
        "rule": {"id": str(sig.id), "name": sig.name, "category": sig.category, "ruleset": "vmsentry"},
        "threat": threat,
        "source": _endpoint(f["src_ip"], f["src_mac"], f["src_port"]),
        "destination": _endpoint(f["dest_ip"], f["dest_mac"], f["dest_port"]),
        "network": _drop_none({"transport": (f["proto"] or "").lower() or None, "community_id": f["community_id"]}),
        "observer": _drop_none(
            {
                "hostname": sensor,
                "name": sensor,
                "type": "ids",
                "vendor": "vmsentry",
                "product": "vmsentry",
                "version": __version__,
                "ingress": {"interface": {"name": iface}} if iface else None,
            }
        ),
        "vmsentry": dict(alert, event=phase) if phase else alert,
    }
    return {k: v for k, v in record.items() if v not in (None, {})}


def ecs_line(alert: dict, sensor: str, iface: str | None, phase: str | None = None) -> str:
    """One Elastic Common Schema 8.x alert document (a line, newline included)."""
    return _compact(ecs_record(alert, sensor, iface, phase)) + "\n"


def ecs_mac(mac: str | None) -> str | None:
    """ECS writes MACs as RFC 7042 says: upper case, hyphens (00-00-5E-00-53-23)."""
    return mac.upper().replace(":", "-") if mac else None


def _endpoint(ip, mac, port) -> dict:
    return _drop_none({"ip": ip, "mac": ecs_mac(mac), "port": port})


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}
