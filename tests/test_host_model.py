"""A saved inventory with today's host facts loads into the typed Host fields and writes back the same facts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from vmsentry.model import Bridge, Firewall, Host, Inventory, Kvm, ListeningSocket, Ruleset

ROOT = Path(__file__).resolve().parents[1]
COLLECTED = ROOT / "examples" / "lab" / "host" / "host-facts.json"  # written by collect/linux_host.py


def test_saved_facts_load_into_typed_fields_and_write_back_the_same():
    doc = json.loads(COLLECTED.read_text(encoding="utf-8"))
    saved = copy.deepcopy(doc["hosts"][0]["facts"])
    host = Inventory.from_dict(doc).hosts[0]
    assert isinstance(host.firewall, Firewall) and isinstance(host.firewall.nftables, Ruleset)
    assert host.firewall.forward_policy == saved["firewall"]["forward_policy"]
    assert all(isinstance(b, Bridge) for b in host.bridges) and host.bridges[0].name == saved["bridges"][0]["name"]
    assert all(isinstance(s, ListeningSocket) for s in host.listeners)
    assert host.sysctls == saved["sysctl"]
    assert host.sysctl_int("net.ipv4.ip_forward") == int(saved["sysctl"]["net.ipv4.ip_forward"])
    assert isinstance(host.kvm, Kvm) and host.kvm.dev_kvm == saved["kvm"]["dev_kvm"]
    assert host.versions.qemu == saved["versions"]["qemu"]
    # only the platform facts stay untyped
    assert "sysctl" not in host.facts and host.facts["hostname"] == saved["hostname"]
    written = Inventory(hosts=[host]).to_dict()["hosts"][0]
    assert written["facts"] == saved
    assert written["version"] == {"product": "qemu", "version": saved["versions"]["qemu"]}
    assert "192.168.122.1/24" in written["addresses"]
    again = Inventory.from_dict(json.loads(json.dumps(Inventory(hosts=[host]).to_dict()))).hosts[0]
    assert again == host


def test_rules_host_fixture_round_trips():
    facts = json.loads((ROOT / "tests" / "fixtures" / "rules_host" / "lab_host_facts.json").read_text())
    assert Host("lab", "linux", facts=copy.deepcopy(facts)).all_facts() == facts


def test_not_collected_stays_unknown():
    host = Host("h", "linux", facts={"cpu": None, "hostname": "h"})
    assert host.cpu is None and host.kvm is None and host.listeners is None and host.sysctls is None
    assert host.addresses is None and host.version is None
    # a group the collector listed as null is written back as null; one never listed stays absent
    assert host.all_facts() == {"hostname": "h", "cpu": None}
    # read but empty is not the same as not read
    assert Host("h", facts={"bridges": []}).addresses == []


def test_platform_hosts_keep_their_facts():
    host = Host("pve", "proxmox", facts={"source_file": "/etc/pve/nodes/pve/host.fw", "proxmox.kind": "host"})
    assert host.to_dict() == {
        "name": "pve",
        "platform": "proxmox",
        "facts": host.facts,
        "addresses": None,
        "version": None,
    }
