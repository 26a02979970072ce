"""Stage 2 of collect -> model -> analyse -> act -> report: the records that cross stages.

``inventory`` (what runs where and how it is connected), ``host`` (a host and what is read from it),
``traffic`` (the decoded traffic events), ``alert`` (one per incident), ``findings`` (audit results,
statuses, the one severity order), ``rule`` (a rule's metadata), ``scan`` (a scan's result), ``text``
(the one sanitiser for names from hostile input). This package imports nothing else of vmsentry.
"""

from vmsentry.model.host import (  # noqa: F401
    SS_LOCATOR,
    Bridge,
    Chain,
    Cpu,
    Firewall,
    Interface,
    Iommu,
    Kvm,
    ListeningSocket,
    Lsm,
    MemoryEncryption,
    Ruleset,
    RulesetTable,
    Versions,
    sysctl_path,
)
from vmsentry.model.inventory import (  # noqa: F401
    AUTH_KINDS,
    LISTENER_KINDS,
    NIC_MODES,
    SCHEMA,
    VM,
    Channels,
    Device,
    Forward,
    Host,
    InputError,
    Inventory,
    Listener,
    Network,
    Nic,
    NwFilter,
    Security,
    Share,
    Snapshot,
    Source,
)
