"""Apply a compiled ruleset atomically, with a diff, idempotence and an automatic rollback.

``apply``
  1. checks br_netfilter (``net.bridge.bridge-nf-call-iptables``; refuses or sets it),
  2. loads the ruleset into a private throw-away network namespace first: the kernel checks every rule
     there and nft lists it back in its canonical form (so a ruleset the kernel refuses never reaches
     the target, and the diff and the "nothing changed" check compare exactly what nft will list),
  3. diffs that against what is loaded (only our two tables; nobody else's are read or touched),
  4. saves our current tables (``nft list``, with counters) to the state directory,
  5. applies everything in ONE ``nft -j -f -`` transaction (delete + re-create our tables): all or nothing,
  6. with ``confirm_within=S``: writes ``pending.json`` and starts a detached watchdog process
     (``vmsentry.act.policy.watchdog``; double fork, new session, so it outlives the shell and the SSH
     session) that restores the saved tables at the deadline unless ``confirm`` removed ``pending.json``.

A second ``apply`` while one is pending keeps the saved state of the last *confirmed* ruleset (rolling back
returns there) and replaces the watchdog. Applying without ``confirm_within`` confirms at once.

State directory (default ``/run/vmsentry/policy/<netns or host>/``): ``lock`` (flock), ``previous.nft``
(saved tables, "" = there were none), ``previous.stateless.nft`` (what a rollback must list again),
``pending.json``, ``applied.nft``, ``rollback.json`` (what the last rollback did and how long it took),
``confirmed.json``, ``watchdog.log``.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import signal
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vmsentry.act.policy import nftexec
from vmsentry.act.policy.nftruleset import NftRuleset

DEFAULT_STATE_ROOT = "/run/vmsentry/policy"


class ApplyError(RuntimeError):
    pass


def state_dir_for(netns: str | None, state_dir: str | None = None) -> Path:
    return Path(state_dir) if state_dir else Path(DEFAULT_STATE_ROOT) / (netns or "host")


@contextmanager
def locked(sd: Path):
    sd.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(sd / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def netns_id(netns: str | None) -> str | None:
    """Identity of a network namespace (device and inode of its nsfs file), to tell a re-created
    namespace of the same name from the one a rollback was armed for."""
    try:
        st = os.stat(f"/run/netns/{netns}" if netns else "/proc/1/ns/net")
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def read_pending(sd: Path) -> dict | None:
    return _read_json(sd / "pending.json")


@dataclass
class ApplyReport:
    changed: bool
    applied: bool
    dry_run: bool
    diff: str
    netns: str | None
    state_dir: str
    seconds_check: float = 0.0
    seconds_apply: float = 0.0
    deadline: float | None = None
    watchdog_pid: int | None = None
    notes: list[str] = field(default_factory=list)
    canonical: str | None = None

    def to_dict(self) -> dict:
        return {
            "changed": self.changed,
            "applied": self.applied,
            "dry_run": self.dry_run,
            "netns": self.netns,
            "state_dir": self.state_dir,
            "seconds_check": round(self.seconds_check, 4),
            "seconds_apply": round(self.seconds_apply, 4),
            "deadline": self.deadline,
            "watchdog_pid": self.watchdog_pid,
            "notes": self.notes,
            "diff": self.diff,
        }


def unified(current: str, desired: str, netns: str | None) -> str:
    where = f"netns {netns}" if netns else "host"
    return "".join(
        difflib.unified_diff(current.splitlines(True), desired.splitlines(True), f"loaded ({where})", "policy")
    )


def apply(
    ruleset: NftRuleset,
    *,
    netns: str | None = None,
    confirm_within: float | None = None,
    dry_run: bool = False,
    state_dir: str | None = None,
    set_sysctl: bool = False,
    ipv6: bool = False,
    lockout_check=None,
    force: bool = False,
) -> ApplyReport:
    """Apply (see module doc). ``lockout_check()`` -> message or None: whether the new policy would block
    the caller's own SSH session's source from opening new connections to the host."""
    nftexec.check_netns(netns)
    if os.geteuid() != 0:
        raise ApplyError("applying nftables rules needs root (CAP_NET_ADMIN)")
    sd = state_dir_for(netns, state_dir)
    if confirm_within is not None and confirm_within <= 0:
        raise ApplyError("--confirm-within must be a positive number of seconds")
    notes: list[str] = []

    brnf = nftexec.ensure_bridge_nf(netns, ipv6, set_it=set_sysctl and not dry_run)
    if not brnf.ok:
        if not dry_run:
            raise ApplyError(brnf.message)
        notes.append("would refuse: " + brnf.message)
    elif brnf.message:
        notes.append(brnf.message)

    t0 = time.perf_counter()
    payload = ruleset.json()
    # the dry load and the read of what is loaded are independent: run them side by side
    with ThreadPoolExecutor(max_workers=2) as pool:
        f_desired = pool.submit(nftexec.canonical, payload)
        f_loaded = pool.submit(nftexec.list_ruleset, netns, False)
        try:
            desired = f_desired.result()
            loaded = f_loaded.result()
        except nftexec.NftError as exc:
            raise ApplyError(str(exc)) from None
    current_full = nftexec.our_tables(loaded)  # with counter values: what a rollback restores
    current = nftexec.stateless(current_full)  # what nft -s lists: what is compared
    check_s = time.perf_counter() - t0
    if desired is None:
        notes.append("no private network namespace for a dry load: the diff is against vmsentry's own rendering")
        diff = unified(current, ruleset.text(header=False), netns)
        changed = True
    else:
        diff = unified(current, desired, netns)
        changed = current != desired

    if lockout_check is not None and changed:
        msg = lockout_check()
        if msg:
            if confirm_within is None and not force and not dry_run:
                raise ApplyError(
                    msg + "; use --confirm-within SECONDS (it rolls back unless you confirm from a new "
                    "session) or --force"
                )
            notes.append("warning: " + msg)

    report = ApplyReport(changed, False, dry_run, diff, netns, str(sd), check_s, canonical=desired, notes=notes)
    if dry_run:
        return report

    with locked(sd):
        pending = read_pending(sd)
        if not changed and (confirm_within is None or pending):
            if pending and confirm_within is None:
                _confirm_locked(sd, pending, note="confirmed by an apply without --confirm-within")
                notes.append("the pending rollback was cancelled (apply without --confirm-within confirms)")
            notes.append("nothing to change: the loaded ruleset is already this policy")
            return report
        if pending:
            notes.append("an unconfirmed apply was pending: a rollback still returns to the ruleset before it")
        else:
            _write(sd / "previous.nft", current_full)
            _write(sd / "previous.stateless.nft", current)
        t1 = time.perf_counter()
        try:
            if changed:
                nftexec.apply_json(payload, netns)
        except nftexec.NftError as exc:
            if not pending:
                for name in ("previous.nft", "previous.stateless.nft"):
                    (sd / name).unlink(missing_ok=True)
            raise ApplyError(str(exc)) from None
        report.seconds_apply = time.perf_counter() - t1
        report.applied = changed
        # the transaction loaded exactly what the dry load listed (same JSON, same kernel); reading it back
        # again would cost as much as the apply itself on a big ruleset
        _write(sd / "applied.nft", desired if desired is not None else nftexec.our_tables(nftexec.list_ruleset(netns)))
        (sd / "rollback.json").unlink(missing_ok=True)  # about an earlier apply; its line stays in watchdog.log
        if confirm_within is not None:
            token = uuid.uuid4().hex
            deadline = time.time() + confirm_within
            info = {
                "token": token,
                "deadline": deadline,
                "netns": netns,
                "netns_id": netns_id(netns),
                "applied_at": time.time(),
                "confirm_within": confirm_within,
                "pid_apply": os.getpid(),
            }
            _write(sd / "pending.json", json.dumps(info))
            pid = spawn_watchdog(sd, token)
            info["watchdog_pid"] = pid
            _write(sd / "pending.json", json.dumps(info))
            report.deadline, report.watchdog_pid = deadline, pid
        else:
            (sd / "pending.json").unlink(missing_ok=True)
            _write(sd / "confirmed.json", json.dumps({"at": time.time(), "how": "apply without --confirm-within"}))
        if pending:
            _stop_watchdog(pending)  # only now: had the apply failed, the old rollback would still be armed
    return report


# ------------------------------------------------------------------------------------------ confirm/rollback
class ConfirmError(RuntimeError):
    pass


def confirm(netns: str | None = None, state_dir: str | None = None) -> dict:
    sd = state_dir_for(netns, state_dir)
    if not sd.exists():
        raise ConfirmError(f"nothing to confirm: no apply has been made here ({sd})")
    with locked(sd):
        pending = read_pending(sd)
        if not pending:
            rb = _read_json(sd / "rollback.json")
            if rb:
                raise ConfirmError(
                    f"too late: the ruleset was rolled back at {time.strftime('%H:%M:%S', time.localtime(rb.get('restored_at', 0)))} "
                    f"(deadline was {time.strftime('%H:%M:%S', time.localtime(rb.get('deadline', 0)))}); apply it again"
                )
            raise ConfirmError("nothing to confirm: no apply with --confirm-within is pending")
        return _confirm_locked(sd, pending)


def _confirm_locked(sd: Path, pending: dict, note: str = "vmsentry policy confirm") -> dict:
    (sd / "pending.json").unlink(missing_ok=True)
    info = {
        "at": time.time(),
        "token": pending.get("token"),
        "deadline": pending.get("deadline"),
        "seconds_left": round(pending.get("deadline", 0) - time.time(), 3),
        "how": note,
    }
    _write(sd / "confirmed.json", json.dumps(info))
    _stop_watchdog(pending)
    return info


def _stop_watchdog(pending: dict) -> None:
    pid, token = pending.get("watchdog_pid"), pending.get("token")
    if not pid or not token:
        return
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return
    if token.encode() in cmdline:  # it really is our watchdog, not a recycled pid
        try:
            os.kill(int(pid), signal.SIGTERM)
        except OSError:
            pass


def rollback(sd: Path, token: str | None, reason: str) -> dict:
    """Restore the saved tables now (called by the watchdog at the deadline, or by ``policy rollback``).
    Caller holds no lock; returns what was written to rollback.json."""
    with locked(sd):
        pending = read_pending(sd)
        if not pending or (token is not None and pending.get("token") != token):
            return {"skipped": True, "reason": "confirmed or superseded"}
        netns = pending.get("netns")
        if netns_id(netns) != pending.get("netns_id"):
            # the namespace was deleted (and maybe re-created under the same name): the saved tables
            # belong to a namespace that no longer exists; restoring them elsewhere would be wrong
            (sd / "pending.json").unlink(missing_ok=True)
            result = {
                "token": pending.get("token"),
                "ok": False,
                "skipped": True,
                "restored_at": time.time(),
                "deadline": pending.get("deadline"),
                "error": f"network namespace {netns} is gone or was re-created; nothing restored",
            }
            _write(sd / "rollback.json", json.dumps(result))
            return result
        started = time.time()
        t = time.perf_counter()
        result = {
            "token": pending.get("token"),
            "deadline": pending.get("deadline"),
            "started": started,
            "late_ms": round((started - pending.get("deadline", started)) * 1000, 1),
            "reason": reason,
            "netns": netns,
        }
        try:
            saved = (sd / "previous.nft").read_text(encoding="utf-8")
            nftexec.restore(saved, netns)
            result["restore_ms"] = round((time.perf_counter() - t) * 1000, 1)
            result["restored_at"] = time.time()
            expect = (sd / "previous.stateless.nft").read_text(encoding="utf-8")
            now = nftexec.our_tables(nftexec.list_ruleset(netns))
            result["identical"] = now == expect
            result["ok"] = True
        except (OSError, nftexec.NftError) as exc:
            result.update({"ok": False, "error": str(exc), "restored_at": time.time()})
        (sd / "pending.json").unlink(missing_ok=True)
        _write(sd / "rollback.json", json.dumps(result))
        return result


def rollback_now(netns: str | None = None, state_dir: str | None = None) -> dict:
    sd = state_dir_for(netns, state_dir)
    pending = read_pending(sd) if sd.exists() else None
    if not pending:
        raise ConfirmError("nothing to roll back: no apply with --confirm-within is pending")
    _stop_watchdog(pending)
    return rollback(sd, pending.get("token"), "vmsentry policy rollback")


# ------------------------------------------------------------------------------------------------ watchdog
def spawn_watchdog(sd: Path, token: str) -> int:
    """Start ``python -m vmsentry.act.policy.watchdog`` fully detached (double fork + setsid: it is
    re-parented to init, has no controlling terminal and survives the shell/SSH session that ran apply)."""
    import vmsentry

    pkg_parent = str(Path(vmsentry.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    argv = [sys.executable, "-m", "vmsentry.act.policy.watchdog", "--state-dir", str(sd), "--token", token]
    log = str(sd / "watchdog.log")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: new session, fork again, exit
        try:
            os.close(r)
            os.setsid()
            pid2 = os.fork()
            if pid2 > 0:
                os.write(w, str(pid2).encode())
                os._exit(0)
            os.close(w)
            os.chdir("/")
            fd_null = os.open(os.devnull, os.O_RDONLY)
            fd_log = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(fd_null, 0)
            os.dup2(fd_log, 1)
            os.dup2(fd_log, 2)
            os.closerange(3, 1024)
            os.execve(sys.executable, argv, env)
        except BaseException:
            os._exit(127)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    if not data:
        raise ApplyError("could not start the rollback watchdog")
    return int(data)
