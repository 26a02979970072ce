"""Samples of the behaviour baseline from capture files, for ``baseline train|eval`` (here, above the
stages: reading is ``collect``'s, the features are ``analyse``'s).

    samples = samples_from_captures(paths, inventory=truth, window=1.0, on_problem=print)

Each capture is read through ``TrafficStream(frame_columns=True)`` and fed to one ``FeatureExtractor``
per capture (the windows and damped averages of one capture do not run on into the next; the entity
list is shared, so the same VM has one index in all). Problems met (a truncated capture, a corrupt record)
go to ``on_problem`` as one line each naming the file; the samples read up to the damage are kept. Zeek
and Suricata logs carry no frames: they give "no frame data" and no samples. ``on_capture(path, stats)``
hears each capture's reading stats (``collect.traffic`` Stats: packets, first and last time stamps), for
the model file's ``trained_on``. ``samples_from_live(reader, ...)`` does the same for one live reader
(``collect/traffic/ring.RingReader``) until it stops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from vmsentry.analyse.behaviour.entities import named_entities
from vmsentry.analyse.behaviour.features import FeatureExtractor, concat
from vmsentry.analyse.detectors.truth import Truth
from vmsentry.collect.traffic import TrafficStream, open_inputs
from vmsentry.model import Inventory
from vmsentry.model.behaviour import Samples
from vmsentry.model.traffic import FrameColumns

FRAME_FORMATS = ("pcap", "pcapng", "live")


def samples_from_captures(
    paths: Iterable[str],
    inventory=None,
    window: float = 1.0,
    *,
    on_problem: Callable[[str], None] | None = None,
    on_capture: Callable[[str, object], None] | None = None,
) -> Samples:
    """Samples of every capture in ``paths``, in order. ``inventory``: an ``Inventory``, the detectors'
    ``Truth``, a ``GroundTruth`` or ``Entity`` records (names the VMs), or None (entities by MAC).
    Raises ``BadTrafficInput`` for an input that cannot be opened at all."""
    source, entities = _source(inventory)
    say = on_problem or (lambda line: None)
    parts: list[Samples] = []
    index: dict[str, int] = {}  # entity name -> its place in the shared list
    shared: list = []
    for path in paths:
        stream = TrafficStream(frame_columns=True)
        extractor = FeatureExtractor(entities or source, window)
        own: list[Samples] = []
        for reader in open_inputs(path):
            if reader.format not in FRAME_FORMATS:
                say(
                    f"{reader.name}: no frame data ({reader.format} logs carry no frames; behaviour features need a capture)"
                )
                continue
            own += _feed(stream, [reader], extractor)
        own.append(extractor.finish())
        for line in _problems(stream.stats):
            say(line)
        if on_capture is not None:
            on_capture(path, stream.stats)
        part = concat(own)
        # one entity list for all captures: re-number this capture's entities into it
        for e in part.entities:
            if e.name not in index:
                index[e.name] = len(shared)
                shared.append(e)
        remap = np.array([index[e.name] for e in part.entities], np.int32)
        part.entity = remap[part.entity] if len(part) else part.entity
        parts.append(part)
    if not parts:
        return FeatureExtractor(entities or source, window).finish()
    merged = concat(parts)
    merged.entities = shared
    return merged


def samples_from_live(reader, inventory=None, window: float = 1.0) -> tuple[Samples, object]:
    """Samples of live traffic from ``reader`` (read until it stops) and the reading stats."""
    source, entities = _source(inventory)
    stream = TrafficStream(frame_columns=True)
    extractor = FeatureExtractor(entities or source, window)
    own = _feed(stream, [reader], extractor)
    own.append(extractor.finish())
    return concat(own), stream.stats


def _source(inventory):
    source = Truth.from_inventory(inventory) if isinstance(inventory, Inventory) else inventory
    return source, named_entities(source)


def _feed(stream, readers: list, extractor: FeatureExtractor) -> list[Samples]:
    out = []
    for batch in stream.batches(readers):
        for event in batch:
            if type(event) is FrameColumns:
                out.append(extractor.feed(event.frames))
    return out


def _problems(stats) -> list[str]:
    """One line per problem example the readers kept (each names the file), then the read errors."""
    lines = list(stats.examples)
    lines += [f"{entry['name']}: {entry['error']}" for entry in stats.inputs if entry.get("error")]
    return lines
