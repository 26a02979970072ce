"""The response policy (act/response.py): its YAML file (every key, every kind of bad value with its line) and
every branch of Responder.decide: never, held, observe, no rule, unknown attacker, ask, auto, rate limit, TTL."""

from __future__ import annotations

import shlex

import pytest

from vmsentry.act.quarantine import Held, Target
from vmsentry.act.response import (
    DEFAULT_AUTO,
    AutoRule,
    ConfigError,
    Responder,
    ResponseConfig,
    expired,
    load_response_config,
)

FULL = """\
respond: auto
quarantine: libvirt
auto:
  - {types: [arp_spoof, nd_spoof, rogue_dhcp, rogue_ra, mac_flood], min_severity: high, min_confidence: 0.9}
  - {types: [anomaly], min_confidence: 0.8}
never: [host, jump]
max_per_minute: 3
ttl: 3600
forensics_port: {proto: tcp, port: 22}
host_addresses: [10.99.0.1]
host_ports: p-host
interfaces: [virbr0, br0]
libvirt: qemu:///system
inventory: inv.json
model: m.model
evidence: /var/lib/vmsentry/incidents
audit: /var/lib/vmsentry/audit
format: eve
output: /var/log/vmsentry/alerts.json
syslog: udp://127.0.0.1:514
metrics: 127.0.0.1:9477
netns: lab
duration: 60
"""


def write(tmp_path, text):
    p = tmp_path / "watch.yaml"
    p.write_text(text)
    return str(p)


def test_full_file_reads_every_key(tmp_path):
    cfg = load_response_config(write(tmp_path, FULL))
    assert cfg.respond == "auto" and cfg.quarantine == "libvirt"
    assert cfg.auto == DEFAULT_AUTO
    assert cfg.never == ("host", "jump")
    assert (cfg.max_per_minute, cfg.ttl, cfg.forensics_port) == (3, 3600.0, ("tcp", 22))
    assert cfg.host_addresses == ("10.99.0.1",) and cfg.host_ports == ("p-host",)
    assert cfg.interfaces == ("virbr0", "br0") and cfg.inventory == ("inv.json",)
    assert (cfg.libvirt, cfg.format, cfg.netns, cfg.duration) == ("qemu:///system", "eve", "lab", 60.0)
    assert cfg.metrics == "127.0.0.1:9477" and cfg.syslog == "udp://127.0.0.1:514"


def test_empty_file_is_the_defaults(tmp_path):
    cfg = load_response_config(write(tmp_path, "# nothing\n"))
    assert cfg == ResponseConfig()
    assert cfg.respond == "observe" and cfg.never == ("host",) and cfg.ttl == 3600


def test_command_line_overrides_file(tmp_path):
    cfg = load_response_config(write(tmp_path, FULL)).merged(respond="ask", interfaces=["br9"], netns=None)
    assert cfg.respond == "ask" and cfg.interfaces == ("br9",) and cfg.netns == "lab"


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("respond: auto\nrespnd: ask\n", 2, "unknown key 'respnd'"),
        ("respond: sometimes\n", 1, "respond must be one of observe, ask, auto"),
        ("quarantine: iptables\n", 1, "quarantine must be one of nft, libvirt"),
        ("ttl: -1\n", 1, "ttl must be a number from 0.0 up"),
        ("ttl: .nan\n", 1, "ttl must be a number"),
        ("ttl: soon\n", 1, "not the text 'soon'"),
        ("max_per_minute: 2.5\n", 1, "max_per_minute must be a whole number"),
        ("max_per_minute: true\n", 1, "max_per_minute must be a whole number"),
        ("duration: 0\n", 1, "duration must be a number above 0.0"),
        ("never: {a: 1}\n", 1, "never must be a list of texts"),
        ("never: [host, 5]\n", 1, "each entry of never must be a text"),
        ("auto: yes\n", 1, "auto must be a list of rules"),
        ("auto:\n  - {types: [arp_spoof], min_sevrity: high}\n", 2, "unknown key 'min_sevrity' in an auto rule"),
        ("auto:\n  - {min_severity: severe}\n", 2, "min_severity must be one of critical"),
        ("auto:\n  - {min_confidence: 1.5}\n", 2, "min_confidence must be a number from 0.0 to 1.0"),
        ("auto:\n  - arp_spoof\n", 2, "an auto rule must be a mapping"),
        ("forensics_port: {proto: sctp, port: 22}\n", 1, "proto must be one of tcp, udp"),
        ("forensics_port: {proto: tcp}\n", 1, "forensics_port needs a port"),
        ("forensics_port: {port: 70000}\n", 1, "port must be a whole number from 1 to 65535"),
        ("forensics_port: 22\n", 1, "forensics_port must be a mapping"),
        ("format: xml\n", 1, "format must be one of text, jsonl, eve, ecs"),
        ("netns: ../../etc\n", 1, "is not a network namespace name"),
        ("libvirt: ''\n", 1, "libvirt must be a text"),
        ("ttl: 5\nttl: 6\n", 2, "duplicate key 'ttl'"),
        ("- respond\n", 1, "expected a mapping of settings"),
        ("respond: [auto\n", 2, "bad YAML"),
    ],
)
def test_bad_values_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_response_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}:"), msg
    assert words in msg, msg
    assert "\n" not in msg


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: "):
        load_response_config(str(tmp_path / "nope.yaml"))


# ------------------------------------------------------------------------------------------------ decide
def alert(type="arp_spoof", severity="high", confidence=0.95, mac="52:54:00:99:00:11", id="a1b2c3d4e5f60718"):
    return {"type": type, "severity": severity, "confidence": confidence, "attacker": {"mac": mac}, "id": id}


