"""QEMU command lines: /proc cmdline copies, start scripts, argument files, and apply_args for libvirt."""

from __future__ import annotations

import json
import os

import pytest

from vmsentry.collect import qemu_cmdline, read_paths
from vmsentry.collect.qemu_cmdline import apply_args, vm_from_argv
from vmsentry.collect.qemu_options import QemuOpts
from vmsentry.model import VM, Inventory, Nic, Source

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "qemu")
DEVBOX = os.path.join(FIXTURES, "devbox", "cmdline")
SCRIPT = os.path.join(FIXTURES, "start-vms.sh")
LEGACY_AND_JSON = os.path.join(FIXTURES, "legacy-and-json.qemu")
MALFORMED = os.path.join(FIXTURES, "malformed.args")
SECRETS = ("S3cr3tVNC", "SpiceSecret", "secretpw")


def listeners(vm):
    return [
        (listener.kind, listener.transport, listener.address, listener.port, listener.auth, listener.tls)
        for listener in vm.listeners
    ]


def argv_vm(*args: str) -> VM:
    vm, errors = vm_from_argv(["qemu-system-x86_64", "-nodefaults", *args], "t", Source(file="t.cmdline"))
    assert errors == []
    return vm


# -- claims --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, head, claimed",
    [
        ("/proc/1234/cmdline", b"", True),
        ("vm.cmdline", b"", True),
        ("vm.qemu", b"", True),
        ("domain.args", b"", True),
        ("start.sh", b"#!/bin/sh\nqemu-system-x86_64 -m 1G\n", True),
        ("start.sh", b"#!/bin/sh\nsudo -u vm /usr/bin/qemu-kvm -m 1G\n", True),
        ("run", b"/usr/bin/qemu-system-aarch64\x00-M\x00virt\x00", True),
        ("run", b"/usr/bin/python3\x00x.py\x00", False),
        ("setup.sh", b"#!/bin/sh\nsudo modprobe kvm\n", False),
        ("web.xml", b"<domain type='kvm'>\n<emulator>/usr/bin/qemu-system-x86_64</emulator>", False),
        ("notes.txt", b"# qemu-system-x86_64 is great\n", False),
        ("inventory.json", b'{"schema": "vmsentry.inventory/1"}', False),
    ],
)
def test_claims(path, head, claimed):
    assert qemu_cmdline.claims(path, head) is claimed


def test_dispatcher_reads_the_fixtures():
    inv, skipped = read_paths([DEVBOX, SCRIPT, LEGACY_AND_JSON, MALFORMED])
    assert skipped == 0
    assert [vm.name for vm in inv.vms] == [
        "devbox",
        "web",
        "db server",
        "legacy",
        "legacy-and-json",
        "jsonvm",
        "netzoo",
        "malformed",
    ]
    assert all(vm.platform == "qemu" for vm in inv.vms)


# -- option syntax ----------------------------------------------------------------------------------------


def test_option_syntax():
    opts = QemuOpts.parse("user,id=n0,smb=/srv/a,,b,hostfwd=tcp::1-:1,hostfwd=udp::2-:2,server,nowait", "type")
    assert opts.get("type") == "user" and opts.get("smb") == "/srv/a,b"
    assert opts.get_all("hostfwd") == ["tcp::1-:1", "udp::2-:2"]
    assert opts.flag("server") is True and opts.flag("wait") is False  # "nowait" is wait=off
    assert QemuOpts.parse('{"type":"user","id":"n","restrict":true,"hostfwd":[{"str":"tcp::1-:2"}]}').pairs == [
        ("type", "user"),
        ("id", "n"),
        ("restrict", "on"),
        ("hostfwd", "tcp::1-:2"),
    ]
    assert QemuOpts.parse("stream,addr.type=inet,addr.port=7", "type").get("addr.port") == "7"
    assert QemuOpts.parse('{"addr": {"type": "unix", "path": "/s"}}').get("addr.path") == "/s"


# -- /proc-style file ------------------------------------------------------------------------------------


