"""Where each record of a classic-pcap buffer starts.

A record's place follows from the length of the one before, so the walk is sequential by nature, and a
Python loop pays about 0.2 us a record: a fifth of the time budget of a million packets a second. The
walk is therefore split: the buffer is cut into segments (a few hundred to a thousand), a likely record
start is found in each (``bytes.find`` for the top half of the first record's time stamp, then the header
and the one after it checked for sane lengths), and all segments are walked at once, one record per
numpy step.

Nothing is taken on trust: a segment's start counts only when the walk of the segment before lands
exactly on it. The first segment starts where the caller says, so by induction every record returned
lies on the true chain. At the first segment whose start is not confirmed (a payload that looked like
a header, a corrupt record, a gap of more than 18 hours in the time stamps) the walk goes on
sequentially from where the confirmed chain stopped, which is exactly what the plain loop would do.
"""

from __future__ import annotations

import struct
from array import array

import numpy as np

SLACK = 64  # a record is taken only if this many bytes of the buffer follow its start
# Segments per buffer: each costs a search for its start, each step of the lockstep walk a few numpy
# calls, and the steps are as many as the records of the longest segment, so the best count grows with
# the square root of the records (about 1,000 for 50,000 records of small packets, 700 for 25,000 larger).
SEGMENTS_PER_SQRT_RECORD = 4.5
SEGMENTS_MIN, SEGMENTS_MAX = 64, 4096  # (at most 65536: segment numbers are sorted as uint16)
MIN_SEGMENT = 8192  # bytes: smaller buffers are walked sequentially
WIRE_MAX = 262144


class RecordWalker:
    def __init__(self, order: str, scale: float, maxcap: int) -> None:
        self.order, self.maxcap = order, maxcap
        self.length = struct.Struct(order + "I").unpack_from
        self.header = struct.Struct(order + "IIII").unpack_from
        self.fracmax = 1_000_000_000 if scale < 1e-6 else 1_000_000
        self.header_type = np.dtype(order + "u4")
        self.mean_record = 100.0  # bytes per record, from the buffers walked so far

    def starts(self, buf: bytes, off: int, end: int) -> tuple[np.ndarray, int]:
        """Offsets of the records from ``off`` that lie wholly in ``buf[:end]`` and start at least
        ``SLACK`` bytes before its end, up to the first impossible length; and where that stopped."""
        safe = min(end, len(buf)) - SLACK
        if safe - off < MIN_SEGMENT * 4:
            return self._sequential(buf, off, end, safe)
        records = (safe - off) / self.mean_record
        segments = min(SEGMENTS_MAX, max(SEGMENTS_MIN, int(SEGMENTS_PER_SQRT_RECORD * records**0.5)))
        heads = self._heads(buf, off, safe, max((safe - off) // segments, MIN_SEGMENT // 8))
        found, stop, complete = self._lockstep(buf, heads, end, safe)
        if not complete:
            rest, stop = self._sequential(buf, stop, end, safe)
            found = np.concatenate((found, rest)) if len(rest) else found
        if len(found) > 1:
            self.mean_record = (int(found[-1]) - int(found[0])) / (len(found) - 1)
        return found, stop

    def _sequential(self, buf: bytes, off: int, end: int, safe: int) -> tuple[np.ndarray, int]:
        starts = array("q")
        add = starts.append
        length, maxcap = self.length, self.maxcap
        while off <= safe:
            incl = length(buf, off + 8)[0]
            nxt = off + 16 + incl
            if incl > maxcap or nxt > end:
                break
            add(off)
            off = nxt
        return np.frombuffer(starts, np.int64), off

    def _heads(self, buf: bytes, off: int, safe: int, segment: int) -> np.ndarray:
        """``off``, then a likely record start in each later segment: the first place where the top half
        of the first record's seconds field sits as in a header, if that header and the one after it
        have sane lengths and time stamps (a segment without one joins the segment before)."""
        sec0 = self.length(buf, off)[0]
        marker, shift = (struct.pack("<I", sec0)[2:], 2) if self.order == "<" else (struct.pack(">I", sec0)[:2], 0)
        find = buf.find
        found = [
            find(marker, lo + shift, min(lo + segment, safe) + shift)
            for lo in range(off + segment, safe - segment // 2, segment)
        ]
        cand = np.array([p - shift for p in found if p != -1], np.int64)
        header = np.ndarray((len(buf) - 3,), self.header_type, buffer=buf, strides=(1,))  # any 4 bytes
        ok = self._sane(header, cand, sec0)  # (every candidate lies before ``safe``)
        after = cand + 16 + header[cand + 8]
        inside = after + 16 <= len(buf)
        ok &= ~inside | self._sane(header, np.where(inside, after, 0), sec0)
        cand = cand[ok & (cand > off)]
        return np.concatenate(([off], cand[np.r_[True, cand[1:] > cand[:-1]]] if len(cand) else cand))

    def _sane(self, header: np.ndarray, at: np.ndarray, sec0: int) -> np.ndarray:
        """Which of the offsets ``at`` hold a plausible record header (lengths, fraction, time)."""
        sec, frac, incl, orig = header[at], header[at + 4], header[at + 8], header[at + 12]
        return (
            (frac < self.fracmax)
            & (incl <= self.maxcap)
            & (incl <= orig)
            & (orig <= WIRE_MAX)
            & (np.abs(sec.astype(np.int64) - sec0) <= 86400)
        )

    def _lockstep(self, buf: bytes, heads: np.ndarray, end: int, safe: int) -> tuple[np.ndarray, int, bool]:
        """Walk every segment at once, one record per step. Returns the confirmed record offsets, where
        the confirmed walk stopped, and whether every segment's start was confirmed (if not, the walk
        stopped in the first segment that did not land on the next one's start)."""
        lengths = np.ndarray((len(buf) - 3,), self.header_type, buffer=buf, strides=(1,))
        maxcap = self.maxcap
        limit = np.append(heads[1:], safe + 1)  # the last segment runs to the end of the buffer
        cur, ids, lim = heads, np.arange(len(heads)), limit
        final = np.empty(len(heads), np.int64)  # where each segment's walk stopped
        failed = np.zeros(len(heads), bool)  # ... on an impossible length
        taken, taken_by = [], []
        while len(cur):
            incl = lengths[cur + 8]
            nxt = cur + 16 + incl
            bad = (incl > maxcap) | (nxt > end)
            if bad.any():
                failed[ids[bad]] = True
                final[ids[bad]] = cur[bad]
                keep = ~bad
                cur, nxt, ids, lim = cur[keep], nxt[keep], ids[keep], lim[keep]
            taken.append(cur)
            taken_by.append(ids)
            going = nxt < lim
            if going.all():
                cur = nxt
            else:
                final[ids[~going]] = nxt[~going]
                cur, ids, lim = nxt[going], ids[going], lim[going]
        # step by step, then by segment: a stable radix sort on the segment number puts them in file order
        offsets = (
            np.concatenate(taken)[np.argsort(np.concatenate(taken_by).astype(np.uint16), kind="stable")]
            if taken
            else np.empty(0, np.int64)
        )
        joined = (final[:-1] == limit[:-1]) & ~failed[:-1]
        if joined.all():
            return offsets, int(final[-1]), True
        first = int(np.argmin(joined))  # segments up to this one are confirmed
        return offsets[offsets < limit[first]], int(final[first]), False
