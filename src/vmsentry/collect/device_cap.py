"""How many devices of one kind a reader takes from one VM definition.

A hostile definition can declare hundreds of thousands of NICs, ports or disks in a file under the 16 MiB
input cap; each becomes records, findings and report lines, so memory and the report grew a hundred times
the input (issue 11: a 15 MB .vmx took 1.1 GB and wrote a 525 MB report). No real VM comes near the cap:
ESXi allows 10 NICs per VM, a PCI bus 32 slots, and libvirt's own limits are of the same order. Past the
cap the reader reads no more of that kind and says so, once per kind, as an input error naming the file
and where the cap was reached; everything before it is kept.
"""

from __future__ import annotations

MAX_DEVICES_PER_KIND = 256


def capped_message(where: str, kind: str) -> str:
    return f"{where}: more than {MAX_DEVICES_PER_KIND} {kind} devices in one VM; the rest are not read"