def test_proc_cmdline_fixture():
    inv = qemu_cmdline.read(DEVBOX)
    assert inv.errors == []
    [vm] = inv.vms
    assert vm.name == "devbox" and vm.uuid == "5a3c6f2e-1b7d-4c1a-9e0f-2d4b8c6a1f00"
    assert vm.platform == "qemu" and vm.source.file == DEVBOX
    assert vm.security.memory_encryption == "sev"

    nics = {nic.id: nic for nic in vm.nics}
    assert list(nics) == ["n0", "n1", "n2"]  # -nodefaults: no default NIC
    assert (nics["n0"].mode, nics["n0"].type, nics["n0"].model, nics["n0"].mac) == (
        "user",
        "user",
        "virtio",
        "52:54:00:12:34:56",
    )
    assert (nics["n1"].mode, nics["n1"].type, nics["n1"].target, nics["n1"].model) == (
        "unknown",
        "tap",
        "tap-devbox",
        "e1000",
    )
    assert (nics["n2"].mode, nics["n2"].bridge, nics["n2"].model) == ("bridged", "br0", "virtio")
    assert nics["n0"].locator == "argv[15] -netdev"

    assert [(f.protocol, f.host_address, f.host_ports, f.guest_ports, f.nic, f.locator) for f in vm.forwards] == [
        ("tcp", None, [2222, 2222], [22, 22], "n0", "argv[15] -netdev"),
        ("udp", "127.0.0.1", [5353, 5353], [53, 53], "n0", "argv[15] -netdev"),
    ]
    assert vm.facts["qemu.netdev.n0.restrict"] == {"value": "on", "at": "argv[15] -netdev"}
    assert vm.facts["qemu.netdev.n0.guestfwd"]["value"] == ["tcp:10.0.2.100:8080-cmd:netcat 10.0.0.5 80"]

    assert sorted(listeners(vm), key=str) == sorted(
        [
            ("vnc", "tcp", None, 5901, "password", False),
            ("websocket", "tcp", None, 5701, "password", False),
            ("spice", "tcp", "0.0.0.0", 5930, "none", False),
            ("spice", "tcp", "0.0.0.0", 5931, "none", True),
            ("monitor", "tcp", "0.0.0.0", 4444, "none", False),  # -qmp tcp:...,server=on
            ("monitor", "unix", "/run/devbox-mon.sock", None, "none", False),  # -monitor unix:...,server
            ("monitor", "tcp", "127.0.0.1", 4445, "none", False),  # -chardev used by -mon
            ("serial", "tcp", None, 4555, "none", False),  # -chardev used by isa-serial
            ("serial", "tcp", None, 4556, "none", False),  # -serial telnet::4556,server
            ("migration", "tcp", "0.0.0.0", 49152, "none", False),  # -incoming tcp:0:49152
        ],
        key=str,
    )  # the guest-agent chardev is a client socket: not a listener

    assert [(s.kind, s.host_path, s.guest_tag, s.writable) for s in vm.shares] == [
        ("smb", "/srv/share,dev", None, True),
        ("9p", "/home/dev/src", "src", True),
        ("9p", "/srv/ro", "ro", False),
        ("virtiofs", None, "shared", True),
    ]
    assert vm.facts["qemu.fsdev.fs0.security_model"]["value"] == "passthrough"
    assert vm.facts["qemu.fsdev.fs1.security_model"]["value"] == "mapped-xattr"

    assert [(d.kind, d.detail) for d in vm.devices] == [
        ("pci-passthrough", "0000:03:00.0"),
        ("usb-passthrough", "vendorid=0x046d,productid=0xc52b"),
        ("usb-redirection", "chardev=charredir0 (spicevmc)"),
    ]

    assert vm.facts["qemu.sandbox"] == {"value": "on", "at": "argv[69] -sandbox"}
    assert vm.facts["qemu.sandbox.elevateprivileges"]["value"] == "deny"
    assert vm.facts["qemu.runas"]["value"] == "qemu"
    assert not any(secret in json.dumps(inv.to_dict()) for secret in SECRETS)


