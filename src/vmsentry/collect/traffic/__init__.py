"""Traffic inputs for the detectors: capture files, a live bridge, Zeek logs and Suricata eve.json,
all decoded into one stream of events (``events.py``).

    stream = TrafficStream()
    for batch in stream.batches(readers):        # each batch: a list of events, in capture order
        ...
    stream.stats                                 # packets, bytes, time span, problems met, evictions

A reader is anything with ``name``, ``format`` and ``run(decoder)``, a generator that decodes into
``decoder`` and yields whenever it has a batch ready (see ``pcap.py``, ``live.py``, ``zeek.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vmsentry.collect.traffic.decode import FrameDecoder
from vmsentry.collect.traffic.flows import DEEP_PACKETS, DEEP_PORTS, FLOW_LIMIT, FlowTable
from vmsentry.collect.traffic.source import BadTrafficInput, open_file, open_inputs
from vmsentry.collect.traffic.stats import Stats

__all__ = ["TrafficStream", "Stats", "BadTrafficInput", "open_inputs", "open_file"]


class TrafficStream:
    def __init__(
        self,
        *,
        all_packets: bool = False,
        flow_limit: int = FLOW_LIMIT,
        deep_ports=DEEP_PORTS,
        deep_packets: int = DEEP_PACKETS,
        stats: Stats | None = None,
        bulk: bool = True,
        frame_columns: bool = False,
    ) -> None:
        """``bulk=False`` decodes capture files one packet at a time (the reference the fast path is
        tested against). ``frame_columns=True`` also puts every frame into the batches as ``FrameColumns``
        rows (``frame_columns.py``): capture files and live input; Zeek and Suricata logs carry no frames
        and give none."""
        self.stats = stats or Stats()
        self.out: list = []
        self.flows = FlowTable(
            self.out,
            self.stats,
            limit=flow_limit,
            all_packets=all_packets,
            deep_ports=deep_ports,
            deep_packets=deep_packets,
        )
        self.decoder = FrameDecoder(self.flows, self.stats, bulk, frame_columns)

    def batches(self, readers: Iterable) -> Iterator[list]:
        """Events of every reader in turn, a batch at a time (the list is reused: consume it at once)."""
        out, stats, rows = self.out, self.stats, self.decoder.rows
        for reader in readers:
            before_packets, before_problems = stats.packets, sum(stats.problems.values())
            for _ in reader.run(self.decoder):
                if rows is not None:
                    rows.flush()
                if out:
                    stats.events += len(out)
                    self.flows.end_batch()
                    yield out
                    out.clear()
            self.flows.end_batch()
            if rows is not None:
                rows.flush()
            if out:
                stats.events += len(out)
                yield out
                out.clear()
            entry = {
                "name": reader.name,
                "format": reader.format,
                "packets": stats.packets - before_packets,
                "problems": sum(stats.problems.values()) - before_problems,
            }
            error = getattr(getattr(reader, "stream", None), "error", None)
            if error:
                stats.problem("read-error", f"{reader.name}: {error}")
                entry["error"] = error
            stats.inputs.append(entry)
