"""vmsentry: can something inside a VM reach my host, my other VMs or my LAN, and how do I stop it?

Stages, one folder each: collect (platform adapters) -> model (normalised inventory) -> analyse
(rules) -> report. Imports stay lazy so that ``vmsentry --help`` starts fast.
"""

__version__ = "0.1.0"
