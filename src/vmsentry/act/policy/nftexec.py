"""Running nft (and the sysctls it depends on) on the host or inside a named network namespace.

Everything goes through the ``nft`` command (``nft -j -f -`` with JSON on stdin to apply; lab notes §3.5):
portable, no binding needed, errors come back on stderr. Every call runs with ``TZ=UTC`` because nft
converts ``meta hour`` literals with the local timezone of its own process (``timewin``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from vmsentry.act.policy.nft import TABLE, Caps

FAMILIES = ("bridge", "inet")


class NftError(RuntimeError):
    pass


def _env() -> dict:
    return {**os.environ, "TZ": "UTC", "LC_ALL": "C"}


def _prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def nft_binary() -> str:
    path = shutil.which("nft", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if not path:
        raise NftError("nft not found: install the nftables package")
    return path


def run_nft(
    args: list[str], netns: str | None = None, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    cmd = _prefix(netns) + [nft_binary(), *args]
    try:
        return subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_env(),
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        raise NftError(f"cannot run {cmd[0]}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise NftError(f"{' '.join(cmd)} did not finish within {timeout} s") from None


def check_netns(netns: str | None) -> None:
    if netns and not os.path.exists(f"/run/netns/{netns}"):
        raise NftError(f"network namespace {netns!r} does not exist (ip netns list)")


def apply_json(payload: str, netns: str | None = None) -> None:
    """One atomic transaction: all of it or nothing."""
    p = run_nft(["-j", "-f", "-"], netns, stdin=payload)
    if p.returncode != 0:
        raise NftError("nft refused the ruleset, nothing was changed: " + first_errors(p.stderr))


def apply_text(text: str, netns: str | None = None) -> None:
    p = run_nft(["-f", "-"], netns, stdin=text)
    if p.returncode != 0:
        raise NftError("nft refused the ruleset, nothing was changed: " + first_errors(p.stderr))


def first_errors(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errs = [ln for ln in lines if "Error" in ln] or lines
    return "; ".join(errs[:3])[:600] or "(no message)"


_TABLE_RE = re.compile(r"^table (\S+) (\S+) \{$")


def split_tables(listing: str) -> dict[tuple[str, str], str]:
    """``nft list ruleset`` text -> {(family, name): block}. nft prints each table starting with
    ``table FAMILY NAME {`` in column 0 and ending with ``}`` in column 0."""
    out: dict[tuple[str, str], str] = {}
    cur: list[str] | None = None
    key = None
    for line in listing.splitlines():
        m = _TABLE_RE.match(line)
        if m and cur is None:
            key = (m.group(1), m.group(2))
            cur = [line]
            continue
        if cur is not None:
            cur.append(line)
            if line == "}":
                out[key] = "\n".join(cur) + "\n"
                cur = None
    return out


def list_ruleset(netns: str | None = None, stateless: bool = True) -> str:
    p = run_nft((["-s"] if stateless else []) + ["list", "ruleset"], netns)
    if p.returncode != 0:
        raise NftError("cannot list the ruleset: " + first_errors(p.stderr))
    return p.stdout


def our_tables(listing: str, table: str = TABLE) -> str:
    """Our tables' text from a listing, in a fixed order; "" when none is loaded."""
    blocks = split_tables(listing)
    return "".join(blocks[(f, table)] for f in FAMILIES if (f, table) in blocks)


_COUNTER_RE = re.compile(r"counter packets \d+ bytes \d+")


def stateless(text: str) -> str:
    """What ``nft -s`` would have listed for our tables: counters without their values (our tables hold no
    other stateful objects), so one stateful listing serves both to save and to compare."""
    return _COUNTER_RE.sub("counter", text)


def other_tables(listing: str, table: str = TABLE) -> str:
    blocks = split_tables(listing)
    return "".join(b for k, b in blocks.items() if k[1] != table or k[0] not in FAMILIES)


def restore(saved: str, netns: str | None = None, table: str = TABLE) -> None:
    """Put our tables back exactly as saved (``saved`` = "" means: they did not exist). One transaction."""
    head = "".join(f"table {f} {table}\ndelete table {f} {table}\n" for f in FAMILIES)
    apply_text(head + saved, netns)


def delete_ours(netns: str | None = None, table: str = TABLE) -> None:
    restore("", netns, table)