# -- a shell script with continuations ------------------------------------------------------------------


def test_start_script_fixture():
    inv = qemu_cmdline.read(SCRIPT)
    assert inv.errors == []
    web, db, legacy = inv.vms
    assert (web.name, db.name, legacy.name) == ("web", "db server", "legacy")

    [nic] = web.nics
    assert (nic.id, nic.mode, nic.model, nic.mac) == ("nic0", "user", "virtio", "52:54:00:aa:00:01")
    assert nic.locator == "line 10, argv[6] -nic"  # the physical line of the -nic argument
    assert [(f.host_address, f.host_ports, f.guest_ports) for f in web.forwards] == [
        (None, [8080, 8080], [80, 80]),
        ("0.0.0.0", [8443, 8443], [443, 443]),
    ]
    assert listeners(web) == [
        ("vnc", "tcp", "0.0.0.0", 5900, "none", False),
        ("monitor", "tcp", "127.0.0.1", 5555, "none", False),
    ]
    assert web.listeners[1].locator == "line 12, argv[10] -monitor"

    assert [(n.id, n.mode, n.type, n.model) for n in db.nics] == [
        ("s0", "internal", "socket", "e1000"),
        ("s1", "internal", "socket", "e1000"),
        ("s2", "internal", "socket", "e1000"),
    ]
    assert listeners(db) == [
        ("net-socket", "tcp", None, 10000, "none", False),  # listen=:10000
        ("net-socket", "udp", "230.0.0.1", 1234, "none", False),  # mcast: bound to the group port
        ("vnc", "unix", "/run/db-vnc.sock", None, "none", False),
        ("spice", "unix", "/run/db-spice.sock", None, "ticket", False),
    ]  # connect= is a client

    # no network option at all: QEMU's default "-net nic -net user"
    [default_nic] = legacy.nics
    assert (default_nic.id, default_nic.mode) == ("user.0", "user")
    assert default_nic.locator.startswith("line 24, argv[0]")
    assert listeners(legacy) == [
        ("vnc", "tcp", "127.0.0.1", 5902, "password", False),  # localhost, old password=
        ("monitor", "tcp", None, 1234, "none", False),
    ]  # -s = -gdb tcp::1234
    assert not any(secret in json.dumps(inv.to_dict()) for secret in SECRETS)


# -- legacy -net, JSON options, the other network backends ------------------------------------------------


def test_legacy_json_and_backends_fixture():
    inv = qemu_cmdline.read(LEGACY_AND_JSON)
    assert inv.errors == []
    legacy, jsonvm, netzoo = inv.vms

    assert legacy.name == "legacy-and-json"  # no -name: the file name
    assert [(n.id, n.mode, n.model, n.mac, n.target) for n in legacy.nics] == [
        ("user.0", "user", "rtl8139", "52:54:00:00:00:99", None),  # -net nic paired with -net user by order
        ("tap.0", "unknown", "e1000", None, "tap9"),
    ]
    assert legacy.nics[1].detail == "script=/etc/qemu-ifup"  # where the tap goes depends on that script
    assert [(f.host_address, f.host_ports, f.nic) for f in legacy.forwards] == [(None, [3389, 3389], "user.0")]
    assert listeners(legacy) == [
        ("migration", "tcp", "::", 4444, "none", False),
        ("monitor", "tcp", None, 1234, "none", False),
    ]  # gdb stub
    assert legacy.facts["qemu.sandbox"]["value"] == "off"
    assert legacy.security.memory_encryption == "sev-snp"  # -machine memory-encryption= (older spelling)

    assert jsonvm.security.memory_encryption == "tdx"
    [nic] = jsonvm.nics
    assert (nic.id, nic.mode, nic.model, nic.mac) == ("hostnet0", "user", "virtio", "52:54:00:bb:00:01")
    assert [(f.host_address, f.host_ports, f.guest_ports) for f in jsonvm.forwards] == [
        ("127.0.0.1", [2022, 2022], [22, 22])
    ]
    assert jsonvm.facts["qemu.netdev.hostnet0.restrict"]["value"] == "on"

    modes = {n.id: (n.mode, n.type) for n in netzoo.nics}
    assert modes == {
        "st0": ("internal", "stream"),
        "st1": ("internal", "stream"),
        "dg0": ("internal", "dgram"),
        "vu0": ("unknown", "vhost-user"),
        "l2": ("unknown", "l2tpv3"),
        "vde0": ("unknown", "vde"),
        "hb0": ("bridged", "tap"),
        "vdpa0": ("passthrough", "vhost-vdpa"),
    }
    assert next(n for n in netzoo.nics if n.id == "hb0").bridge == "br-lab"  # the helper's --br
    assert sorted(listeners(netzoo), key=str) == sorted(
        [
            ("net-socket", "tcp", "0.0.0.0", 7000, "none", False),  # stream server=on
            ("net-socket", "udp", "127.0.0.1", 7001, "none", False),  # dgram local address
            ("net-socket", "udp", "192.168.1.5", 1701, "none", False),  # l2tpv3 udp source port
            ("chardev", "unix", "/run/vhost-user0.sock", None, "none", False),
            ("chardev", "udp", None, 4001, "none", False),
            ("monitor", "tcp", None, 6000, "none", False),  # mux chardev shared by -mon and -serial
        ],
        key=str,
    )
    assert [(d.kind, d.detail) for d in netzoo.devices] == [("shared-memory", "hostmem")]


