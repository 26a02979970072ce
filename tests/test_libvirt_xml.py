"""The libvirt collector on the real corpus (../shared/corpus/libvirt-*) and on the test:/// driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmsentry.collect import collect

FIXTURES = Path(__file__).parent / "fixtures" / "libvirt"


def _one(corpus_dir: Path, rel: str):
    inv, _ = collect([str(corpus_dir / rel)])
    assert not inv.errors, inv.errors
    assert len(inv.vms) == 1
    return inv.vms[0]


def test_every_libvirt_corpus_file_is_read_or_reported(corpus_dir):
    folders = [corpus_dir / d for d in ("libvirt-domain", "libvirt-network", "libvirt-nwfilter")]
    files = sorted(p for f in folders for p in f.iterdir())
    inv, skipped = collect([str(f) for f in folders])
    assert skipped == 0
    named = {e.file for e in inv.errors}
    # every error names a corpus file and says where
    for err in inv.errors:
        assert err.file in {str(f) for f in files}
        assert "\n" not in err.message and err.message
    # the deliberately broken or template files are the ones reported
    broken = {Path(f).name for f in named}
    assert "kubevirt__migration_domain.xml" in broken  # no <name>
    assert "ltapi__network.xml" in broken  # address placeholder BRIDGEIP
    assert len(inv.vms) >= 120 and len(inv.networks) >= 30 and len(inv.nwfilters) >= 25
    # each readable domain file gave its VM
    assert len(inv.errors) <= 6


def test_virt_install_output_with_several_documents_keeps_the_final_definition(corpus_dir):
    vm = _one(corpus_dir, "libvirt-domain/virtmgr__virt-install-kvm-win10.xml")
    assert vm.name == "win10"
    assert vm.facts["libvirt.install_phases"]["value"] == 2
    assert vm.nics[0].mode == "bridged" and vm.nics[0].bridge == "testsuitebr0"
    assert vm.nics[0].locator.startswith("document 2, line ")


def test_cloud_config_preamble_before_the_xml_is_skipped(corpus_dir):
    vm = _one(corpus_dir, "libvirt-domain/virtmgr__virt-install-cloud-init-options2.xml")
    assert vm.nics[0].mode == "user"


def test_passt_port_forwards_expand_ranges_and_excludes(corpus_dir):
    vm = _one(corpus_dir, "libvirt-domain/libvirt__net-user-passt.xml")
    got = [(f.protocol, f.host_address, f.host_ports, f.guest_ports) for f in vm.forwards]
    assert got == [
        ("tcp", "2001:db8:ac10:fd01::1:10", [22, 22], [2022, 2022]),
        ("tcp", "2001:db8:ac10:fd01::1:10", [1000, 1019], [1000, 1019]),
        ("tcp", "2001:db8:ac10:fd01::1:10", [1021, 1029], [1021, 1029]),
        ("tcp", "2001:db8:ac10:fd01::1:10", [1041, 1050], [1041, 1050]),
        ("udp", "1.2.3.4", [5000, 5009], [6000, 6009]),
        ("udp", "1.2.3.4", [5016, 5020], [6016, 6020]),
        ("tcp", None, [80, 80], [80, 80]),  # no address: every host address
        ("tcp", None, [443, 443], [344, 344]),
    ]
    assert vm.nics[0].mode == "user"


@pytest.mark.parametrize(
    "rel, expected",
    [
        (
            "libvirt-domain/libvirt__graphics-vnc-websocket.xml",
            [("vnc", "tcp", "127.0.0.1", 5900), ("websocket", "tcp", "127.0.0.1", 5700)],
        ),
        ("libvirt-domain/libvirt__graphics-listen-network.xml", [("vnc", "tcp", "network:Bobsnetwork", 5903)]),
        (
            "libvirt-domain/intelmultios_client__ubuntu_vnc_spice.xml",
            [("chardev", "unix", None, None), ("vnc", "tcp", "0.0.0.0", 5901), ("spice", "tcp", "0.0.0.0", 5951)],
        ),
        (
            "libvirt-domain/libvirt__serial-tcp-telnet-chardev.xml",
            [("serial", "tcp", "127.0.0.1", 9999), ("serial", "tcp", "127.0.0.1", 9999)],
        ),
        ("libvirt-domain/libvirt__net-server.xml", [("net-socket", "tcp", "192.168.0.1", 5558)]),
        ("libvirt-domain/libvirt__graphics-vnc-socket.xml", [("vnc", "unix", "/tmp/vnc.sock", None)]),
    ],
)
def test_listeners(corpus_dir, rel, expected):
    vm = _one(corpus_dir, rel)
    assert [
        (listener.kind, listener.transport, listener.address, listener.port) for listener in vm.listeners
    ] == expected


def test_graphics_password_is_recorded_as_present_only(corpus_dir):
    path = corpus_dir / "libvirt-domain/virtmgr__uitests-vnc-password.xml"
    vm = _one(corpus_dir, "libvirt-domain/virtmgr__uitests-vnc-password.xml")
    assert vm.listeners[0].auth == "password"
    secret = __import__("re").search(r"passwd=['\"]([^'\"]+)", path.read_text()).group(1)
    assert secret not in json.dumps([vm.listeners[0].__repr__(), vm.facts])


def test_shares_devices_and_security(corpus_dir):
    vm = _one(corpus_dir, "libvirt-domain/libvirt__fs9p.xml")
    assert [(s.kind, s.host_path, s.guest_tag, s.writable) for s in vm.shares] == [
        ("9p", "/export/to/guest", "/import/from/host", True),
        ("9p", "/export/to/guest2", "/import/from/host2", True),
        ("9p", "/export/to/guest3", "/import/from/host3", True),
    ]
    vm = _one(corpus_dir, "libvirt-domain/libvirt__hostdev-vfio.xml")
    assert [(d.kind, d.detail) for d in vm.devices] == [("pci-passthrough", "0000:06:12.1")]
    assert _one(corpus_dir, "libvirt-domain/libvirt__launch-security-sev.xml").security.memory_encryption == "sev"
    snp = _one(corpus_dir, "libvirt-domain/virtmgr__virt-install-x86_64-launch-security-sev-snp-full.xml")
    assert snp.security.memory_encryption == "sev-snp"


def test_network_modes_from_the_corpus(corpus_dir):
    inv, _ = collect([str(corpus_dir / "libvirt-network")])
    modes = {n.source.file.rsplit("/", 1)[1]: n.mode for n in inv.networks}
    assert modes["libvirt__nat-network.xml"] == "nat"
    assert modes["libvirt__isolated-network.xml"] == "isolated"
    assert modes["libvirt__routed-network.xml"] == "routed"
    assert modes["libvirt__open-network.xml"] == "open"
    assert modes["libvirt__host-bridge-net.xml"] == "bridged"
    assert modes["libvirt__vepa-net.xml"] == "direct"
    assert modes["libvirt__hostdev.xml"] == "passthrough"
    default = next(n for n in inv.networks if n.source.file.endswith("libvirt__default.xml.in"))
    assert (default.bridge, default.host_address, default.subnets, default.dhcp) == (
        "virbr0",
        "192.168.122.1",
        ["192.168.122.0/24"],
        True,
    )
    assert default.dhcp_servers == ["192.168.122.1"] and default.dns_servers == ["192.168.122.1"]
    isolated_ports = next(n for n in inv.networks if n.source.file.endswith("libvirt__isolated-ports.xml"))
    assert isolated_ports.port_isolated is True


def test_nic_mode_resolved_through_the_network_definition(corpus_dir, tmp_path):
    net = corpus_dir / "libvirt-network/libvirt__default.xml.in"
    dom = corpus_dir / "libvirt-domain/intelmultios_client__ubuntu_rt_headless.xml"
    inv, _ = collect([str(dom)])
    assert inv.vms[0].nics[0].mode == "unknown"  # network not read: never guessed
    inv, _ = collect([str(dom), str(net)])
    nic = inv.vms[0].nics[0]
    assert (nic.mode, nic.network, nic.bridge) == ("nat", "default", "virbr0")


def test_clean_traffic_counts_as_spoof_protection_even_without_the_filter_files(corpus_dir):
    inv, _ = collect([str(FIXTURES / "testnode.xml")])
    vm1 = next(v for v in inv.vms if v.name == "vm1")
    assert vm1.nics[0].spoof_protection is True
    vm2 = next(v for v in inv.vms if v.name == "vm2")
    assert vm2.nics[0].spoof_protection is False


def test_live_test_driver_node_fixture():
    from vmsentry.collect.libvirt_link import link
    from vmsentry.collect.libvirt_live import read_uri

    inv = read_uri(f"test://{FIXTURES / 'testnode.xml'}")
    link(inv)
    assert not inv.errors
    vms = {v.name: v for v in inv.vms}
    assert set(vms) == {"vm1", "vm2"} and vms["vm1"].state == "running"
    nic = vms["vm1"].nics[0]
    # a running test-driver domain gets tap names of its own (testnetN), as a real one gets vnetN
    assert (nic.mode, nic.network, nic.bridge, nic.mac, nic.ip, nic.target) == (
        "nat",
        "labnet",
        "virbr-lab",
        "52:54:00:00:00:01",
        "10.98.0.11",
        "testnet0",
    )
    assert [(n.mode, n.bridge) for n in vms["vm2"].nics] == [("bridged", "br-test"), ("isolated", "virbr-quar")]
    assert vms["vm1"].listeners[0].address == "0.0.0.0" and vms["vm1"].listeners[0].port == 5910
    assert vms["vm1"].source.uri.endswith("#domain=vm1")
    assert {n.name: n.mode for n in inv.networks} == {"labnet": "nat", "quarantine": "isolated"}


def test_live_default_test_driver_through_the_cli(run_cli):
    proc = run_cli("inventory", "--libvirt", "test:///default")
    assert proc.returncode == 0, proc.stderr
    inv = json.loads(proc.stdout)
    assert inv["schema"] == "vmsentry.inventory/1"
    vm = inv["vms"][0]
    assert vm["name"] == "test" and vm["nics"][0]["mode"] == "nat" and vm["nics"][0]["bridge"] == "virbr0"


def test_unreachable_libvirt_uri_is_one_error_line(run_cli):
    proc = run_cli("inventory", "--libvirt", "test:///nonexistent/node.xml")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("vmsentry:")]
    assert len(lines) == 1 and "test:///nonexistent/node.xml" in lines[0] and "Traceback" not in proc.stderr