def canonical(payload: str) -> str | None:
    """Load the JSON ruleset into a throw-away network namespace and list it back: this both checks that
    the kernel accepts every rule (before the real target is touched) and gives the exact text nft will
    list after the apply, for the diff and the idempotence check. None if no private namespace can be
    made (not root, no unshare)."""
    unshare = shutil.which("unshare", path=os.environ.get("PATH", "") + ":/usr/bin:/bin")
    if not unshare or os.geteuid() != 0:
        return None
    nft = nft_binary()
    script = f"{nft} -j -f - || exit 97; {nft} -s list ruleset"
    try:
        p = subprocess.run(
            [unshare, "--net", "sh", "-c", script],
            input=payload,
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode == 97:
        raise NftError(
            "the kernel refuses this ruleset (checked in a private namespace; nothing was changed): "
            + first_errors(p.stderr)
        )
    if p.returncode != 0:
        return None
    return our_tables(p.stdout)


def probe_caps(netns: str | None = None) -> Caps:
    """Ask the kernel (``nft -c``: checked, never committed) whether meta hour/day work."""
    probe = (
        '{"nftables":[{"add":{"table":{"family":"inet","name":"vmsentry_probe"}}},'
        '{"add":{"chain":{"family":"inet","table":"vmsentry_probe","name":"c"}}},'
        '{"add":{"rule":{"family":"inet","table":"vmsentry_probe","chain":"c","expr":['
        '{"match":{"op":"==","left":{"meta":{"key":"hour"}},"right":{"range":["01:00","02:00"]}}},'
        '{"match":{"op":"==","left":{"meta":{"key":"day"}},"right":"Monday"}},{"accept":null}]}}}]}'
    )
    try:
        p = run_nft(["-c", "-j", "-f", "-"], netns, stdin=probe)
    except NftError:
        return Caps()
    return Caps(meta_time=p.returncode == 0)


# ---------------------------------------------------------------------------------------- br_netfilter
BRNF = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables")


def read_sysctl(name: str, netns: str | None = None) -> str | None:
    path = f"/proc/sys/net/bridge/{name}"
    if not netns:
        try:
            with open(path) as fh:
                return fh.read().strip()
        except OSError:
            return None
    p = subprocess.run(
        _prefix(netns) + ["cat", path], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
    )
    return p.stdout.strip() if p.returncode == 0 else None


def write_sysctl(name: str, value: str, netns: str | None = None) -> None:
    path = f"/proc/sys/net/bridge/{name}"
    if not netns:
        with open(path, "w") as fh:
            fh.write(value + "\n")
        return
    p = subprocess.run(
        _prefix(netns) + ["sh", "-c", f"echo {value} > {path}"],
        capture_output=True,
        text=True,
        timeout=10,
        stdin=subprocess.DEVNULL,
    )
    if p.returncode != 0:
        raise NftError(f"cannot set net.bridge.{name}: {p.stderr.strip()}")


@dataclass
class BrnfStatus:
    ok: bool
    message: str
    changed: list[str]


def ensure_bridge_nf(netns: str | None, ipv6: bool, set_it: bool) -> BrnfStatus:
    """The inet rules see bridged (VM-to-VM) traffic only while net.bridge.bridge-nf-call-iptables=1
    (ip6tables for IPv6); with 0 they are silently bypassed (lab notes §3.3). Check, and set it if allowed."""
    where = f"network namespace {netns}" if netns else "the host"
    names = BRNF if ipv6 else BRNF[:1]
    changed = []
    for name in names:
        value = read_sysctl(name, netns)
        if value is None:
            return BrnfStatus(
                False,
                f"net.bridge.{name} does not exist in {where}: br_netfilter is not loaded, so "
                f"VM-to-VM traffic on a bridge never reaches the inet rules; run "
                f"`modprobe br_netfilter` (and make it permanent) first",
                changed,
            )
        if value != "1":
            if not set_it:
                return BrnfStatus(
                    False,
                    f"net.bridge.{name} is {value} in {where}: the stateful VM-to-VM rules "
                    f"(inet family) would be bypassed for bridged traffic. Refusing; re-run "
                    f"with --set-sysctl to set it to 1 (per network namespace; make it "
                    f"permanent in /etc/sysctl.d), or set it yourself",
                    changed,
                )
            write_sysctl(name, "1", netns)
            if read_sysctl(name, netns) != "1":
                return BrnfStatus(False, f"could not set net.bridge.{name}=1 in {where}", changed)
            changed.append(name)
    msg = "" if not changed else "set " + ", ".join(f"net.bridge.{n}=1" for n in changed) + f" in {where}"
    return BrnfStatus(True, msg, changed)
