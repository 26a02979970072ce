"""Proxmox VE firewall option defaults: what an absent option means (pve-docs
``generated/pve-firewall-*-opts.adoc`` and pve-firewall ``Firewall.pm``; the sources of each value are in
``collect/proxmox_fw.py``'s module text). The collector fills them in and the rules read them, so they sit
on the floor both stand on."""

from __future__ import annotations

VM_DEFAULTS = {
    "enable": "0",
    "macfilter": "1",
    "ipfilter": "0",
    "dhcp": "0",
    "ndp": "1",
    "radv": "0",
    "policy_in": "DROP",
    "policy_out": "ACCEPT",
}
CLUSTER_DEFAULTS = {"enable": "0", "ebtables": "1", "policy_in": "DROP", "policy_out": "ACCEPT"}
HOST_DEFAULTS = {"enable": "1", "nosmurfs": "1", "tcpflags": "0", "nf_conntrack_allow_invalid": "0", "ndp": "1"}
