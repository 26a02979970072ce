"""libvirt qemu.conf / libvirtd.conf / virtproxyd.conf reader: values, lines, errors, secrets."""

from __future__ import annotations

import json
import os

import pytest

from vmsentry.collect import libvirt_conf, read_paths
from vmsentry.collect.source_file import BadInput

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "conf")
QEMU_CONF = os.path.join(FIXTURES, "qemu.conf")
LIBVIRTD_CONF = os.path.join(FIXTURES, "libvirtd.conf")
VIRTPROXYD_CONF = os.path.join(FIXTURES, "host1-virtproxyd.conf")


@pytest.mark.parametrize(
    "name, claimed",
    [
        ("qemu.conf", True),
        ("libvirtd.conf", True),
        ("virtproxyd.conf", True),
        ("host1-qemu.conf", True),
        ("/etc/libvirt/qemu.conf", True),
        ("virtqemud.conf", False),
        ("qemu.conf.bak", False),
        ("domain.xml", False),
    ],
)
def test_claims_by_name(name, claimed):
    assert libvirt_conf.claims(name, b"# comment\n") is claimed


def test_qemu_conf_values_and_lines():
    inv = libvirt_conf.read(QEMU_CONF)
    assert len(inv.hosts) == 1
    host = inv.hosts[0]
    assert host.name == "" and host.platform == "linux"
    conf = host.facts["qemu_conf"]
    assert conf["file"] == QEMU_CONF
    values, lines = conf["values"], conf["lines"]
    assert values["vnc_listen"] == "0.0.0.0"
    assert values["spice_listen"] == "0.0.0.0"  # single-quoted, trailing comment
    assert values["vnc_tls"] == 1 and isinstance(values["vnc_tls"], int)
    assert values["user"] == "+0"
    assert values["security_driver"] == ["selinux", "apparmor"]
    assert values["security_default_confined"] == 0
    assert values["namespaces"] == []
    assert values["cgroup_device_acl"] == [
        "/dev/null",
        "/dev/full",
        "/dev/zero",
        "/dev/random",
        "/dev/urandom",
        "/dev/ptmx",
        "/dev/kvm",
        "/dev/userfaultfd",
    ]
    assert values["migration_port_min"] == 49152
    with open(QEMU_CONF) as fh:
        text_lines = fh.read().splitlines()
    for key in ("vnc_listen", "vnc_tls", "cgroup_device_acl", "relaxed_acs_check"):
        assert text_lines[lines[key] - 1].startswith(key)
    # commented-out settings are not there: absent means the platform default
    assert "vnc_auto_unix_socket" not in values and "vnc_tls_x509_verify" not in values


def test_first_occurrence_wins_like_libvirt():
    conf = libvirt_conf.read(QEMU_CONF).hosts[0].facts["qemu_conf"]
    assert conf["values"]["vnc_listen"] == "0.0.0.0"
    assert conf["lines"]["vnc_listen"] == 11


def test_bad_line_is_an_error_and_the_rest_is_read():
    inv = libvirt_conf.read(QEMU_CONF)
    values = inv.hosts[0].facts["qemu_conf"]["values"]
    assert [e.file for e in inv.errors] == [QEMU_CONF]
    assert inv.errors[0].message.startswith("line 68: expecting '=' after 'remote_display_port_min'")
    assert "remote_display_port_min" not in values
    assert values["remote_display_port_max"] == 65535  # the line after the typo
    assert values["relaxed_acs_check"] == 1


def test_secrets_are_never_stored():
    for path in (QEMU_CONF, LIBVIRTD_CONF):
        inv = libvirt_conf.read(path)
        dumped = json.dumps(inv.to_dict())
        assert "XYZ12345" not in dumped and "hunter2" not in dumped
    values = libvirt_conf.read(QEMU_CONF).hosts[0].facts["qemu_conf"]["values"]
    assert values["vnc_password"] == "<set>"
    assert values["spice_password"] == "<set>"
    assert values["vnc_tls_x509_secret_uuid"] == "<set>"


