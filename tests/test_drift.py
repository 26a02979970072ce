"""analyse/drift.py on pairs of real definitions: a corpus domain (and network) read by vmsentry's own
collector, then the same file changed the way an administrator (or an attacker with libvirt access) would,
read again. Expectations come from the change made, not from vmsentry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from vmsentry.analyse.drift import drift_alert, inventory_changes, is_drift, vm_changes
from vmsentry.collect import collect
from vmsentry.model import Inventory

NETWORKS = ("libvirt__host-bridge-net.xml", "libvirt__isolated-network.xml")
GUEST = Path(__file__).parent / "integration" / "fixtures" / "guest.xml"  # NIC on the NAT `default` network
DEFAULT_NET = Path(__file__).parent / "integration" / "fixtures" / "default-net.xml"


def _read(tmp: Path, name: str, xml: bytes, extra: tuple[Path, ...] = ()) -> Inventory:
    folder = tmp / name
    folder.mkdir()
    (folder / "domain.xml").write_bytes(xml)
    inv, _ = collect([str(folder), *map(str, extra)])
    assert not inv.errors, inv.errors
    return inv


def _edit(xml: bytes, change) -> bytes:
    root = etree.fromstring(xml)
    change(root)
    return etree.tostring(root)


def _pair(tmp_path, xml: bytes, change, extra=()) -> list:
    old = _read(tmp_path, "old", xml, extra)
    new = _read(tmp_path, "new", _edit(xml, change), extra)
    assert len(old.vms) == len(new.vms) == 1
    return vm_changes(old.vms[0], new.vms[0])


def _whats(changes) -> list[str]:
    return sorted(c.what for c in changes)


def test_unchanged_vm_has_no_changes(corpus_dir, tmp_path):
    xml = (corpus_dir / "libvirt-domain" / "vdsm__domain.xml").read_bytes()
    assert _pair(tmp_path, xml, lambda root: None) == []


def test_filter_removed_is_high(corpus_dir, tmp_path):
    xml = (corpus_dir / "libvirt-domain" / "vdsm__domain.xml").read_bytes()

    def drop_filter(root):
        nic = root.find("devices/interface")
        nic.remove(nic.find("filterref"))

    changes = _pair(tmp_path, xml, drop_filter)
    assert _whats(changes) == ["nic_filter"]
    change = changes[0]
    assert (change.before, change.after) == ("vdsm-no-mac-spoofing", None)
    assert change.item == "net0 00:1a:4a:16:01:57"
    assert change.where.startswith(str(tmp_path / "new" / "domain.xml") + ": line ")
    assert change.where.endswith("/domain/devices/interface")
    alert = drift_alert(change, 1700000000.0).to_dict()
    assert alert["type"] == "config_drift" and alert["severity"] == "high"
    assert alert["attacker"] == {"mac": "00:1a:4a:16:01:57", "ip": None, "vm": change.asset}
    assert "vdsm-no-mac-spoofing" in alert["summary"] and "nothing" in alert["summary"]
    assert alert["evidence"]["change"]["before"] == "vdsm-no-mac-spoofing"


def test_filter_parameter_changed_is_medium(tmp_path):
    def with_filter(ip):
        def change(root):
            nic = root.find("devices/interface")
            flt = etree.SubElement(nic, "filterref", filter="clean-traffic")
            etree.SubElement(flt, "parameter", name="IP", value=ip)

        return change

    old = _read(tmp_path, "old", _edit(GUEST.read_bytes(), with_filter("192.168.122.10")), (DEFAULT_NET,))
    new = _read(tmp_path, "new", _edit(GUEST.read_bytes(), with_filter("192.168.122.99")), (DEFAULT_NET,))
    (change,) = vm_changes(old.vms[0], new.vms[0])
    assert (change.what, change.before, change.after) == (
        "nic_filter",
        "clean-traffic IP=192.168.122.10",
        "clean-traffic IP=192.168.122.99",
    )
    assert drift_alert(change, 0.0).severity == "medium"


def test_nic_moved_from_nat_to_host_bridge(corpus_dir, tmp_path):
    nets = tuple(corpus_dir / "libvirt-network" / n for n in NETWORKS) + (DEFAULT_NET,)

    def to_bridge_network(root):
        root.find("devices/interface/source").set("network", "host-bridge-net")

    changes = _pair(tmp_path, GUEST.read_bytes(), to_bridge_network, nets)
    by_what = {c.what: c for c in changes}
    assert _whats(changes) == ["nic_mode", "nic_network"]
    assert (by_what["nic_network"].before, by_what["nic_network"].after) == ("default", "host-bridge-net")
    assert (by_what["nic_mode"].before, by_what["nic_mode"].after) == ("nat", "bridged")
    assert drift_alert(by_what["nic_mode"], 0.0).severity == "high"
    assert drift_alert(by_what["nic_network"], 0.0).severity == "medium"
    summary = drift_alert(by_what["nic_network"], 0.0).to_dict()["summary"]
    assert "default -> host-bridge-net" in summary


def test_nic_to_isolated_network_is_medium(corpus_dir, tmp_path):
    nets = tuple(corpus_dir / "libvirt-network" / n for n in NETWORKS) + (DEFAULT_NET,)
    isolated = etree.parse(str(nets[1])).findtext("name")

    changes = _pair(
        tmp_path, GUEST.read_bytes(), lambda r: r.find("devices/interface/source").set("network", isolated), nets
    )
    mode = next(c for c in changes if c.what == "nic_mode")
    assert (mode.before, mode.after) == ("nat", "isolated")
    assert {drift_alert(c, 0.0).severity for c in changes} == {"medium"}


def test_nic_added_and_removed(tmp_path):
    def add_bridged_nic(root):
        nic = etree.SubElement(root.find("devices"), "interface", type="bridge")
        etree.SubElement(nic, "source", bridge="br-lan")
        etree.SubElement(nic, "mac", address="52:54:00:aa:bb:cc")

    old = _read(tmp_path, "old", GUEST.read_bytes(), (DEFAULT_NET,))
    new = _read(tmp_path, "new", _edit(GUEST.read_bytes(), add_bridged_nic), (DEFAULT_NET,))
    (added,) = vm_changes(old.vms[0], new.vms[0])
    assert added.what == "nic_added" and added.after["mac"] == "52:54:00:aa:bb:cc"
    assert added.after["mode"] == "bridged" and drift_alert(added, 0.0).severity == "high"
    (removed,) = vm_changes(new.vms[0], old.vms[0])
    assert removed.what == "nic_removed" and removed.before["bridge"] == "br-lan" and removed.after is None


@pytest.mark.parametrize(("address", "severity"), [("0.0.0.0", "high"), ("192.168.1.5", "high"), ("::1", "medium")])
def test_listener_moved_to_another_address(tmp_path, address, severity):
    def listen(root):
        graphics = root.find("devices/graphics")
        graphics.set("listen", address)
        graphics.find("listen").set("address", address)

    (change,) = _pair(tmp_path, GUEST.read_bytes(), listen, (DEFAULT_NET,))
    assert change.what == "listener_changed"
    assert change.before["address"] == "127.0.0.1" and change.after["address"] == address
    alert = drift_alert(change, 0.0).to_dict()
    assert alert["severity"] == severity
    assert "127.0.0.1" in alert["summary"] and address in alert["summary"]


def test_listener_added_and_port_only_change_ignored(corpus_dir, tmp_path):
    def serial_tcp(root):
        serial = etree.SubElement(root.find("devices"), "serial", type="tcp")
        etree.SubElement(serial, "source", mode="bind", host="0.0.0.0", service="4555")

    (change,) = _pair(tmp_path, GUEST.read_bytes(), serial_tcp, (DEFAULT_NET,))
    assert change.what == "listener_added" and change.after["port"] == 4555
    assert drift_alert(change, 0.0).severity == "high"
    # autoport: another port at each start is not a change (the port alone decides nothing)
    (tmp_path / "p").mkdir()

    def fixed_port(root):
        root.find("devices/graphics").set("port", "5907")
        root.find("devices/graphics").set("autoport", "no")

    assert _pair(tmp_path / "p", GUEST.read_bytes(), fixed_port, (DEFAULT_NET,)) == []


def test_share_and_forward_added(corpus_dir, tmp_path):
    fs = (corpus_dir / "libvirt-domain" / "libvirt__fs9p.xml").read_bytes()

    def another_share(root):
        el = etree.SubElement(root.find("devices"), "filesystem", type="mount")
        etree.SubElement(el, "source", dir="/")
        etree.SubElement(el, "target", dir="rootfs")

    (share,) = _pair(tmp_path, fs, another_share)
    assert share.what == "share_added" and share.after.startswith("9p / -> rootfs (rw)")

    passt = (corpus_dir / "libvirt-domain" / "libvirt__net-user-passt.xml").read_bytes()

    def another_forward(root):
        pf = etree.SubElement(root.find("devices/interface"), "portForward", proto="tcp")
        etree.SubElement(pf, "range", start="3389")

    (tmp_path / "x").mkdir()
    (fwd,) = _pair(tmp_path / "x", passt, another_forward)
    assert fwd.what == "forward_added" and fwd.after == "tcp *:3389 -> guest 3389"
    assert drift_alert(fwd, 0.0).severity == "medium"


def test_inventories_pair_by_uuid_and_report_vms_and_networks(corpus_dir, tmp_path):
    domains = corpus_dir / "libvirt-domain"
    nets = corpus_dir / "libvirt-network"
    old, _ = collect([str(domains / "vdsm__domain.xml"), str(domains / "libvirt__fs9p.xml"), str(nets / NETWORKS[0])])
    new, _ = collect([str(domains / "vdsm__domain.xml"), str(nets / NETWORKS[1])])
    changes = inventory_changes(old, new)
    gone = [c for c in changes if c.what == "vm_removed"]
    assert [c.asset for c in gone] == [v.name for v in old.vms if v.name not in {w.name for w in new.vms}]
    assert {(c.what, c.kind) for c in changes if c.kind == "network"} == {
        ("network_removed", "network"),
        ("network_added", "network"),
    }
    assert all(is_drift(c) for c in changes)
    # a renamed VM (same UUID) is the same VM
    renamed = _edit((domains / "vdsm__domain.xml").read_bytes(), lambda r: setattr(r.find("name"), "text", "other"))
    inv = _read(tmp_path, "renamed", renamed)
    assert inv.vms[0].uuid and inventory_changes(_only_vdsm(old), inv) == []


def _only_vdsm(inv: Inventory) -> Inventory:
    return Inventory(vms=[v for v in inv.vms if "vdsm" in (v.source.file or "")])


def test_saved_inventory_round_trip_has_no_drift(corpus_dir, tmp_path):
    """`vmsentry drift OLD NEW` compares saved inventories: a saved inventory against itself is quiet."""
    inv, _ = collect([str(corpus_dir / "libvirt-domain"), str(corpus_dir / "libvirt-network")])
    saved = Inventory.from_dict(json.loads(json.dumps(inv.to_dict())))
    assert inventory_changes(inv, saved) == []
    fresh = inventory_changes(None, saved)
    assert len(fresh) == len(saved.vms) + len(saved.networks)
    assert {c.what for c in fresh} == {"vm_added", "network_added"}


def test_state_change_is_not_drift(tmp_path):
    old = _read(tmp_path, "old", GUEST.read_bytes(), (DEFAULT_NET,)).vms[0]
    new = _read(tmp_path, "new", GUEST.read_bytes(), (DEFAULT_NET,)).vms[0]
    old.state, new.state = "shut-off", "running"
    (change,) = vm_changes(old, new)
    assert (change.what, change.before, change.after) == ("state", "shut-off", "running")
    assert not is_drift(change)
