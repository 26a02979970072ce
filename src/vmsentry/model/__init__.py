"""The normalised inventory (stage 2 of collect -> model -> analyse -> act -> report)."""
from vmsentry.model.inventory import (  # noqa: F401
    SCHEMA, AUTH_KINDS, LISTENER_KINDS, NIC_MODES, Channels, Device, Forward, Host, InputError,
    Inventory, Listener, Network, Nic, NwFilter, Security, Share, Snapshot, Source, VM,
)
