"""vmsentry against a REAL libvirtd, network and QEMU guest (fixture: tests/integration/conftest.py).

Every expectation is derived independently of vmsentry: the libvirt side from ``virsh dumpxml`` /
``virsh net-dumpxml`` / ``virsh domiflist`` parsed here with lxml, the host side from ``ip -j`` and
``ss``.  Needs root; never skips.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess

import pytest

pytestmark = pytest.mark.libvirt


# --------------------------------------------------------------------------------------------- helpers
def _json_out(proc: subprocess.CompletedProcess, *, ok_codes=(0,)) -> dict:
    cmd = " ".join(proc.args[3:])
    assert proc.returncode in ok_codes, (
        f"`vmsentry {cmd}` exited {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}\nstdout:\n{proc.stdout[-2000:]}"
    )
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        pytest.fail(f"`vmsentry {cmd}` did not print JSON ({e}):\n{proc.stdout[:2000]}\n{proc.stderr[-2000:]}")


def _expected_network(net) -> dict:
    """What the inventory must say about a libvirt network, read straight from its live XML."""
    ip = net.find("ip")
    iface = ipaddress.ip_interface(f"{ip.get('address')}/{ip.get('netmask') or ip.get('prefix')}")
    return {
        "mode": {"nat": "nat", "route": "routed", "open": "open", "bridge": "bridged"}.get(
            net.xpath("string(forward/@mode)"), "isolated"
        ),
        "bridge": net.xpath("string(bridge/@name)"),
        "subnets": [str(iface.network)],
        "host_address": str(iface.ip),
        "dhcp": ip.find("dhcp") is not None,
    }


def _name(entry) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict):
        for k in ("name", "ifname", "device", "dev", "interface"):
            if isinstance(entry.get(k), str):
                return entry[k]
    return None


def _named_entries(value) -> dict[str, object]:
    """A facts collection given either as {name: entry} or as [{"name": ...}, ...]."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {n: e for e in value if (n := _name(e))}
    return {}


def _cidrs(value) -> set[str]:
    """Every address/prefix found in an address list (strings "a/p", or dicts with address + prefixlen)."""
    out: set[str] = set()
    items = value if isinstance(value, list) else [value]
    for a in items:
        if isinstance(a, str):
            out.add(a)
        elif isinstance(a, dict):
            addr = a.get("address") or a.get("local") or a.get("ip") or a.get("cidr")
            plen = a.get("prefixlen", a.get("prefix"))
            if isinstance(addr, str):
                out.add(addr if "/" in addr or plen is None else f"{addr}/{plen}")
    return out


def _first(entry: dict, *keys):
    for k in keys:
        if k in entry:
            return entry[k]
    return None


def _norm_addr(a) -> str:
    if a in (None, "*", ""):
        return "0.0.0.0"
    a = str(a).split("%", 1)[0].strip("[]")
    return a


def _listening_rows(facts: dict) -> list[tuple[str, str, int, str]]:
    """(proto, address, port, process) from vmsentry's host facts."""
    rows = []
    for e in facts.get("listening") or []:
        if not isinstance(e, dict):
            continue
        proto = str(_first(e, "protocol", "proto", "transport") or "").lower()
        port = _first(e, "port", "local_port")
        proc = _first(e, "process", "comm", "program", "name")
        if isinstance(proc, dict):
            proc = _first(proc, "name", "comm")
        if isinstance(proc, list):
            proc = ",".join(str(_first(p, "name", "comm") if isinstance(p, dict) else p) for p in proc)
        addr = _first(e, "address", "local_address", "host", "ip", "addr")
        try:
            rows.append((proto, _norm_addr(addr), int(port), str(proc or "")))
        except (TypeError, ValueError):
            continue
    return rows


def _ss_dnsmasq() -> set[tuple[str, str, int]]:
    """(proto, address, port) of dnsmasq's listening sockets as `ss` sees them."""
    out = subprocess.run(["ss", "-H", "-lntup"], capture_output=True, text=True, check=True).stdout
    rows = set()
    for line in out.splitlines():
        if '"dnsmasq"' not in line:
            continue
        cols = line.split()
        local = cols[4]
        addr, _, port = local.rpartition(":")
        rows.add((cols[0], _norm_addr(addr), int(port)))
    return rows


