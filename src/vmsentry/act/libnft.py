"""Talking to nftables from this process: libnftables through ctypes, the ``nft`` command as the fallback.

The quarantine is on the response path (issue 12: rule in force within 50 ms of the first attack frame), and a
subprocess costs a fork, an exec and, in a namespace, ``ip netns exec``. Measured in the namespace lab
(tests/test_quarantine_lab.py::test_call_times, median of 40, three runs, this machine with 2 cores shared by
other jobs, load 2-8; lab notes §5 found 0.70 ms vs 12-19 ms for one ``add element``):

    NftQuarantine call, in a namespace              libnftables     nft command (ip netns exec nft -j -f -)
    hold (read the macs set + one transaction)      0.34-0.41 ms    12-15 ms
    release (read + one transaction)                0.29-0.36 ms    22-30 ms
    first hold (table, sets, chains, rules created) 1.8-2.6 ms      14-27 ms (one sample per run)

A hold adds 4-5 set elements (MAC, port, port . MAC, the ARP/ND sender) in one transaction; reading the holds
back lists the ``macs`` set alone (listing the whole table took 0.8 ms of a 1.2 ms hold).

The library context is created inside the network namespace (``act/policy/netns.open_in_netns``): its
netlink socket keeps that namespace, so every later call acts there without entering it again. Both ways take
the same JSON commands (``nft -j``), and one call is one kernel transaction: all of it or nothing.
Debian's python3-nftables is the same ctypes wrapper, but it lives outside a venv's reach (lab notes §3.5),
so the few functions needed are declared here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import threading

from vmsentry.act.policy import nftexec
from vmsentry.act.policy.nftexec import NftError

# libnftables.h: enum nft_ctx_output_flags
OUTPUT_JSON = 1 << 4
_LIBRARY_NAMES = ("libnftables.so.1", ctypes.util.find_library("nftables"))


def _load_library():
    """The library with the prototypes declared, or None (not installed, or VMSENTRY_NFT=command)."""
    if os.environ.get("VMSENTRY_NFT") == "command":
        return None
    for name in _LIBRARY_NAMES:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_int
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        return lib
    return None


class Nft:
    """nftables in the host's namespace or in ``netns``. ``backend`` says which way it talks: "libnftables" or
    "nft" (the command, when the library cannot be loaded or a context cannot be made). Thread-safe."""

    def __init__(self, netns: str | None = None, prefer_library: bool = True) -> None:
        nftexec.check_netns(netns)
        self.netns = netns
        self._lock = threading.Lock()
        self._lib = _load_library() if prefer_library else None
        self._ctx = None
        if self._lib is not None:
            self._ctx = self._new_context()
        self.backend = "libnftables" if self._ctx else "nft"

    def _new_context(self):
        lib = self._lib

        def make():
            ctx = lib.nft_ctx_new(0)
            if ctx:
                lib.nft_ctx_buffer_output(ctx)
                lib.nft_ctx_buffer_error(ctx)
            return ctx

        if not self.netns:
            return make()
        from vmsentry.act.policy.netns import open_in_netns

        try:
            return open_in_netns(self.netns, make)
        except OSError:
            return None  # no setns here (not root?): the command reports the real problem

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _run(self, payload: str, json_output: bool) -> str:
        """Run ``payload`` (JSON commands, or one text command); its output. NftError: nft's first error line."""
        with self._lock:
            if self._ctx:
                lib = self._lib
                lib.nft_ctx_output_set_flags(self._ctx, OUTPUT_JSON if json_output else 0)
                rc = lib.nft_run_cmd_from_buffer(self._ctx, payload.encode())
                out = (lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
                err = (lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
                if rc != 0:
                    raise NftError(nftexec.first_errors(err))
                return out
        args = (["-j"] if json_output else []) + ["-f", "-"]
        p = nftexec.run_nft(args, self.netns, stdin=payload)
        if p.returncode != 0:
            raise NftError(nftexec.first_errors(p.stderr))
        return p.stdout

    def json(self, commands: list[dict]) -> list[dict]:
        """Run nft JSON commands in one transaction; the JSON objects they print (for ``list``), else []."""
        out = self._run(json.dumps({"nftables": commands}), json_output=True).strip()
        if not out:
            return []
        try:
            return json.loads(out).get("nftables", [])
        except (ValueError, AttributeError):
            raise NftError(f"nft printed something that is not JSON: {out[:100]!r}") from None

    def text(self, command: str) -> str:
        """A text command's output (``list table bridge x``), as ``nft`` prints it."""
        return self._run(command, json_output=False)
