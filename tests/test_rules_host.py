"""Host-side rules (catalogue/host.yaml, catalogue/libvirt-daemon.yaml): every rule fails on one input and
passes on another; missing facts never pass; the catalogue entries are complete and wired to predicates."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import vmsentry.analyse.checks.host_kernel
import vmsentry.analyse.checks.host_libvirtd_conf
import vmsentry.analyse.checks.host_qemu_conf  # noqa: F401
from vmsentry.analyse.checks import CHECKS
from vmsentry.analyse.engine import evaluate
from vmsentry.analyse.rules import CATEGORIES, REQUIRED, SEVERITIES, _rule_from
from vmsentry.model import VM, Device, Host, Inventory, Listener, Network, Nic

CATALOGUE = Path(__file__).resolve().parents[1] / "src/vmsentry/analyse/rules/catalogue"
FILES = {"host.yaml": "VMS-HOST-", "libvirt-daemon.yaml": "VMS-LVD-"}


def _entries() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in FILES:
        for entry in yaml.safe_load((CATALOGUE / name).read_text(encoding="utf-8")):
            out.append((name, entry))
    return out


RULES = {e["id"]: _rule_from(e, f) for f, e in _entries()}


# ------------------------------------------------------------------------------------------ fixtures


def good_facts() -> dict[str, Any]:
    """A well-configured NAT + bridged KVM host: every rule passes or does not apply."""
    sysctl = {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.conf.all.forwarding": "1",
        "net.ipv6.conf.all.forwarding": "0",
        "net.ipv4.conf.all.rp_filter": "1",
        "net.ipv4.conf.default.rp_filter": "1",
        "net.ipv4.conf.all.arp_ignore": "1",
        "net.ipv4.conf.all.arp_announce": "2",
        "net.ipv4.conf.all.arp_filter": "0",
        "net.ipv4.conf.all.accept_redirects": "0",
        "net.ipv4.conf.default.accept_redirects": "0",
        "net.ipv4.conf.all.send_redirects": "0",
        "net.ipv4.conf.all.accept_source_route": "0",
        "net.ipv6.conf.all.accept_ra": "0",
        "net.ipv6.conf.default.accept_ra": "0",
        "net.ipv6.conf.all.accept_redirects": "0",
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.bridge.bridge-nf-call-ip6tables": "1",
        "net.bridge.bridge-nf-call-arptables": "1",
    }
    for br in ("virbr0", "br0"):
        sysctl.update(
            {
                f"net.ipv4.conf.{br}.rp_filter": "1",
                f"net.ipv4.conf.{br}.forwarding": "1",
                f"net.ipv6.conf.{br}.accept_ra": "0",
                f"net.ipv6.conf.{br}.forwarding": "0",
                f"net.ipv6.conf.{br}.disable_ipv6": "1",
            }
        )

    def iface(name, kind, master=None, promiscuity=0, addresses=()):
        return {
            "name": name,
            "kind": kind,
            "mac": "52:54:00:00:00:01",
            "mtu": 1500,
            "state": "UP",
            "master": master,
            "promiscuity": promiscuity,
            "addresses": list(addresses),
        }

    return {
        "hostname": "h1",
        "kernel": "6.1.0",
        "os": "Debian 12",
        "sysctl": sysctl,
        "interfaces": [
            iface("lo", "loopback", addresses=["127.0.0.1/8", "::1/128"]),
            iface("eth0", "physical", addresses=["10.0.0.5/24"]),
            iface("virbr0", "bridge", addresses=["192.168.122.1/24"]),
            iface("vnet0", "tun", master="virbr0", promiscuity=1),
            iface("br0", "bridge"),
            iface("eth1", "physical", master="br0", promiscuity=1),
            iface("vnet1", "tun", master="br0", promiscuity=1),
        ],
        "bridges": [
            {
                "name": "virbr0",
                "addresses": ["192.168.122.1/24"],
                "ports": ["vnet0"],
                "physical_ports": [],
                "stp": True,
                "vlan_filtering": False,
            },
            {
                "name": "br0",
                "addresses": [],
                "ports": ["eth1", "vnet1"],
                "physical_ports": ["eth1"],
                "stp": False,
                "vlan_filtering": False,
            },
        ],
        "listening": [
            {"proto": "tcp", "address": "127.0.0.1", "port": 22, "process": "sshd", "pid": 10, "interface": None},
            {
                "proto": "tcp",
                "address": "192.168.122.1",
                "port": 53,
                "process": "dnsmasq",
                "pid": 11,
                "interface": None,
            },
            {
                "proto": "udp",
                "address": "192.168.122.1",
                "port": 53,
                "process": "dnsmasq",
                "pid": 11,
                "interface": None,
            },
            {"proto": "udp", "address": "0.0.0.0", "port": 67, "process": "dnsmasq", "pid": 11, "interface": "virbr0"},
            {
                "proto": "tcp",
                "address": "127.0.0.1",
                "port": 5900,
                "process": "qemu-system-x86_64",
                "pid": 12,
                "interface": None,
            },
        ],
        "firewall": {
            "nftables": {
                "tables": [
                    {
                        "family": "ip",
                        "name": "filter",
                        "chains": [
                            {
                                "name": "FORWARD",
                                "hook": "forward",
                                "type": "filter",
                                "priority": 0,
                                "policy": "drop",
                                "rules": 3,
                            },
                            {
                                "name": "LIBVIRT_FWX",
                                "hook": None,
                                "type": None,
                                "priority": None,
                                "policy": None,
                                "rules": 1,
                            },
                        ],
                    },
                    {"family": "ip", "name": "nat", "chains": []},
                ],
                "ruleset_rules": 20,
            },
            "iptables_legacy": {"tables": [], "ruleset_rules": 0},
            "forward_policy": "drop",
            "forward_rules": 12,
            "input_policy": "accept",
            "forward_policy_v6": "accept",
            "forward_rules_v6": 0,
            "input_policy_v6": "accept",
            "libvirt_chains": ["LIBVIRT_FWI", "LIBVIRT_FWO", "LIBVIRT_FWX"],
        },
        "cpu": {"vendor": "GenuineIntel", "vmx": True, "svm": False, "model": "Xeon"},
        "kvm": {"dev_kvm": True, "nested": "N", "ksm_run": "0"},
        "iommu": {"groups": 20, "cmdline_flags": ["intel_iommu=on"], "enabled": True},
        "memory_encryption": {"sev": False, "sev_es": False, "sev_snp": False, "tdx": False, "cpu_flags": []},
        "lsm": {"apparmor": "enabled", "selinux": "absent", "active": ["apparmor"]},
        "versions": {"qemu": "7.2.22", "libvirt": "9.0.0", "kernel": "6.1.0"},
        "libvirt": {"daemon_running": True, "processes": ["libvirtd"]},
        "qemu_conf": {"file": "/etc/libvirt/qemu.conf", "values": {}, "lines": {}},
        "libvirtd_conf": {"file": "/etc/libvirt/libvirtd.conf", "values": {}, "lines": {}},
        "groups": {"libvirt": [], "kvm": ["alice"], "libvirt-qemu": []},
        "collection_errors": [],
    }


def build(mut: Callable[[Inventory, dict[str, Any]], None] | None = None) -> Inventory:
    facts = good_facts()
    inv = Inventory(
        networks=[
            Network(
                "default",
                "libvirt",
                mode="nat",
                bridge="virbr0",
                subnets=["192.168.122.0/24"],
                host_address="192.168.122.1",
                dhcp=True,
            )
        ],
        vms=[
            VM("web", "libvirt", nics=[Nic("net0", mode="nat", network="default", bridge="virbr0")]),
            VM("lan", "libvirt", nics=[Nic("net0", mode="bridged", bridge="br0")]),
        ],
    )
    if mut:
        mut(inv, facts)
    inv.hosts.insert(0, Host("h1", "linux", facts=facts))  # the facts as mutated become the typed groups
    return inv


def statuses(rule_id: str, inv: Inventory) -> list[str]:
    findings = evaluate(inv, rules=[RULES[rule_id]])
    return [f.status for f in findings]


# mutation helpers ----------------------------------------------------------------------------------


def sysctl(**kv):
    def m(inv, f):
        for k, v in kv.items():
            f["sysctl"][k.replace("__", ".").replace("_DASH_", "-")] = v

    return m


def fw(**kv):
    def m(inv, f):
        f["firewall"].update(kv)

    return m


def qconf(**kv):
    def m(inv, f):
        f["qemu_conf"]["values"].update(kv)
        f["qemu_conf"]["lines"].update({k: 10 + i for i, k in enumerate(kv)})

    return m


def dconf(**kv):
    def m(inv, f):
        f["libvirtd_conf"]["values"].update(kv)
        f["libvirtd_conf"]["lines"].update({k: 20 + i for i, k in enumerate(kv)})

    return m


def group(name, **kv):
    def m(inv, f):
        f[name].update(kv)

    return m


def listen(proto, address, port, process, interface=None):
    def m(inv, f):
        f["listening"].append(
            {"proto": proto, "address": address, "port": port, "process": process, "pid": 99, "interface": interface}
        )

    return m


def both(*muts):
    def m(inv, f):
        for mu in muts:
            mu(inv, f)

    return m


def _ipv6_on_virbr0(inv, f):
    f["sysctl"].update(
        {
            "net.ipv6.conf.virbr0.disable_ipv6": "0",
            "net.ipv6.conf.virbr0.accept_ra": "1",
            "net.ipv6.conf.virbr0.forwarding": "0",
        }
    )


def _promisc_eth0(inv, f):
    next(i for i in f["interfaces"] if i["name"] == "eth0")["promiscuity"] = 1


def _br0_address(inv, f):
    next(b for b in f["bridges"] if b["name"] == "br0")["addresses"] = ["10.0.1.5/24"]


def _passthrough(inv, f):
    inv.vms[0].devices.append(Device("pci-passthrough", "0000:03:00.0"))


def _all_encrypted(inv, f):
    for vm in inv.vms:
        vm.security.memory_encryption = "sev-snp"


def _unconfined_vm(inv, f):
    inv.vms[0].security.confinement = "none"


def _tcp_serial(inv, f):
    inv.vms[0].listeners.append(Listener("serial", "tcp", "0.0.0.0", 4555, "none"))


def _no_versions(inv, f):
    f["versions"] = {"qemu": None, "libvirt": None, "kernel": "6.1.0"}


# rule id -> (mutation that makes it fail, mutation that makes it pass (None = the good host))
CASES: dict[str, tuple[Any, Any]] = {
    "VMS-HOST-001": (fw(forward_policy="accept", forward_rules=0), None),
    "VMS-HOST-002": (sysctl(net__ipv6__conf__all__forwarding="1"), None),
    "VMS-HOST-003": (lambda inv, f: f["sysctl"].update({"net.bridge.bridge-nf-call-iptables": "0"}), None),
    "VMS-HOST-004": (
        lambda inv, f: f["sysctl"].update({"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.virbr0.rp_filter": "0"}),
        None,
    ),
    "VMS-HOST-005": (lambda inv, f: f["sysctl"].update({"net.ipv4.conf.all.arp_ignore": "0"}), None),
    "VMS-HOST-006": (_ipv6_on_virbr0, None),
    "VMS-HOST-007": (
        lambda inv, f: f["sysctl"].update(
            {"net.ipv4.conf.all.accept_redirects": "1", "net.ipv4.conf.default.accept_redirects": "1"}
        ),
        None,
    ),
    "VMS-HOST-008": (lambda inv, f: f["sysctl"].update({"net.ipv4.conf.all.send_redirects": "1"}), None),
    "VMS-HOST-009": (lambda inv, f: f["sysctl"].update({"net.ipv4.conf.all.accept_source_route": "1"}), None),
    "VMS-HOST-010": (fw(nftables={"tables": [], "ruleset_rules": 0}), None),
    "VMS-HOST-011": (_promisc_eth0, None),
    "VMS-HOST-012": (listen("tcp", "0.0.0.0", 22, "sshd"), None),
    "VMS-HOST-013": (listen("tcp", "0.0.0.0", 5901, "qemu-system-x86_64"), None),
    "VMS-HOST-014": (_br0_address, None),
    "VMS-HOST-015": (group("lsm", apparmor="disabled", selinux="absent"), None),
    "VMS-HOST-016": (both(_passthrough, group("iommu", enabled=False, groups=0)), _passthrough),
    "VMS-HOST-017": (group("kvm", nested="Y"), None),
    "VMS-HOST-018": (group("kvm", ksm_run="1"), None),
    "VMS-HOST-019": (group("groups", libvirt=["alice", "svc-backup"]), None),
    "VMS-HOST-020": (group("cpu", vmx=False), None),
    "VMS-HOST-021": (
        group("memory_encryption", sev_snp=True),
        both(group("memory_encryption", sev_snp=True), _all_encrypted),
    ),
    # VMS-HOST-022 never fails (info record); its negative case is "unknown" (see test below)
    "VMS-LVD-001": (qconf(vnc_listen="0.0.0.0"), None),
    "VMS-LVD-002": (qconf(vnc_listen="0.0.0.0"), qconf(vnc_listen="0.0.0.0", vnc_password="<set>")),
    "VMS-LVD-003": (qconf(vnc_tls=1), qconf(vnc_tls=1, vnc_tls_x509_verify=1)),
    "VMS-LVD-004": (qconf(spice_listen="0.0.0.0"), None),
    "VMS-LVD-005": (qconf(spice_listen="0.0.0.0"), qconf(spice_listen="0.0.0.0", spice_password="<set>")),
    "VMS-LVD-006": (qconf(security_driver="none"), None),
    "VMS-LVD-007": (qconf(security_default_confined=0), None),
    "VMS-LVD-008": (_unconfined_vm, both(_unconfined_vm, qconf(security_require_confined=1))),
    "VMS-LVD-009": (qconf(user="root"), qconf(user="libvirt-qemu", group="kvm")),
    "VMS-LVD-010": (qconf(seccomp_sandbox=0), None),
    "VMS-LVD-011": (qconf(namespaces=[]), None),
    "VMS-LVD-012": (qconf(cgroup_device_acl=["/dev/null", "/dev/kvm", "/dev/sda"]), None),
    "VMS-LVD-013": (qconf(relaxed_acs_check=1), None),
    "VMS-LVD-014": (None, qconf(migrate_tls_force=1)),
    "VMS-LVD-015": (_tcp_serial, both(_tcp_serial, qconf(chardev_tls=1))),
    "VMS-LVD-016": (qconf(stdio_handler="file"), None),
    "VMS-LVD-017": (qconf(migrate_tls_x509_verify=0), None),
    "VMS-LVD-018": (dconf(listen_tcp=1, auth_tcp="none"), None),
    "VMS-LVD-019": (dconf(listen_tcp=1), None),
    "VMS-LVD-020": (dconf(tls_no_verify_certificate=1), None),
    "VMS-LVD-021": (dconf(auth_unix_rw="none", unix_sock_rw_perms="0777"), None),
    "VMS-LVD-022": (
        listen("tcp", "0.0.0.0", 16514, "libvirtd"),
        both(listen("tcp", "0.0.0.0", 16514, "libvirtd"), dconf(tls_allowed_dn_list=["CN=admin"])),
    ),
    "VMS-LVD-023": (
        listen("tcp", "0.0.0.0", 16509, "libvirtd"),
        both(listen("tcp", "0.0.0.0", 16509, "libvirtd"), dconf(sasl_allowed_username_list=["a@R"])),
    ),
    "VMS-LVD-024": (
        listen("tcp", "0.0.0.0", 16514, "libvirtd"),
        both(listen("tcp", "0.0.0.0", 16514, "libvirtd"), dconf(access_drivers=["polkit"])),
    ),
}


# ------------------------------------------------------------------------------------------ tests


def test_every_rule_has_cases():
    assert set(RULES) - set(CASES) == {"VMS-HOST-022"}
    assert set(CASES) <= set(RULES)
    assert len(RULES) >= 32


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fails(rule_id):
    st = statuses(rule_id, build(CASES[rule_id][0]))
    assert "fail" in st, st
    assert "error" not in st, st


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_passes(rule_id):
    st = statuses(rule_id, build(CASES[rule_id][1]))
    assert st and all(s == "pass" for s in st), st


def test_versions_rule_pass_and_unknown():
    assert statuses("VMS-HOST-022", build()) == ["pass"]
    assert statuses("VMS-HOST-022", build(_no_versions)) == ["unknown"]


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_missing_facts_never_pass(rule_id):
    """No facts at all (keys absent), and every group present but None: unknown or n/a, never pass."""
    for facts in ({}, dict.fromkeys(good_facts())):
        inv = build()
        inv.hosts[0] = Host("h1", "linux", facts=copy.deepcopy(facts))
        st = statuses(rule_id, inv)
        assert st, st
        assert all(s in ("unknown", "not_applicable") for s in st), (facts and "None groups", st)


@pytest.mark.parametrize(
    "group_name", [k for k in good_facts() if k not in ("hostname", "kernel", "os", "collection_errors")]
)
def test_each_missing_group_gives_no_error(group_name):
    inv = build(lambda i, f: f.__setitem__(group_name, None))
    findings = evaluate(inv, rules=list(RULES.values()))
    assert not [f for f in findings if f.status == "error"], [f.evidence for f in findings if f.status == "error"]


def test_missing_group_is_unknown_for_its_rules():
    expect = {
        "sysctl": ["VMS-HOST-001", "VMS-HOST-004", "VMS-HOST-007"],
        "firewall": ["VMS-HOST-010"],
        "listening": ["VMS-HOST-012", "VMS-HOST-013"],
        "lsm": ["VMS-HOST-015"],
        "kvm": ["VMS-HOST-017"],
        "qemu_conf": ["VMS-LVD-001", "VMS-LVD-009"],
        "libvirtd_conf": ["VMS-LVD-018", "VMS-LVD-020"],
    }
    for name, rule_ids in expect.items():
        inv = build(lambda i, f, group=name: f.pop(group))
        for rid in rule_ids:
            assert statuses(rid, inv) == ["unknown"], (name, rid)


# context awareness ----------------------------------------------------------------------------------


def test_ip_forward_filtered_is_pass_and_unknown_without_firewall():
    assert statuses("VMS-HOST-001", build()) == ["pass"]  # forwarding on, FORWARD drop
    assert statuses("VMS-HOST-001", build(fw(forward_policy="accept", forward_rules=7))) == ["pass"]
    inv = build(lambda i, f: f.__setitem__("firewall", None))
    assert statuses("VMS-HOST-001", inv) == ["unknown"]
    off = sysctl(net__ipv4__ip_forward="0", net__ipv4__conf__all__forwarding="0")
    assert statuses("VMS-HOST-001", build(off)) == ["pass"]


def test_firewall_unreadable_is_unknown_and_empty_tables_do_not_count():
    assert statuses("VMS-HOST-010", build(fw(nftables=None))) == ["unknown"]
    empty = {
        "tables": [
            {
                "family": "ip",
                "name": "filter",
                "chains": [{"name": "LIBVIRT_INP", "hook": None, "policy": None, "rules": 0}],
            }
        ],
        "ruleset_rules": 0,
    }
    assert statuses("VMS-HOST-010", build(fw(nftables=empty))) == ["fail"]


def test_ipv6_forwarding_uses_v6_facts():
    on6 = sysctl(net__ipv6__conf__all__forwarding="1")
    assert statuses("VMS-HOST-002", build(on6)) == ["fail"]  # v6 FORWARD accept, 0 rules
    assert statuses("VMS-HOST-002", build(both(on6, fw(forward_policy_v6="drop")))) == ["pass"]
    no_v6 = both(on6, lambda i, f: [f["firewall"].pop(k) for k in ("forward_policy_v6", "forward_rules_v6")])
    assert statuses("VMS-HOST-002", build(no_v6)) == ["unknown"]  # only IPv4 policy known, drop


def test_bridge_ports_are_not_promiscuous_findings():
    findings = evaluate(build(), rules=[RULES["VMS-HOST-011"]])
    assert [f.status for f in findings] == ["pass"]
    assert "vnet0" in findings[0].evidence["message"]


def test_libvirt_dnsmasq_is_expected():
    inv = build(both(listen("tcp", "192.168.122.1", 53, "dnsmasq"), listen("udp", "0.0.0.0", 67, "dnsmasq")))
    assert statuses("VMS-HOST-012", inv) == ["pass"]


def test_service_on_bridge_address_and_lan_address():
    assert statuses("VMS-HOST-012", build(listen("tcp", "192.168.122.1", 5432, "postgres"))) == ["fail"]
    # weak host model: the host routes guests of virbr0, so its LAN address is reachable too
    assert statuses("VMS-HOST-012", build(listen("tcp", "10.0.0.5", 8080, "nginx"))) == ["fail"]
    # bound to another device explicitly
    assert statuses("VMS-HOST-012", build(listen("tcp", "0.0.0.0", 8080, "nginx", interface="eth0"))) == ["pass"]
    # INPUT default drop: reachability depends on rules not collected
    assert statuses("VMS-HOST-012", build(both(listen("tcp", "0.0.0.0", 22, "sshd"), fw(input_policy="drop")))) == [
        "unknown"
    ]


def test_services_not_applicable_without_guest_bridges():
    def strip(inv, f):
        inv.networks.clear()
        inv.vms.clear()
        f["bridges"] = []

    assert statuses("VMS-HOST-012", build(both(strip, listen("tcp", "0.0.0.0", 22, "sshd")))) == ["not_applicable"]


def test_bridge_nf_not_applicable_for_nat_only_and_when_forward_unfiltered():
    def nat_only(inv, f):
        inv.vms.pop()
        f["bridges"] = [b for b in f["bridges"] if b["name"] != "br0"]
        f["sysctl"]["net.bridge.bridge-nf-call-iptables"] = "0"

    assert statuses("VMS-HOST-003", build(nat_only)) == ["not_applicable"]
    absent = build(lambda i, f: [f["sysctl"].pop(k) for k in list(f["sysctl"]) if k.startswith("net.bridge.")])
    assert statuses("VMS-HOST-003", absent).count("fail") == 3


def test_iommu_not_applicable_without_passthrough():
    assert statuses("VMS-HOST-016", build(group("iommu", enabled=False))) == ["not_applicable"]


def test_libvirt_rules_not_applicable_when_libvirt_absent():
    def no_libvirt(inv, f):
        f.pop("qemu_conf")
        f.pop("libvirtd_conf")
        f["versions"]["libvirt"] = None
        f["libvirt"] = {"daemon_running": False, "processes": []}

    assert statuses("VMS-LVD-001", build(no_libvirt)) == ["not_applicable"]


def test_tcp_auth_none_latent_and_socket_activated():
    assert statuses("VMS-LVD-018", build(dconf(auth_tcp="none"))) == ["pass"]  # nothing listens
    assert statuses("VMS-LVD-018", build(both(dconf(auth_tcp="none"), listen("tcp", "::", 16509, "virtproxyd")))) == [
        "fail"
    ]
    inv = build(both(dconf(auth_tcp="none"), lambda i, f: f.__setitem__("listening", None)))
    assert statuses("VMS-LVD-018", inv) == ["unknown"]


def test_evidence_points_at_conf_line():
    findings = evaluate(build(qconf(vnc_listen="0.0.0.0")), rules=[RULES["VMS-LVD-001"]])
    ev = findings[0].evidence
    assert ev["file"] == "/etc/libvirt/qemu.conf" and ev["locator"] == "line 10" and ev["key"] == "vnc_listen"
    sys_ev = evaluate(build(CASES["VMS-HOST-009"][0]), rules=[RULES["VMS-HOST-009"]])[0].evidence
    assert sys_ev["file"] == "/proc/sys/net/ipv4/conf/all/accept_source_route"


def test_secrets_never_in_evidence():
    inv = build(qconf(vnc_listen="0.0.0.0", vnc_password="XYZ12345", spice_listen="0.0.0.0", spice_password="XYZ12345"))
    findings = evaluate(inv, rules=list(RULES.values()))
    assert not any("XYZ" in str(f.evidence) for f in findings)
    assert any(f.evidence.get("value") == "<set>" for f in findings)


# catalogue -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fname,entry", _entries(), ids=lambda x: x if isinstance(x, str) else x.get("id"))
def test_catalogue_entry_complete(fname, entry):
    for key in [k for k in REQUIRED if k != "check"] + ["verified"]:
        assert entry.get(key) not in (None, "", [], {}), (entry.get("id"), key)
    assert entry["id"].startswith(FILES[fname])
    assert entry["severity"] in SEVERITIES
    assert entry["category"] in CATEGORIES
    assert entry["platforms"] == ["linux"] and entry["asset"] == "host"
    assert isinstance(entry["remediation"], dict) and entry["remediation"].get("linux")
    assert ("check" in entry) != ("test" in entry) and ("test" in entry or entry["check"] in CHECKS), entry["id"]
    assert all(isinstance(r, str) and r.strip() for r in entry["references"])
    if any("(numbering per 2014 draft" in r for r in entry["references"]):
        assert "2014 draft" in str(entry["verified"])


def test_catalogue_ids_unique_and_sequential():
    for fname, prefix in FILES.items():
        ids = [e["id"] for f, e in _entries() if f == fname]
        assert len(ids) == len(set(ids))
        assert ids == [f"{prefix}{i:03d}" for i in range(1, len(ids) + 1)]


# real facts collected on the project's lab machine (collect/linux_host.py, libvirt stopped) ------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rules_host"


def lab_inventory() -> Inventory:
    import json

    facts = json.loads((FIXTURES / "lab_host_facts.json").read_text(encoding="utf-8"))
    return Inventory(hosts=[Host("lab", "linux", facts=facts)])


def test_lab_host_results_make_sense():
    got = {}
    for f in evaluate(lab_inventory(), rules=list(RULES.values())):
        got.setdefault(f.rule_id, set()).add(f.status)
    assert got["VMS-HOST-001"] == {"pass"}  # ip_forward 0 while libvirt is stopped
    assert got["VMS-HOST-010"] == {"fail"}  # only libvirt's leftover jumps into empty chains
    assert got["VMS-HOST-012"] == {"not_applicable"}  # no guest bridge
    assert got["VMS-HOST-020"] == {"fail"}  # /dev/kvm without VT-x/AMD-V (PVM)
    assert got["VMS-HOST-017"] == {"not_applicable"}
    assert got["VMS-LVD-006"] == {"fail"} and got["VMS-LVD-009"] == {"fail"}  # lab qemu.conf: none/root
    assert got["VMS-LVD-018"] == {"unknown"}  # no libvirtd.conf collected
    assert not any("error" in s for s in got.values())


def test_leftover_libvirt_jumps_are_not_filtering():
    inv = lab_inventory()
    inv.hosts[0].sysctls["net.ipv4.ip_forward"] = "1"
    assert statuses("VMS-HOST-001", inv) == ["fail"]


def test_memory_encryption_not_applicable_without_flags_and_groups_unknown():
    assert statuses(
        "VMS-HOST-021", build(group("memory_encryption", sev=None, sev_es=None, sev_snp=None, tdx=None, cpu_flags=[]))
    ) == ["not_applicable"]
    assert statuses(
        "VMS-HOST-021",
        build(group("memory_encryption", sev=None, sev_es=None, sev_snp=None, tdx=None, cpu_flags=["sev_snp"])),
    ) == ["unknown"]
    assert statuses("VMS-HOST-019", build(dconf(unix_sock_group="wheel"))) == ["unknown"]


def test_inactive_network_bridge_is_ignored():
    def inactive(inv, f):
        inv.networks.append(Network("lab", "libvirt", mode="isolated", bridge="virbr9", host_address="10.9.9.1"))
        f["sysctl"]["net.ipv6.conf.default.accept_ra"] = "1"  # would apply to virbr9 if it existed

    assert statuses("VMS-HOST-006", build(inactive)) == ["pass"]
