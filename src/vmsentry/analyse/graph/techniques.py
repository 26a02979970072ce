"""Edge techniques of the exposure graph: what each step means, its MITRE ATT&CK technique where one
really fits (None where none does: plain network reachability is not an ATT&CK technique), and the
default likelihood that an attacker holding the edge's source can take the step."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Technique:
    name: str
    attack_id: str | None
    summary: str
    likelihood: float


_T = [
    # reachability (network plumbing)
    Technique("nic-attach", None, "the VM's NIC is attached to this segment", 1.0),
    Technique("bridged-to-lan", None, "a bridged/macvtap/passthrough NIC puts the guest on the physical LAN", 1.0),
    Technique("routed-to-lan", None, "a routed/open network forwards guest traffic to the LAN without NAT", 0.9),
    Technique("nat-outbound", None, "NAT lets the guest open connections to LAN machines", 0.6),
    Technique(
        "guest-to-host-service",
        None,
        "guests on this segment reach a host service bound to the bridge address or to every address "
        "(libvirt's NAT/isolated/routed firewall rules do not block guest-to-host traffic)",
        1.0,
    ),
    Technique(
        "user-nat-host-loopback",
        None,
        "user-mode NAT (slirp/passt) runs inside the host's QEMU process: the guest reaches host services, "
        "loopback-bound ones included, unless restrict=on",
        1.0,
    ),
    Technique("lan-to-host-service", None, "machines on the host's networks reach a host service", 1.0),
    Technique(
        "reach-listener", None, "the hypervisor's listener for this VM is bound to an address the attacker reaches", 1.0
    ),
    Technique("reach-forward", None, "a port forward bound to an address the attacker reaches", 1.0),
    Technique("lan-to-guest", "T1210", "a machine on the LAN attacks a guest's network services", 0.3),
    Technique(
        "segment-peer", "T1210", "a guest attacks the network services of another guest on the same segment", 0.3
    ),
    # control steps
    Technique("host-service-exploit", "T1210", "exploit or abuse a host network service", 0.15),
    Technique("ssh-login", "T1021.004", "log in to the host over SSH (credentials reused or guessed)", 0.3),
    Technique("rdp-login", "T1021.001", "log in over RDP", 0.3),
    Technique("smb-admin-share", "T1021.002", "use SMB/Windows admin shares", 0.4),
    Technique("winrm", "T1021.006", "use Windows Remote Management", 0.3),
    Technique(
        "libvirt-api-no-auth",
        "T1611",
        "libvirtd accepts unauthenticated TCP connections: define a domain with the host's root file "
        "system as a disk and own the host",
        0.95,
    ),
    Technique("container-api-no-auth", "T1610", "an unauthenticated Docker API: start a privileged container", 0.95),
    Technique(
        "console-takeover",
        "T1021.005",
        "an unauthenticated console listener gives keyboard/screen control of the VM",
        0.95,
    ),
    Technique(
        "console-password", "T1110", "a console protected only by a password (VNC passwords are <= 8 chars)", 0.3
    ),
    Technique("console-tls", None, "a console behind TLS/SASL: needs valid credentials", 0.05),
    Technique(
        "qemu-monitor-exec",
        "T1611",
        'an unauthenticated QEMU monitor runs host commands as the QEMU user (migrate "exec:...")',
        0.9,
    ),
    Technique(
        "migration-inject",
        "T1611",
        "an incoming-migration listener without TLS accepts a crafted migration stream: code execution in QEMU",
        0.5,
    ),
    Technique("port-forward-into-guest", "T1133", "a host port forward hands the connection to a guest service", 0.5),
    Technique("shared-folder-write", "T1080", "the guest writes to a host directory shared into it", 1.0),
    Technique(
        "host-path-write",
        None,
        "write access to a host path (and its owner's files) leads to code execution on the host",
        0.4,
    ),
    Technique(
        "taint-shared-content",
        "T1080",
        "content planted in a shared folder is opened by another VM that mounts it",
        0.5,
    ),
    Technique(
        "disk-image-tamper",
        "T1525",
        "the guest can write another VM's disk image or snapshot through a shared host path",
        0.8,
    ),
    Technique(
        "clipboard-channel",
        "T1115",
        "a shared clipboard is a data channel between the guest and the console user's host",
        0.2,
    ),
    Technique(
        "drag-and-drop-channel", "T1570", "drag-and-drop moves files between the guest and the console user's host", 0.3
    ),
    Technique(
        "arp-mitm",
        "T1557.002",
        "a NIC without anti-spoofing on a shared L2 segment can poison ARP/NDP caches of its peers",
        0.8,
    ),
    Technique(
        "mitm-session-hijack",
        "T1557",
        "traffic intercepted on the segment gives sessions or credentials of a peer",
        0.4,
    ),
    Technique("passthrough-device", None, "the guest drives a physical device passed through to it", 1.0),
    Technique("dma-attack", "T1611", "passthrough without IOMMU: the device can DMA into host memory", 0.8),
    Technique(
        "reach-vulnerable-component", None, "the guest can drive the emulated component that holds the flaw", 1.0
    ),
    Technique(
        "hypervisor-escape",
        "T1611",
        "exploit a hypervisor flaw in a known-vulnerable version to escape to the host",
        0.6,
    ),
    Technique("host-controls-guest", None, "whoever controls the host controls every guest on it", 1.0),
]
TECHNIQUES: dict[str, Technique] = {t.name: t for t in _T}

SERVICE_TECHNIQUE = {
    22: "ssh-login",
    3389: "rdp-login",
    445: "smb-admin-share",
    139: "smb-admin-share",
    5985: "winrm",
    5986: "winrm",
    2375: "container-api-no-auth",
}


def attack_id(technique: str) -> str | None:
    t = TECHNIQUES.get(technique)
    return t.attack_id if t else None