# -- malformed values -----------------------------------------------------------------------------------


def test_malformed_values_are_errors_and_the_rest_is_read():
    inv = qemu_cmdline.read(MALFORMED)
    [vm] = inv.vms
    assert all(error.file == MALFORMED for error in inv.errors)
    assert [error.message for error in inv.errors] == [
        "line 1, argv[0] -netdev: hostfwd 'tcp::notaport-:22' host side: 'notaport' is not a port number",
        "line 1, argv[0] -netdev: restrict='maybe' is not on/off",
        "line 2, argv[2] -netdev: netdev has no id=",
        "line 3, argv[4] -vnc: VNC display 'somehost' is not [HOST]:DISPLAY, unix:PATH or none",
        "line 4, argv[6] -vnc: VNC display 99999 is beyond the last port",
        "line 5, argv[8] -spice: port: 'abc' is not a port number",
        "line 6, argv[10] -chardev: chardev has no id=",
        "line 7, argv[12] -qmp: tcp: '99999' is not a port number",
        "line 8, argv[14] -netdev: malformed JSON option value: Expecting value (column 24)",
        "line 9, argv[16] -incoming: incoming: 'nohostport' is not HOST:PORT",
        "line 10, argv[18] -netdev: hostfwd 'icmp::1-:1': protocol must be tcp or udp",
        "line 11, argv[20] -sandbox: enable='perhaps' is not on/off",
        "line 13, argv[24] -monitor: missing argument",
    ]
    # what was valid is still there: the good forward of n0, its model from a later -device, n1
    assert [(f.host_ports, f.nic) for f in vm.forwards] == [([2200, 2200], "n0")]
    assert [(n.id, n.model) for n in vm.nics] == [("n0", "e1000"), ("n1", None)]
    assert "qemu.netdev.n0.restrict" not in vm.facts and vm.listeners == []


def test_unterminated_quote_in_a_script(tmp_path):
    path = tmp_path / "bad.sh"
    path.write_text("qemu-system-x86_64 -name 'oops\nqemu-system-x86_64 -name fine -nodefaults\n")
    inv = qemu_cmdline.read(str(path))
    assert [vm.name for vm in inv.vms] == ["fine"]
    assert inv.errors[0].message.startswith("line 1: cannot split into arguments")


def test_a_file_without_a_command(tmp_path):
    path = tmp_path / "empty.qemu"
    path.write_text("# nothing here\n")
    inv = qemu_cmdline.read(str(path))
    assert inv.vms == [] and inv.errors[0].message == "no QEMU command line found"