def responder(held=(), **kw):
    return Responder(ResponseConfig(**{"respond": "auto", **kw}), held=lambda: held, host_macs=["52:54:00:99:00:01"])


def test_auto_quarantines_and_gives_the_command():
    d = responder(inventory=("inv.json",), netns="lab").decide(alert(), "vm1", 100.0)
    assert d.action == "quarantine" and d.ttl == 3600
    assert shlex.split(d.command) == [
        "vmsentry",
        "quarantine",
        "vm1",
        "--reason",
        "arp_spoof alert a1b2c3d4e5f60718",
        "--ttl",
        "3600",
        "--inventory",
        "inv.json",
        "--netns",
        "lab",
    ]


def test_libvirt_method_and_no_ttl_in_command():
    d = responder(quarantine="libvirt", ttl=0, libvirt="qemu:///system").decide(alert(), "vm1", 0)
    assert d.action == "quarantine" and d.ttl is None
    assert "--method libvirt --libvirt qemu:///system" in d.command and "--ttl" not in d.command


def test_observe_alerts_only():
    d = responder(respond="observe").decide(alert(), "vm1", 0)
    assert (d.action, d.command) == ("alert", None) and "observe" in d.reason


def test_ask_prints_the_command_and_acts_on_nothing():
    r = responder(respond="ask")
    d = r.decide(alert(), "vm1", 0)
    assert d.action == "ask" and d.command.startswith("vmsentry quarantine vm1 --reason")
    assert r.decide(alert(), "vm1", 1).action == "ask"  # nothing was held, so it asks again


def test_ask_offers_the_mac_when_the_vm_is_unknown():
    d = responder(respond="ask").decide(alert(mac="02:00:00:00:00:09"), None, 0)
    assert d.action == "ask" and "quarantine 02:00:00:00:00:09" in d.command


def test_auto_never_quarantines_an_unknown_attacker():
    d = responder().decide(alert(mac="02:00:00:00:00:09"), None, 0)
    assert d.action == "alert" and "not a known VM" in d.reason
    assert responder(respond="ask").decide(alert(mac=None), None, 0).action == "alert"


@pytest.mark.parametrize(
    "a, why",
    [
        (alert(type="port_scan"), "type not in any rule"),
        (alert(severity="medium"), "below min_severity"),
        (alert(confidence=0.5), "below min_confidence"),
        (alert(confidence=None), "no confidence"),
        (alert(severity="bogus"), "unknown severity"),
    ],
)
def test_no_rule_matches_alert_only(a, why):
    d = responder().decide(a, "vm1", 0)
    assert d.action == "alert" and "no auto rule matches" in d.reason, why


def test_rule_without_types_matches_every_type_and_anomaly_rule():
    r = responder(auto=(AutoRule(min_confidence=0.5),))
    assert r.decide(alert(type="port_scan", severity="low", confidence=0.6), "vm1", 0).action == "quarantine"
    d = responder().decide(alert(type="anomaly", severity="low", confidence=0.85), "vm2", 0)
    assert d.action == "quarantine"


def test_never_list_host_names_and_globs():
    r = responder(never=("host", "jump*", "db1"))
    assert r.decide(alert(), "jump-01", 0).action == "never"
    assert r.decide(alert(), "db1", 0).action == "never"
    d = r.decide(alert(mac="52:54:00:99:00:01"), None, 0)  # the host's own MAC
    assert d.action == "never" and "the host" in d.reason
    assert r.decide(alert(), "host", 0).action == "never"
    assert r.decide(alert(), "web1", 0).action == "quarantine"


def test_never_wins_even_in_observe_mode():
    assert responder(respond="observe", never=("vm1",)).decide(alert(), "vm1", 0).action == "never"


def test_already_held_by_name_or_mac_and_after_own_decision():
    assert responder(held=("vm1",)).decide(alert(), "vm1", 0).action == "held"
    assert responder(held=("52:54:00:99:00:11",)).decide(alert(), "vm1", 0).action == "held"
    r = responder()
    assert r.decide(alert(), "vm1", 0).action == "quarantine"
    assert r.decide(alert(), "vm1", 1).action == "held"
    r.forget("vm1")
    assert r.decide(alert(), "vm1", 2).action == "quarantine"


def test_rate_limit_per_sliding_minute():
    r = responder(max_per_minute=2)
    assert [r.decide(alert(mac=None), f"vm{i}", 10.0 + i).action for i in range(3)] == [
        "quarantine",
        "quarantine",
        "rate_limited",
    ]
    limited = r.decide(alert(mac=None), "vm9", 30)
    assert limited.action == "rate_limited" and "max_per_minute 2" in limited.reason
    assert limited.command and "vm9" in limited.command
    # 60 s after the first, one slot is free again
    assert r.decide(alert(mac=None), "vm9", 70.0).action == "quarantine"
    assert r.decide(alert(mac=None), "vm8", 70.5).action == "rate_limited"


def test_rate_limit_zero_never_acts():
    assert responder(max_per_minute=0).decide(alert(), "vm1", 0).action == "rate_limited"


def test_expired_holds():
    t = Target("vm1", "52:54:00:99:00:11")
    holds = [Held(t, "nft", "r", 0, 50.0), Held(t, "nft", "r", 0, None), Held(t, "nft", "r", 0, 150.0)]
    assert expired(holds, 100.0) == [holds[0]]
    assert responder(ttl=0).ttl is None and responder(ttl=30).ttl == 30
