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

CATEGORY = {
    "arp_spoof": AITM,
    "nd_spoof": AITM,
    "rogue_ra": AITM,
    "rogue_dhcp": AITM,
    "dhcp_flood": AITM,
    "mac_flood": AITM,
    "port_scan": DISCOVERY,
    "host_sweep": DISCOVERY,
    "mgmt_access": LATERAL,
    "lateral_movement": LATERAL,
    "dns_unsanctioned": POLICY,
    "ipv6_unexpected": POLICY,
    "policy_violation": POLICY,
    "anomaly": "Anomaly",
    "config_drift": CONFIG,
}

# signature id, alert type, reason, ATT&CK ids ("-": none), name. Per type, the first reason is its default;
# for the types whose alerts count several reasons, the strongest present (the first here) names the alert.
# Mgmt/lateral service rows: a VM reached the host's management service (mgmt_access) or another VM
# (lateral_movement); password guessing is T1110.001. A removed or changed NIC filter weakens the firewall
# (T1562.004); a flooded bridge forwards every frame to every port, so the flooder sniffs (T1040).
TABLE = """
9100101 arp_spoof        contradicts_inventory T1557.002           ARP reply claims an address the inventory gives another MAC
9100102 arp_spoof        eth_arp_mismatch      T1557.002           ARP sender MAC differs from the Ethernet source
9100103 arp_spoof        contradicts_dhcp      T1557.002           ARP claims an address a DHCP ACK bound to another MAC
9100104 arp_spoof        claims_other_ip       T1557.002           Unsolicited ARP reply claims an address not the sender's own
9100105 arp_spoof        binding_change        T1557.002           ARP binding changed to another MAC
9100106 arp_spoof        gratuitous_flood      T1557.002           Gratuitous ARP flood
9100201 nd_spoof         contradicts_inventory T1557               Neighbour advertisement claims an address the inventory gives another MAC
9100202 nd_spoof         eth_nd_mismatch       T1557               Neighbour discovery link-layer option differs from the Ethernet source
9100203 nd_spoof         eui64_owner           T1557               Neighbour advertisement claims another MAC's EUI-64 address
9100204 nd_spoof         dad_dos               T1557               Neighbour advertisement answers another node's duplicate address detection
9100205 nd_spoof         binding_change        T1557               IPv6 neighbour binding changed to another MAC
9100206 nd_spoof         router_flag           T1557               Neighbour advertisement with the router flag from a non-router
9100207 nd_spoof         claims_other_ip       T1557               Unsolicited neighbour advertisement claims an address not the sender's own
9100301 rogue_ra         not_a_router          T1557               Router advertisement from a non-router
9100302 rogue_ra         spoofed_source        T1557               Router advertisement from another router's link-local address
9100303 rogue_ra         lladdr_mismatch       T1557               Router advertisement link-layer option differs from the sender
9100304 rogue_ra         second_router         T1557               Second IPv6 router advertising
9100305 rogue_ra         kill_router           T1557               Router advertisement with lifetime 0 (kill router)
9100401 rogue_dhcp       unsanctioned_server   T1557.003           DHCP answer from a server that is not sanctioned
9100402 rogue_dhcp       second_server         T1557.003           Second DHCP server answering
9100501 dhcp_flood       client_flood          T1557.003           DHCP flood from one client
9100502 dhcp_flood       starvation            T1557.003           DHCP starvation (many client addresses)
9100601 mac_flood        new_macs              T1040               MAC flood (many new source MACs)
9100701 port_scan        scan                  T1046               Port scan
9100702 port_scan        decoys                T1046               Port scan behind decoy source addresses
9100801 host_sweep       sweep                 T1018               Host sweep
9100802 host_sweep       decoys                T1018               Host sweep behind decoy source addresses
9100901 mgmt_access      ssh                   T1021.004           VM reached the host's management service: SSH
9100902 mgmt_access      rdp                   T1021.001           VM reached the host's management service: RDP
9100903 mgmt_access      smb                   T1021.002           VM reached the host's management service: SMB
9100904 mgmt_access      vnc                   T1021.005           VM reached the host's management service: VNC
9100905 mgmt_access      winrm                 T1021.006           VM reached the host's management service: WinRM
9100906 mgmt_access      rpc                   -                   VM reached the host's management service: RPC
9100907 mgmt_access      libvirtd              -                   VM reached the host's management service: libvirtd
9100908 mgmt_access      docker                -                   VM reached the host's management service: Docker API
9100909 mgmt_access      vmware-authd          -                   VM reached the host's management service: VMware authd
9100910 mgmt_access      proxmox               -                   VM reached the host's management service: Proxmox API
9100911 mgmt_access      other                 -                   VM reached the host's management service: another management port
9100912 mgmt_access      brute_force           T1110.001           VM reached the host's management service: password guessing
9101001 lateral_movement ssh                   T1021.004           VM reached another VM over SSH
9101002 lateral_movement rdp                   T1021.001           VM reached another VM over RDP
9101003 lateral_movement smb                   T1021.002           VM reached another VM over SMB
9101004 lateral_movement vnc                   T1021.005           VM reached another VM over VNC
9101005 lateral_movement winrm                 T1021.006           VM reached another VM over WinRM
9101006 lateral_movement rpc                   -                   VM reached another VM over RPC
9101007 lateral_movement libvirtd              -                   VM reached another VM over libvirtd
9101008 lateral_movement docker                -                   VM reached another VM over Docker API
9101009 lateral_movement vmware-authd          -                   VM reached another VM over VMware authd
9101010 lateral_movement proxmox               -                   VM reached another VM over Proxmox API
9101011 lateral_movement other                 -                   VM reached another VM over another management port
9101012 lateral_movement brute_force           T1110.001           VM reached another VM over password guessing
9101051 lateral_movement svcctl                T1569.002,T1021.002 Remote service creation (svcctl, PsExec-style)
9101052 lateral_movement task_scheduler        T1053.005           Remote scheduled task (atsvc, ITaskSchedulerService)
9101053 lateral_movement wmi                   T1047               Remote WMI
9101054 lateral_movement dcom                  T1021.003           Remote execution over DCOM
9101055 lateral_movement winreg                -                   Remote registry (winreg)
9101056 lateral_movement admin_share           T1021.002           SMB tree connect to an administrative share
9101101 dns_unsanctioned public_resolver       T1071.004           DNS to a public resolver that is not sanctioned
9101102 dns_unsanctioned private_resolver      T1071.004           DNS to a resolver that is not sanctioned
9101201 ipv6_unexpected  link_local            -                   IPv6 housekeeping on an IPv4-only network
9101202 ipv6_unexpected  traffic               -                   IPv6 traffic on an IPv4-only network
9101301 policy_violation forbidden             -                   Flow the network policy forbids
9101302 policy_violation spoof                 -                   Source address the network policy forbids
9101303 policy_violation ipv6                  -                   IPv6 where the network policy forbids it
9101401 anomaly          behaviour             -                   VM traffic unlike its learned baseline
9101501 config_drift     nic_network           -                   NIC moved to another network
9101502 config_drift     nic_mode              -                   NIC mode changed
9101503 config_drift     filter_removed        T1562.004           NIC traffic filter removed
9101504 config_drift     filter_changed        T1562.004           NIC traffic filter changed
9101505 config_drift     nic_added             -                   NIC added
9101506 config_drift     nic_removed           -                   NIC removed
9101507 config_drift     listener_added        -                   Listener added (console, port forward)
9101508 config_drift     share_added           -                   Host share added
9101509 config_drift     forward_added         -                   Port forward added
9101510 config_drift     nic_bridge            -                   NIC moved to another bridge
9101511 config_drift     listener_changed      -                   Listener moved to another address
9101512 config_drift     network_mode          -                   Network forward mode changed
9101599 config_drift     other                 -                   Configuration change
"""
SIGNATURES: dict[tuple[str, str], Signature] = {}
for _row in TABLE.strip().splitlines():
    _sid, _kind, _reason, _ids, _name = _row.split(None, 4)
    SIGNATURES[(_kind, _reason)] = Signature(
        int(_sid), _name, CATEGORY[_kind], tuple(_ids.split(",")) if _ids != "-" else ()
    )
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
        wanted = evidence.get("kind") if kind == "policy_violation" else _drift_reason(evidence.get("change"))
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


def _drift_reason(change) -> str | None:
    """A config_drift alert's reason from its ``evidence.change`` (analyse/drift.py: a Change as a dict, whose
    ``what`` names the kind; a filter change is ``filter_removed`` when nothing replaced it)."""
    if not isinstance(change, dict):
        return change if isinstance(change, str) else None
    what = change.get("what")
    if what == "nic_filter":
        return "filter_removed" if change.get("after") in (None, "") else "filter_changed"
    return what if isinstance(what, str) else None
