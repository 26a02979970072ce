"""One signature per detector reason, so a SIEM can key on a number as it does on Suricata's ``sid``, and the
MITRE ATT&CK techniques each reason stands for (docs/detection.md "Signatures" lists them with their sources).

The signature ids sit in 9,100,000-9,199,999: outside Suricata's local range (1,000,000-1,999,999) and the
Emerging Threats ranges (2,000,000-2,999,999), so an eve pipeline that already carries those rules does not
mistake a vmsentry alert for one of its own. A block of 100 per alert type; a number, once given, keeps its
meaning (a new reason gets a new number).

ATT&CK ids were checked on attack.mitre.org (Enterprise v16); a reason no technique describes has none.
"""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple


class Signature(NamedTuple):
    id: int
    name: str
    category: str
    attack_ids: tuple[str, ...]


AITM, DISCOVERY, LATERAL, POLICY, CONFIG = (
    "Adversary in the middle",
    "Network discovery",
    "Lateral movement",
    "Policy violation",
    "Configuration change",
)

# (alert type, reason) -> signature. The first reason of each type (in this order) is its default; for the
# types whose alerts count several reasons, the strongest present (first in this order) names the alert.
SIGNATURES: dict[tuple[str, str], Signature] = {
    ("arp_spoof", "contradicts_inventory"): Signature(
        9100101, "ARP reply claims an address the inventory gives another MAC", AITM, ("T1557.002",)
    ),
    ("arp_spoof", "eth_arp_mismatch"): Signature(
        9100102, "ARP sender MAC differs from the Ethernet source", AITM, ("T1557.002",)
    ),
    ("arp_spoof", "contradicts_dhcp"): Signature(
        9100103, "ARP claims an address a DHCP ACK bound to another MAC", AITM, ("T1557.002",)
    ),
    ("arp_spoof", "claims_other_ip"): Signature(
        9100104, "Unsolicited ARP reply claims an address not the sender's own", AITM, ("T1557.002",)
    ),
    ("arp_spoof", "binding_change"): Signature(9100105, "ARP binding changed to another MAC", AITM, ("T1557.002",)),
    ("arp_spoof", "gratuitous_flood"): Signature(9100106, "Gratuitous ARP flood", AITM, ("T1557.002",)),
    ("nd_spoof", "contradicts_inventory"): Signature(
        9100201, "Neighbour advertisement claims an address the inventory gives another MAC", AITM, ("T1557",)
    ),
    ("nd_spoof", "eth_nd_mismatch"): Signature(
        9100202, "Neighbour discovery link-layer option differs from the Ethernet source", AITM, ("T1557",)
    ),
    ("nd_spoof", "eui64_owner"): Signature(
        9100203, "Neighbour advertisement claims another MAC's EUI-64 address", AITM, ("T1557",)
    ),
    ("nd_spoof", "dad_dos"): Signature(
        9100204, "Neighbour advertisement answers another node's duplicate address detection", AITM, ("T1557",)
    ),
    ("nd_spoof", "binding_change"): Signature(
        9100205, "IPv6 neighbour binding changed to another MAC", AITM, ("T1557",)
    ),
    ("nd_spoof", "router_flag"): Signature(
        9100206, "Neighbour advertisement with the router flag from a non-router", AITM, ("T1557",)
    ),
    ("nd_spoof", "claims_other_ip"): Signature(
        9100207, "Unsolicited neighbour advertisement claims an address not the sender's own", AITM, ("T1557",)
    ),
    ("rogue_ra", "not_a_router"): Signature(9100301, "Router advertisement from a non-router", AITM, ("T1557",)),
    ("rogue_ra", "spoofed_source"): Signature(
        9100302, "Router advertisement from another router's link-local address", AITM, ("T1557",)
    ),
    ("rogue_ra", "lladdr_mismatch"): Signature(
        9100303, "Router advertisement link-layer option differs from the sender", AITM, ("T1557",)
    ),
    ("rogue_ra", "second_router"): Signature(9100304, "Second IPv6 router advertising", AITM, ("T1557",)),
    ("rogue_ra", "kill_router"): Signature(
        9100305, "Router advertisement with lifetime 0 (kill router)", AITM, ("T1557",)
    ),
    ("rogue_dhcp", "unsanctioned_server"): Signature(
        9100401, "DHCP answer from a server that is not sanctioned", AITM, ("T1557.003",)
    ),
    ("rogue_dhcp", "second_server"): Signature(9100402, "Second DHCP server answering", AITM, ("T1557.003",)),
    ("dhcp_flood", "client_flood"): Signature(9100501, "DHCP flood from one client", AITM, ("T1557.003",)),
    ("dhcp_flood", "starvation"): Signature(9100502, "DHCP starvation (many client addresses)", AITM, ("T1557.003",)),
    # a flooded bridge forwards every frame to every port: the flooder sniffs what it could not see
    ("mac_flood", "new_macs"): Signature(9100601, "MAC flood (many new source MACs)", AITM, ("T1040",)),
    ("port_scan", "scan"): Signature(9100701, "Port scan", DISCOVERY, ("T1046",)),
    ("port_scan", "decoys"): Signature(9100702, "Port scan behind decoy source addresses", DISCOVERY, ("T1046",)),
    ("host_sweep", "sweep"): Signature(9100801, "Host sweep", DISCOVERY, ("T1018",)),
    ("host_sweep", "decoys"): Signature(9100802, "Host sweep behind decoy source addresses", DISCOVERY, ("T1018",)),
    **{
        (kind, service): Signature(base + n, f"{title} {label}", LATERAL, ids)
        for kind, base, title in (
            ("mgmt_access", 9100900, "VM reached the host's management service:"),
            ("lateral_movement", 9101000, "VM reached another VM over"),
        )
        for n, (service, label, ids) in enumerate(
            (
                ("ssh", "SSH", ("T1021.004",)),
                ("rdp", "RDP", ("T1021.001",)),
                ("smb", "SMB", ("T1021.002",)),
                ("vnc", "VNC", ("T1021.005",)),
                ("winrm", "WinRM", ("T1021.006",)),
                ("rpc", "RPC", ()),
                ("libvirtd", "libvirtd", ()),
                ("docker", "Docker API", ()),
                ("vmware-authd", "VMware authd", ()),
                ("proxmox", "Proxmox API", ()),
                ("other", "another management port", ()),
                ("brute_force", "password guessing", ("T1110.001",)),
            ),
            start=1,
        )
    },
    ("lateral_movement", "svcctl"): Signature(
        9101051, "Remote service creation (svcctl, PsExec-style)", LATERAL, ("T1569.002", "T1021.002")
    ),
    ("lateral_movement", "task_scheduler"): Signature(
        9101052, "Remote scheduled task (atsvc, ITaskSchedulerService)", LATERAL, ("T1053.005",)
    ),
    ("lateral_movement", "wmi"): Signature(9101053, "Remote WMI", LATERAL, ("T1047",)),
    ("lateral_movement", "dcom"): Signature(9101054, "Remote execution over DCOM", LATERAL, ("T1021.003",)),
    ("lateral_movement", "winreg"): Signature(9101055, "Remote registry (winreg)", LATERAL, ()),
    ("lateral_movement", "admin_share"): Signature(
        9101056, "SMB tree connect to an administrative share", LATERAL, ("T1021.002",)
    ),
    ("dns_unsanctioned", "public_resolver"): Signature(
        9101101, "DNS to a public resolver that is not sanctioned", POLICY, ("T1071.004",)
    ),
    ("dns_unsanctioned", "private_resolver"): Signature(
        9101102, "DNS to a resolver that is not sanctioned", POLICY, ("T1071.004",)
    ),
    ("ipv6_unexpected", "link_local"): Signature(9101201, "IPv6 housekeeping on an IPv4-only network", POLICY, ()),
    ("ipv6_unexpected", "traffic"): Signature(9101202, "IPv6 traffic on an IPv4-only network", POLICY, ()),
    ("policy_violation", "forbidden"): Signature(9101301, "Flow the network policy forbids", POLICY, ()),
    ("policy_violation", "spoof"): Signature(9101302, "Source address the network policy forbids", POLICY, ()),
    ("policy_violation", "ipv6"): Signature(9101303, "IPv6 where the network policy forbids it", POLICY, ()),
    ("anomaly", "behaviour"): Signature(9101401, "VM traffic unlike its learned baseline", "Anomaly", ()),
    # configuration changes seen by the watcher (analyse/drift.py); a removed filter weakens the firewall
    ("config_drift", "nic_network"): Signature(9101501, "NIC moved to another network", CONFIG, ()),
    ("config_drift", "nic_mode"): Signature(9101502, "NIC mode changed", CONFIG, ()),
    ("config_drift", "filter_removed"): Signature(9101503, "NIC traffic filter removed", CONFIG, ("T1562.004",)),
    ("config_drift", "filter_changed"): Signature(9101504, "NIC traffic filter changed", CONFIG, ("T1562.004",)),
    ("config_drift", "nic_added"): Signature(9101505, "NIC added", CONFIG, ()),
    ("config_drift", "nic_removed"): Signature(9101506, "NIC removed", CONFIG, ()),
    ("config_drift", "listener_added"): Signature(9101507, "Listener added (console, port forward)", CONFIG, ()),
    ("config_drift", "share_added"): Signature(9101508, "Host share added", CONFIG, ()),
    ("config_drift", "forward_added"): Signature(9101509, "Port forward added", CONFIG, ()),
    ("config_drift", "other"): Signature(9101599, "Configuration change", CONFIG, ()),
}
UNKNOWN = Signature(9199999, "vmsentry alert", "Unknown", ())
_FIRST = {}
for (_kind, _reason), _sig in SIGNATURES.items():
    _FIRST.setdefault(_kind, _reason)
