"""Stage 4, act: turn what vmsentry found into enforcement on the host.

``vmsentry.act.policy`` compiles a segmentation policy (YAML, CONTRACTS.md) against an inventory into
nftables and libvirt nwfilter, applies it atomically with an automatic rollback, and checks traffic
against it. Everything here is a library first; the CLI (``vmsentry policy ...``) only wires it up.
"""