# -- one option at a time -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (":1", [("vnc", "tcp", None, 5901, "none", False)]),
        ("0.0.0.0:1", [("vnc", "tcp", "0.0.0.0", 5901, "none", False)]),
        ("127.0.0.1:0", [("vnc", "tcp", "127.0.0.1", 5900, "none", False)]),
        ("[::]:2", [("vnc", "tcp", "::", 5902, "none", False)]),
        ("localhost:5,to=10", [("vnc", "tcp", "127.0.0.1", 5905, "none", False)]),
        ("unix:/run/vnc.sock", [("vnc", "unix", "/run/vnc.sock", None, "none", False)]),
        ("none", []),
        ("192.168.1.2:0,reverse=on", []),  # QEMU connects out to a listening viewer
        (":1,password=on", [("vnc", "tcp", None, 5901, "password", False)]),
        (":1,password", [("vnc", "tcp", None, 5901, "password", False)]),
        (":1,password=off", [("vnc", "tcp", None, 5901, "none", False)]),
        (":1,tls-creds=tls0", [("vnc", "tcp", None, 5901, "tls", True)]),
        (":1,tls-creds=tls0,password=on", [("vnc", "tcp", None, 5901, "password", True)]),
        (":1,sasl=on", [("vnc", "tcp", None, 5901, "sasl", False)]),
        (
            ":1,websocket=on",
            [("vnc", "tcp", None, 5901, "none", False), ("websocket", "tcp", None, 5701, "none", False)],
        ),
        (
            "127.0.0.1:1,websocket=5800",
            [("vnc", "tcp", "127.0.0.1", 5901, "none", False), ("websocket", "tcp", "127.0.0.1", 5800, "none", False)],
        ),
        (
            ":1,websocket=0.0.0.0:5800",
            [("vnc", "tcp", None, 5901, "none", False), ("websocket", "tcp", "0.0.0.0", 5800, "none", False)],
        ),
    ],
)
def test_vnc(value, expected):
    assert listeners(argv_vm("-vnc", value)) == expected


def test_display_vnc_is_the_same_as_vnc():
    assert listeners(argv_vm("-display", "vnc=:3,password=on")) == [("vnc", "tcp", None, 5903, "password", False)]


@pytest.mark.parametrize(
    "value, auth",
    [
        ("port=5930,password=secret", "ticket"),
        ("port=5930,password-secret=sec0", "ticket"),
        ("port=5930,disable-ticketing=on", "none"),
        ("port=5930,disable-ticketing", "none"),
        ("port=5930", "unknown"),  # no password yet: one may be set later over the monitor
        ("port=5930,sasl=on", "sasl"),
    ],
)
def test_spice_auth(value, auth):
    vm = argv_vm("-spice", value)
    assert listeners(vm) == [("spice", "tcp", None, 5930, auth, False)]
    assert "secret" not in json.dumps(Inventory(vms=[vm]).to_dict())


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("-monitor", "tcp::4444,server=on,wait=off", [("monitor", "tcp", None, 4444, "none", False)]),
        ("-monitor", "telnet:0.0.0.0:4444,server,nowait", [("monitor", "tcp", "0.0.0.0", 4444, "none", False)]),
        ("-monitor", "tcp:10.0.0.1:4444", []),  # a client: QEMU connects out
        ("-monitor", "stdio", []),
        ("-monitor", "none", []),
        ("-qmp", "unix:/run/qmp.sock,server,nowait", [("monitor", "unix", "/run/qmp.sock", None, "none", False)]),
        ("-serial", "tcp:127.0.0.1:4555,server=on,wait=off", [("serial", "tcp", "127.0.0.1", 4555, "none", False)]),
        ("-serial", "mon:telnet::4000,server,nowait", [("monitor", "tcp", None, 4000, "none", False)]),
        ("-serial", "udp:10.0.0.9:4000@:4001", [("serial", "udp", None, 4001, "none", False)]),
        ("-serial", "udp:10.0.0.9:4000", []),
        ("-chardev", "socket,id=c0,port=5000,server=on,tls-creds=tls0", [("chardev", "tcp", None, 5000, "tls", True)]),
        ("-chardev", "socket,id=c0,host=::,port=5000,server=on", [("chardev", "tcp", "::", 5000, "none", False)]),
        ("-chardev", "socket,id=c0,port=5000", []),
        ("-incoming", "tcp:127.0.0.1:4444", [("migration", "tcp", "127.0.0.1", 4444, "none", False)]),
        ("-incoming", "tcp::4444", [("migration", "tcp", None, 4444, "none", False)]),
        ("-incoming", "unix:/run/mig.sock", [("migration", "unix", "/run/mig.sock", None, "none", False)]),
        ("-incoming", "defer", []),
        ("-gdb", "tcp::1234", [("monitor", "tcp", None, 1234, "none", False)]),
    ],
)
def test_console_and_socket_listeners(option, value, expected):
    assert listeners(argv_vm(option, value)) == expected


