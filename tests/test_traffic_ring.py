"""How the ring reader finds the frames of a TPACKET_V3 block (collect/traffic/ring.py ``frame_offsets``):
blocks laid out as the kernel lays them out (tpacket3_hdr every 8-aligned frame, chained by
tp_next_offset), dense and sparse, and a hostile payload that mimics a frame header."""

from __future__ import annotations

import struct

import numpy as np

from vmsentry.collect.traffic.ring import PAD, frame_offsets

FIRST, MAC = 48, 82  # offset_to_first_pkt (the block header); tp_mac of an Ethernet frame


def block(payloads: list[bytes]) -> tuple[bytes, list[int], int]:
    """A block's bytes (padded as RingReader copies it), where each header starts, the used length."""
    buf, starts, off = bytearray(FIRST), [], FIRST
    for data in payloads:
        size = (MAC + len(data) + 7) & ~7
        head = struct.pack("<IIIIIIHH", size, 1_790_000_000, 0, len(data), len(data), 1, MAC, MAC + 14)
        buf += head.ljust(MAC, b"\0") + data + bytes(size - MAC - len(data))
        starts.append(off)
        off += size
    return bytes(buf) + bytes(PAD), starts, off


def test_dense_and_sparse_blocks_give_the_chain():
    for sizes in ([60] * 500, [1514] * 40, [42, 60, 1514, 90, 64] * 100):
        data, starts, used = block([bytes(n) for n in sizes])
        assert frame_offsets(data, FIRST, len(starts), used).tolist() == starts


def test_a_payload_that_mimics_a_header_does_not_add_or_hide_frames():
    forged = bytearray(400)
    for at in range(0, 400 - 32, 8):  # tp_mac = 82 at every 8-aligned place a header could start
        struct.pack_into("<H", forged, at + 24 - 2, MAC)  # (frame data starts at 82 = 2 mod 8)
    data, starts, used = block([bytes(forged), bytes(60), bytes(forged)] * 20)
    assert frame_offsets(data, FIRST, len(starts), used).tolist() == starts


def test_a_broken_chain_keeps_what_is_sound():
    data, starts, used = block([bytes(60)] * 10)
    broken = bytearray(data)
    struct.pack_into("<I", broken, starts[4], 3)  # a next offset that is not 8-aligned
    got = frame_offsets(bytes(broken), FIRST, len(starts), used)
    assert got.tolist() == starts[:5] and got.dtype == np.int64