def test_empty_password_is_kept_as_empty(tmp_path):
    path = tmp_path / "qemu.conf"
    path.write_text('vnc_password = ""\n')
    assert libvirt_conf.read(str(path)).hosts[0].facts["qemu_conf"]["values"]["vnc_password"] == ""


def test_libvirtd_conf():
    inv = libvirt_conf.read(LIBVIRTD_CONF)
    conf = inv.hosts[0].facts["libvirtd_conf"]
    values = conf["values"]
    assert values["listen_tcp"] == 1 and values["listen_tls"] == 0
    assert values["auth_tcp"] == "none"  # second statement on a line, after ';'
    assert conf["lines"]["auth_tcp"] == conf["lines"]["auth_unix_rw"]
    assert values["tls_no_verify_certificate"] == 1
    assert values["sasl_allowed_username_list"] == ["joe@EXAMPLE.COM", "fred@EXAMPLE.COM"]  # trailing comma
    assert values["log_outputs"] == "3:syslog:libvirtd\n1:file:/var/log/libvirt/libvirtd.log"
    # a comment inside a list is a syntax error for libvirt: one error, the list skipped, reading goes on
    assert len(inv.errors) == 1 and "line 43" in inv.errors[0].message
    assert "access_drivers" not in values
    assert values["max_clients"] == 5000
    assert conf["lines"]["log_outputs"] == 47


def test_virtproxyd_conf_goes_into_libvirtd_conf():
    facts = libvirt_conf.read(VIRTPROXYD_CONF).hosts[0].facts
    assert list(facts) == ["libvirtd_conf"]
    assert facts["libvirtd_conf"]["file"] == VIRTPROXYD_CONF
    assert facts["libvirtd_conf"]["values"] == {"listen_tcp": 1, "auth_tcp": "sasl", "listen_addr": "192.168.1.10"}


@pytest.mark.parametrize(
    "text, message",
    [
        ('vnc_listen = "0.0.0.0\n', "line 1: unterminated string for 'vnc_listen'"),
        ("vnc_tls = yes\n", "line 1: expecting a value for 'vnc_tls'"),
        ("vnc_tls = 1 2\n", "line 1: unexpected '2' after the value of 'vnc_tls'"),
        ("= 1\n", "line 1: expecting a setting name"),
        ('a = [ "x" "y" ]\n', "line 1: expecting ',' or ']' in the list for 'a'"),
        ('a = [ "x",\n "y"\n', "line 3: expecting ',' or ']' in the list for 'a', found 'after = 7'"),
        (
            'a = [ "x",\n',
            "line 2: expecting a value for 'a' (a quoted string, a number or a [list]), found 'after = 7'",
        ),
        ("a = [[1]]\n", "line 1: nested lists are not allowed"),
        ('a = """never closed\n', 'line 1: unterminated """ string for \'a\''),
        ("a =\n", "line 1: expecting a value for 'a'"),
    ],
)
def test_syntax_errors(tmp_path, text, message):
    path = tmp_path / "qemu.conf"
    path.write_text(text + "after = 7\n")
    inv = libvirt_conf.read(str(path))
    assert len(inv.errors) == 1, inv.errors
    assert inv.errors[0].message.startswith(message), inv.errors[0].message
    if "never closed" not in text:
        assert inv.hosts[0].facts["qemu_conf"]["values"]["after"] == 7


def test_list_not_closed_at_end_of_file(tmp_path):
    path = tmp_path / "qemu.conf"
    path.write_text('a = 1\nb = [ "x",\n  "y"\n')
    inv = libvirt_conf.read(str(path))
    assert [e.message for e in inv.errors] == ["line 4: list for 'b' is not closed with ]"]
    assert inv.hosts[0].facts["qemu_conf"]["values"] == {"a": 1}


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "qemu.conf"
    path.write_bytes(b"\x00\x01\x02 binary")
    with pytest.raises(BadInput):
        libvirt_conf.read(str(path))


def test_dispatcher_picks_libvirt_conf():
    inv, skipped = read_paths([QEMU_CONF, LIBVIRTD_CONF])
    assert skipped == 0
    assert sorted(next(iter(h.facts)) for h in inv.hosts) == ["libvirtd_conf", "qemu_conf"]