def test_runas_and_confidential_guest_needs_the_machine_reference():
    vm = argv_vm("-runas", "nobody", "-object", "sev-guest,id=sev0")
    assert vm.facts["qemu.runas"]["value"] == "nobody"
    assert vm.security.memory_encryption is None  # the object alone does not encrypt the guest
    vm = argv_vm("-machine", "q35", "-M", "confidential-guest-support=sev0", "-object", "sev-guest,id=sev0")
    assert vm.security.memory_encryption == "sev"


def test_unknown_options_and_positional_arguments_are_ignored():
    vm, errors = vm_from_argv(
        [
            "qemu-system-x86_64",
            "disk.img",
            "-enable-kvm",
            "-m",
            "2G",
            "-frobnicate",
            "-some-new-flag",
            "-nic",
            "user,hostfwd=tcp::80-:80",
        ],
        "t",
        Source(file="t"),
    )
    assert errors == []
    assert [(f.host_ports, f.nic) for f in vm.forwards] == [([80, 80], "nic0")]


# -- apply_args as the libvirt reader uses it ------------------------------------------------------------


def test_apply_args_on_a_libvirt_vm():
    vm = VM(name="web", platform="libvirt", source=Source(file="/etc/libvirt/qemu/web.xml"))
    vm.nics.append(Nic(id="hostnet0", mode="nat", network="default"))
    argv = [
        "-netdev",
        "user,id=extra,hostfwd=tcp::2222-:22",
        "-device",
        "e1000,netdev=extra",
        "-device",
        "virtio-net-pci,netdev=hostnet0,mac=52:54:00:00:00:42",
        "-monitor",
        "tcp::4444,server,nowait",
        "-vnc",
        "bogus",
    ]
    errors = apply_args(vm, argv, "/domain/commandline", arg_lines=[41, 42, 43, 44, 45, 46, 47, 48, 49, 50])
    assert [(n.id, n.mode, n.model) for n in vm.nics] == [("hostnet0", "nat", "virtio"), ("extra", "user", "e1000")]
    assert vm.nics[0].mac == "52:54:00:00:00:42"
    assert vm.forwards[0].locator == "line 41, /domain/commandline, argv[0] -netdev"
    assert listeners(vm) == [("monitor", "tcp", None, 4444, "none", False)]
    # no QEMU binary first: these are extra arguments, so no default network is assumed
    assert [error.file for error in errors] == ["/etc/libvirt/qemu/web.xml"]
    assert errors[0].message.startswith("line 49, /domain/commandline, argv[8] -vnc: VNC display 'bogus'")


def test_apply_args_skips_a_leading_binary_and_plain_locator():
    vm = VM(name="x", platform="libvirt", source=Source(uri="qemu:///system"))
    errors = apply_args(vm, ["/usr/bin/qemu-system-x86_64", "-nodefaults", "-spice", "port=x"], "")
    assert [(e.file, e.message) for e in errors] == [
        ("qemu:///system", "argv[2] -spice: port: 'x' is not a port number")
    ]