_ORDER = {key: n for n, key in enumerate(SIGNATURES)}
_RPC = (
    ("svcctl", "svcctl"),
    ("atsvc", "task_scheduler"),
    ("TaskScheduler", "task_scheduler"),
    ("DCOM", "dcom"),
    ("WMI", "wmi"),
    ("winreg", "winreg"),
    ("administrative share", "admin_share"),
)


def reason(alert: dict) -> str:
    """The detector reason an alert (``Alert.to_dict()``) stands for: the strongest of ``evidence.reasons``,
    or what the evidence says (service, signature, resolver, change), or the type's default."""
    kind, evidence = alert.get("type", ""), alert.get("evidence") or {}
    counted = evidence.get("reasons")
    if isinstance(counted, dict) and counted:
        known = [r for r in counted if (kind, r) in SIGNATURES]
        if known:
            return min(known, key=lambda r: _ORDER[(kind, r)])
    if kind in ("mgmt_access", "lateral_movement"):
        if evidence.get("brute_force"):
            return "brute_force"
        for signature in evidence.get("signatures") or ():
            for needle, found in _RPC:
                if needle in str(signature):
                    return found
        service = str(evidence.get("service")).removesuffix("-tls")
        return service if (kind, service) in SIGNATURES else "other"
    if kind == "rogue_dhcp":
        return "unsanctioned_server" if "not a sanctioned" in str(evidence.get("why")) else "second_server"
    if kind == "dhcp_flood":
        return "starvation" if "starvation" in str(evidence.get("why")) else "client_flood"
    if kind in ("port_scan", "host_sweep") and evidence.get("decoys"):
        return "decoys"
    if kind == "dns_unsanctioned":
        return "public_resolver" if evidence.get("public_resolver") else "private_resolver"
    if kind == "ipv6_unexpected":
        kinds = evidence.get("kinds") or {}
        return "link_local" if alert.get("severity") == "low" or not kinds else "traffic"
    if kind in ("policy_violation", "config_drift"):
        wanted = evidence.get("kind") if kind == "policy_violation" else evidence.get("change")
        if (kind, wanted) in SIGNATURES:
            return wanted
        return "forbidden" if kind == "policy_violation" else "other"
    return _FIRST.get(kind, "")


def signature(alert: dict) -> Signature:
    """The signature of an alert dict (``UNKNOWN`` for a type this table does not know)."""
    return SIGNATURES.get((alert.get("type", ""), reason(alert)), UNKNOWN)


def alert_id(kind: str, key, opened: float) -> str:
    """A stable id (16 hex digits): the same incident gets the same id in every line written about it and in
    every run over the same input, whoever runs it (no sensor name, no wall clock). ``key`` is what the
    detector keeps the incident under (attacker address, victim, service...), ``opened`` the time of its
    first event."""
    text = json.dumps([kind, _plain_key(key), round(opened, 6)], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain_key(key):
    if isinstance(key, (bytes, bytearray)):
        return key.hex()
    if isinstance(key, (tuple, list, frozenset, set)):
        items = [_plain_key(k) for k in key]
        return items if isinstance(key, (tuple, list)) else sorted(items, key=str)
    if key is None or isinstance(key, (int, float, str, bool)):
        return key
    return str(key)