# --------------------------------------------------------------------------------------------- tests
def test_inventory_lists_live_guest_and_network(live_lab, run_cli):
    inv = _json_out(run_cli("inventory", "--libvirt", live_lab.uri))
    assert inv.get("schema") == "vmsentry.inventory/1"

    # --- the guest, against its live XML
    x = live_lab.guest_xml
    vms = [v for v in inv.get("vms", []) if v.get("name") == live_lab.guest]
    assert len(vms) == 1, (
        f"guest {live_lab.guest} listed {len(vms)} times in {[v.get('name') for v in inv.get('vms', [])]}"
    )
    vm = vms[0]
    assert vm["platform"] == "libvirt"
    assert vm["uuid"] == x.findtext("uuid") == live_lab.guest_uuid
    # the libvirt URI, optionally with a fragment naming the object (qemu:///system#domain=NAME)
    uri = (vm.get("source") or {}).get("uri") or ""
    assert uri == live_lab.uri or uri.startswith(live_lab.uri + "#"), uri

    xif = x.find("devices/interface")
    nics = [n for n in vm.get("nics", []) if (n.get("mac") or "").lower() == live_lab.guest_mac]
    assert len(nics) == 1, f"no single NIC with mac {live_lab.guest_mac}: {vm.get('nics')}"
    nic = nics[0]
    assert nic["mode"] == "nat"
    assert nic["network"] == xif.xpath("string(source/@network)") == "default"
    assert nic["bridge"] == xif.xpath("string(source/@bridge)") == live_lab.network_xml.xpath("string(bridge/@name)")
    assert nic["target"] == live_lab.tap == xif.xpath("string(target/@dev)")
    assert re.fullmatch(r"vnet\d+", live_lab.tap)
    assert nic.get("model") == "virtio"

    g = x.find("devices/graphics[@type='vnc']")
    vnc = [lst for lst in vm.get("listeners", []) if lst.get("kind") == "vnc"]
    assert len(vnc) == 1, f"expected one vnc listener: {vm.get('listeners')}"
    assert vnc[0]["address"] == g.xpath("string(listen/@address)") == "127.0.0.1"
    assert vnc[0]["port"] == int(g.get("port")) == live_lab.vnc_port
    assert vnc[0].get("transport", "tcp") == "tcp"

    # --- the `default` network, against its live XML
    nets = [n for n in inv.get("networks", []) if n.get("name") == live_lab.network]
    assert len(nets) == 1, (
        f"network {live_lab.network} listed {len(nets)} times: {[n.get('name') for n in inv.get('networks', [])]}"
    )
    net = nets[0]
    want = _expected_network(live_lab.network_xml)
    got = {k: net.get(k) for k in want}
    assert got == want
    if live_lab.created_network:  # our fixture XML: the standard values
        assert want == {
            "mode": "nat",
            "bridge": "virbr0",
            "subnets": ["192.168.122.0/24"],
            "host_address": "192.168.122.1",
            "dhcp": True,
        }


def test_host_facts_show_bridge_dnsmasq_and_libvirt_firewall(live_lab, run_cli):
    inv = _json_out(run_cli("inventory", "--host"))
    hosts = inv.get("hosts") or []
    assert len(hosts) >= 1, f"no host in `vmsentry inventory --host`: {inv}"
    facts = hosts[0].get("facts") or {}
    bridge_name = live_lab.network_xml.xpath("string(bridge/@name)")

    # --- bridges: virbr0 with its address and the guest's tap as a port (truth: ip -j)
    ipj = json.loads(
        subprocess.run(
            ["ip", "-j", "addr", "show", "dev", bridge_name], capture_output=True, text=True, check=True
        ).stdout
    )
    real_cidrs = {f"{a['local']}/{a['prefixlen']}" for a in ipj[0]["addr_info"] if a["family"] == "inet"}
    assert "192.168.122.1/24" in real_cidrs or not live_lab.created_network
    ports_real = {
        d["ifname"]
        for d in json.loads(
            subprocess.run(
                ["ip", "-j", "link", "show", "master", bridge_name], capture_output=True, text=True, check=True
            ).stdout
        )
    }
    assert live_lab.tap in ports_real

    bridges = _named_entries(facts.get("bridges"))
    assert bridge_name in bridges, f"facts.bridges has no {bridge_name}: {facts.get('bridges')}"
    br = bridges[bridge_name]
    assert isinstance(br, dict), br
    addrs = _cidrs(_first(br, "addresses", "addrs", "ips", "address", "ipv4") or [])
    assert real_cidrs <= addrs, f"{bridge_name} addresses {addrs}, real {real_cidrs}"
    ports = {_name(p) for p in (_first(br, "ports", "members", "interfaces", "slaves") or [])}
    assert live_lab.tap in ports, f"{bridge_name} ports {ports} lack the guest tap {live_lab.tap}"

    # --- listening: dnsmasq's DNS on the bridge address and its DHCP socket (truth: ss)
    real = _ss_dnsmasq()
    host_ip = live_lab.network_xml.xpath("string(ip/@address)")
    assert any(a == host_ip and p == 53 for _, a, p in real), f"ss shows no dnsmasq DNS on {host_ip}: {real}"
    dhcp_real = {(proto, a, p) for proto, a, p in real if p == 67}
    assert dhcp_real, f"ss shows no dnsmasq DHCP socket: {real}"

    rows = _listening_rows(facts)
    dns = [r for r in rows if r[3].startswith("dnsmasq") and r[1] == host_ip and r[2] == 53 and r[0] in ("tcp", "udp")]
    assert dns, f"facts.listening lacks dnsmasq on {host_ip}:53: {[r for r in rows if 'dnsmasq' in r[3]]}"
    for proto, a, p in dhcp_real:  # usually udp 0.0.0.0:67 bound to the bridge device (ss: 0.0.0.0%virbr0:67)
        assert any(r[0] == proto and r[1] == a and r[2] == p and r[3].startswith("dnsmasq") for r in rows), (
            f"facts.listening lacks dnsmasq {proto} {a}:{p}: {[r for r in rows if 'dnsmasq' in r[3]]}"
        )

    # --- firewall: libvirt's LIBVIRT_* chains (iptables-nft, lab notes §2.4)
    fw = facts.get("firewall") or {}
    chains = fw.get("libvirt_chains")
    assert chains, f"facts.firewall.libvirt_chains empty: {fw if len(str(fw)) < 2000 else str(fw)[:2000]}"
    assert "LIBVIRT_" in json.dumps(chains)


def test_scan_live_reports_findings_for_guest(live_lab, run_cli):
    out = _json_out(run_cli("scan", "--libvirt", live_lab.uri, "--host", "--format", "json"), ok_codes=(0, 1))
    findings = out.get("findings")
    assert isinstance(findings, list), f"no findings list in scan JSON: {list(out)}"
    asset = f"vm:{live_lab.guest}"
    mine = [f for f in findings if f.get("asset") == asset]
    assert mine, f"no finding for {asset}; assets seen: {sorted({f.get('asset') for f in findings})}"
    for f in mine:
        assert f.get("rule_id", "").startswith("VMS-") and f.get("severity") and f.get("status"), f
