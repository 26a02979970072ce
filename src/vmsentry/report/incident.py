"""Evidence bundles, one folder per incident (CONTRACTS.md "Incidents and evidence bundles").

``IncidentStore(DIR).open(alert, vm, inventory, definition)`` makes ``DIR/<id>/`` with ``alerts.jsonl``,
``inventory.json``, ``config/<definition>``, ``timeline.jsonl``, ``report.html`` and ``manifest.json``; the
watcher then adds to it: ``Incident.event(kind, ...)`` (decision, action, release: each with its time),
``Incident.alert(alert)`` (the alert grown, or another about the same attacker), ``Incident.rulesets(before,
after)``, ``Incident.finish(frames, response_seconds)`` (``capture.pcap``; called again later with the frames
up to 30 s after the response, it replaces the capture).

How it is written, since vmsentry runs as root and the folder may be shared:

* **all or nothing.** The bundle is built as ``DIR/.<id>.tmp`` and renamed to ``DIR/<id>`` once complete: a
  reader never sees half a bundle. Every later change writes the file under a temporary name and renames it
  over the old one, then rewrites ``manifest.json`` the same way, last: at every moment each file is whole and
  the manifest describes a consistent set (between the two renames it describes the previous one; ``verify``
  then names the one file that moved on);
* **no link followed.** Every file and folder is opened relative to the folder's descriptor with
  ``O_NOFOLLOW`` (a link planted in the store, or the store itself being a link, is refused, never written
  through), temporary files are created with ``O_EXCL``;
* **hostile names.** Incident ids and file names are built from VM names and alert types, which come from
  configuration files and traffic anyone may have written: every part is cut down to ``A-Z a-z 0-9 . _ -``;
* **a full disk** (or any other write error) is one ``IncidentError`` line: the temporary file or folder is
  removed, what was there before stays, and the caller (the watcher) goes on. The incident keeps in memory
  what could not be written; the next successful write carries it.

``verify(id)`` reads the manifest and names every file that changed (size or SHA-256), is missing, is not a
regular file, or was added.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import stat
import time
from datetime import UTC, datetime

SCHEMA = "vmsentry.incident/1"
DEFAULT_EVIDENCE = "/var/lib/vmsentry/incidents"
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,159}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
READ_LIMIT = 256 << 20  # bytes read of one bundle file by show/verify (a bundle vmsentry wrote is far smaller)
DIR_MODE, FILE_MODE = 0o750, 0o640
MANIFEST = "manifest.json"
NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class IncidentError(Exception):
    """An incident could not be written or read; ``str(exc)`` is one line naming the folder and the reason."""


def safe_part(text: object, limit: int = 40) -> str:
    """``text`` as a file-name part: runs of anything but ``A-Z a-z 0-9 . _ -`` become ``_``, no leading dot
    or dash, at most ``limit`` characters; ``unknown`` when nothing is left."""
    part = _UNSAFE.sub("_", str(text)).lstrip(".-_")[:limit].rstrip(".")
    return part or "unknown"


def iso(epoch: float | None) -> str | None:
    """ISO 8601 in UTC with microseconds and a ``Z``."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _version() -> str:
    from vmsentry import __version__

    return __version__


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symbolic link (refused)"
    return exc.strerror or type(exc).__name__


def _dir_reason(exc: OSError, path: str, dir_fd: int | None = None) -> str:
    """Why a folder could not be opened without following links: a link is named as such."""
    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
        try:
            if stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode):
                return "a symbolic link (refused)"
        except OSError:
            pass
        return "not a folder"
    return _reason(exc)


def _json_bytes(value) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True, default=str) + "\n").encode()


def _jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, sort_keys=True, default=str) + "\n" for row in rows).encode()


class IncidentStore:
    """The evidence folder: ``open`` starts an incident; ``list``, ``show``, ``verify`` read them back."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    # --- the folder ---------------------------------------------------------------------------------
    def _store_fd(self, create: bool) -> int:
        """The store folder, opened without following a link at its last component (made if ``create``)."""
        if create:
            try:
                os.makedirs(self.directory, mode=DIR_MODE, exist_ok=True)
            except OSError as exc:
                raise IncidentError(f"evidence {self.directory}: cannot create: {_reason(exc)}") from None
        try:
            return os.open(self.directory, NOFOLLOW_DIR)
        except OSError as exc:
            reason = "no such folder" if exc.errno == errno.ENOENT else _dir_reason(exc, self.directory)
            raise IncidentError(f"evidence {self.directory}: {reason}") from None

    def ids(self) -> list[str]:
        """The complete incidents (folders named like an id; a folder being built starts with a dot)."""
        fd = self._store_fd(create=False)
        try:
            return sorted(
                entry.name
                for entry in os.scandir(fd)
                if ID_RE.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)
            )
        finally:
            os.close(fd)

    def _bundle_fd(self, incident_id: str) -> int:
        if not ID_RE.fullmatch(incident_id):
            raise IncidentError(f"no incident {incident_id!r} in {self.directory}")
        store = self._store_fd(create=False)
        try:
            return os.open(incident_id, NOFOLLOW_DIR, dir_fd=store)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise IncidentError(f"no incident {incident_id!r} in {self.directory}") from None
            reason = _dir_reason(exc, incident_id, store)
            raise IncidentError(f"evidence {self.directory}/{incident_id}: {reason}") from None
        finally:
            os.close(store)

    # --- writing ------------------------------------------------------------------------------------
    def open(
        self,
        alert: dict,
        vm: str | None,
        inventory: dict,
        definition: tuple[str, str] | None = None,
        now: float | None = None,
    ) -> Incident:
        """A new incident about ``alert`` (a ``Alert.to_dict()``) by ``vm`` (None if the attacker is no known
        VM), with the inventory as the watcher knew it and the VM's definition (file name, text). The bundle
        folder appears complete; ``IncidentError`` if it cannot be written (nothing is left behind)."""
        now = time.time() if now is None else now
        incident = Incident(self, alert, vm, inventory, definition, now)
        store = self._store_fd(create=True)
        try:
            for _ in range(8):  # a new random suffix if the id is taken
                incident.id = incident.new_id()
                if not _exists(incident.id, store):
                    break
            incident.build(store)
        finally:
            os.close(store)
        return incident

    # --- reading ------------------------------------------------------------------------------------
    def list(self) -> list[dict]:
        """One summary per complete incident, oldest id first."""
        rows = []
        for incident_id in self.ids():
            try:
                manifest = self.manifest(incident_id)
            except IncidentError as exc:
                rows.append({"id": incident_id, "problem": str(exc)})
                continue
            rows.append(
                {
                    "id": incident_id,
                    "type": manifest.get("type"),
                    "vm": manifest.get("vm"),
                    "attacker": manifest.get("attacker"),
                    "first_seen": manifest.get("times", {}).get("first_seen"),
                    "response_seconds": manifest.get("response_seconds"),
                    "released": manifest.get("times", {}).get("released") is not None,
                    "files": len(manifest.get("files", [])),
                }
            )
        return rows

    def manifest(self, incident_id: str) -> dict:
        fd = self._bundle_fd(incident_id)
        try:
            return _load_manifest(fd, incident_id)
        finally:
            os.close(fd)

    def show(self, incident_id: str) -> dict:
        """The manifest, the alerts and the timeline of one incident."""
        fd = self._bundle_fd(incident_id)
        try:
            manifest = _load_manifest(fd, incident_id)
            return {
                "id": incident_id,
                "manifest": manifest,
                "alerts": _load_jsonl(fd, incident_id, "alerts.jsonl"),
                "timeline": _load_jsonl(fd, incident_id, "timeline.jsonl"),
            }
        finally:
            os.close(fd)

    def verify(self, incident_id: str) -> list[str]:
        """Every problem with the bundle against its manifest (empty: intact), the manifest's files in order
        first: ``FILE: changed (...)``, ``FILE: missing``, ``FILE: not a regular file``, then
        ``FILE: not in the manifest (added)``. ``IncidentError`` if there is no such incident."""
        fd = self._bundle_fd(incident_id)
        try:
            try:
                manifest = _load_manifest(fd, incident_id)
            except IncidentError as exc:
                return [f"{MANIFEST}: {str(exc).rsplit(': ', 1)[-1]}"]
            problems, listed = [], {MANIFEST}
            if manifest.get("id") != incident_id:  # a bundle renamed, or another's manifest copied in
                problems.append(f"{MANIFEST}: names incident {manifest.get('id')!r}, not this one")
            files = manifest.get("files")
            if not isinstance(files, list):
                return [f"{MANIFEST}: no list of files"]
            for item in files:
                path = item.get("path") if isinstance(item, dict) else None
                if not isinstance(path, str) or not _safe_relative(path):
                    problems.append(f"{MANIFEST}: an entry that is not a file of the bundle: {path!r}")
                    continue
                listed.add(path)
                problem = _check_file(fd, path, item)
                if problem:
                    problems.append(f"{path}: {problem}")
            folders = {p.rpartition("/")[0] + "/" for p in listed if "/" in p}
            for path in _walk(fd):
                if path not in listed and path not in folders:  # (an emptied folder: its files are missing)
                    problems.append(f"{path}: not in the manifest (added)")
            return problems
        finally:
            os.close(fd)


class Incident:
    """One incident's bundle (see the module text). Every method that changes it raises ``IncidentError``
    (one line) when the disk refuses; the change is kept in memory and written with the next one."""

    def __init__(
        self,
        store: IncidentStore,
        alert: dict,
        vm: str | None,
        inventory: dict,
        definition: tuple[str, str] | None,
        now: float,
    ) -> None:
        self.store, self.vm, self.opened = store, vm, now
        self.id = ""
        self.alerts: list[dict] = [dict(alert)]
        self.timeline: list[dict] = []
        self.files: dict[str, tuple[str, int]] = {}  # path -> (sha256, size) as written
        self.pending: dict[str, bytes] = {}  # path -> content not written yet
        self.response_seconds: float | None = None
        self.capture_frames = 0
        self.pending["inventory.json"] = _json_bytes(inventory)
        if definition is not None:
            name, text = definition
            self.pending[f"config/{safe_part(name, 100)}"] = str(text).encode("utf-8", "backslashreplace")
        self._event("detection", now, alert_type=alert.get("type"), summary=alert.get("summary"))
        self.pending["alerts.jsonl"] = _jsonl_bytes(self.alerts)

    @property
    def path(self) -> str:
        return os.path.join(self.store.directory, self.id)

    def new_id(self) -> str:
        first = self.alerts[0]
        stamp = datetime.fromtimestamp(float(first.get("first_seen") or self.opened), UTC).strftime("%Y-%m-%dT%H%M%SZ")
        who = self.vm if self.vm is not None else (first.get("attacker") or {}).get("mac") or "unknown"
        return f"{stamp}-{safe_part(first.get('type'), 30)}-{safe_part(who)}-{secrets.token_hex(2)}"

    # --- what the watcher records --------------------------------------------------------------------
    def _event(self, kind: str, at: float | None, **fields) -> dict:
        at = time.time() if at is None else at
        entry = {"kind": kind, "time": iso(at), "epoch": round(at, 6), **fields}
        self.timeline.append(entry)
        self.pending["timeline.jsonl"] = _jsonl_bytes(self.timeline)
        return entry

    def event(self, kind: str, at: float | None = None, **fields) -> dict:
        """Append ``kind`` (``decision``, ``action``, ``release``, ...) with its time (``at``, default now) and
        ``fields`` to the timeline. An ``action`` may carry ``release``: the exact command that undoes it."""
        entry = self._event(kind, at, **fields)
        self.commit()
        return entry

    def alert(self, alert: dict) -> None:
        """The alert grown since (the same ``id``, or type, first_seen and attacker) or another one about
        the same attacker."""
        key = _alert_key(alert)
        for i, known in enumerate(self.alerts):
            if _alert_key(known) == key:
                self.alerts[i] = dict(alert)
                break
        else:
            self.alerts.append(dict(alert))
        self.pending["alerts.jsonl"] = _jsonl_bytes(self.alerts)
        self.commit()

    def rulesets(self, before: str, after: str) -> None:
        """The quarantine's ruleset before and after (``ruleset-before.nft`` / ``-after.nft``; an empty text,
        as a method without a ruleset gives, writes no file)."""
        for name, text in (("ruleset-before.nft", before), ("ruleset-after.nft", after)):
            if text:
                self.pending[name] = text.encode("utf-8", "backslashreplace")
        self.commit()

    def finish(self, frames: list[tuple[float, bytes, int]], response_seconds: float | None = None) -> None:
        """``capture.pcap`` from ``frames`` (``RecentFrames.frames``), and the response time (first attack
        frame -> action in force; default: from the timeline's first action). Called again later (the
        frames up to 30 s after the response), it replaces the capture."""
        from vmsentry.report.pcap_writer import pcap_bytes

        if response_seconds is not None:
            self.response_seconds = response_seconds
        self.capture_frames = len(frames)
        self.pending["capture.pcap"] = pcap_bytes(frames)
        self.commit()

    # --- writing --------------------------------------------------------------------------------------
    def build(self, store: int) -> None:
        """Write the first version as ``.<id>.tmp`` and rename it to ``<id>``; nothing is left on failure."""
        tmp = f".{self.id}.tmp"
        try:
            os.mkdir(tmp, DIR_MODE, dir_fd=store)
        except OSError as exc:
            raise IncidentError(f"evidence {self.store.directory}: cannot create {tmp}: {_reason(exc)}") from None
        try:
            fd = os.open(tmp, NOFOLLOW_DIR, dir_fd=store)
            try:
                self._write_all(fd, tmp)
            finally:
                os.close(fd)
            os.rename(tmp, self.id, src_dir_fd=store, dst_dir_fd=store)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True, dir_fd=store)
            if isinstance(exc, OSError):
                raise IncidentError(f"evidence {self.store.directory}: cannot write {tmp}: {_reason(exc)}") from None
            raise

    def commit(self) -> None:
        """Write what changed, then report.html, then the manifest (each by temp + rename)."""
        if not self.pending:
            return
        fd = self.store._bundle_fd(self.id)
        try:
            self._write_all(fd, self.id)
        finally:
            os.close(fd)

    def _write_all(self, fd: int, folder: str) -> None:
        from vmsentry.report.incident_html import render_report

        sizes = {p: n for p, (_, n) in self.files.items()} | {p: len(d) for p, d in self.pending.items()}
        files = [{"path": p, "size": n} for p, n in sorted(sizes.items())]
        self.pending["report.html"] = render_report(
            {**self.summary(), "files": files}, self.alerts, self.timeline
        ).encode()
        for path in sorted(self.pending):  # (report.html last but for the manifest, which follows)
            if path != "report.html":
                self._put(fd, folder, path)
        self._put(fd, folder, "report.html")
        manifest = _json_bytes({**self.summary(), "files": self.file_list()})
        _atomic_write(fd, MANIFEST, manifest, f"{self.store.directory}/{folder}")

    def _put(self, fd: int, folder: str, path: str) -> None:
        data = self.pending[path]
        _atomic_write(fd, path, data, f"{self.store.directory}/{folder}")
        self.files[path] = (hashlib.sha256(data).hexdigest(), len(data))
        del self.pending[path]

    def file_list(self) -> list[dict]:
        return [{"path": p, "sha256": h, "size": n} for p, (h, n) in sorted(self.files.items())]

    def summary(self) -> dict:
        """What the manifest and the report say about the incident, besides the files."""
        first = self.alerts[0]
        actions = [e for e in self.timeline if e["kind"] == "action"]
        releases = [e for e in self.timeline if e["kind"] == "release"]
        first_seen = min(float(a.get("first_seen") or self.opened) for a in self.alerts)
        response = self.response_seconds
        if response is None and actions:
            response = round(actions[0]["epoch"] - first_seen, 6)
        release = next((e["release"] for e in reversed(actions) if e.get("release")), None)
        return {
            "schema": SCHEMA,
            "id": self.id,
            "vmsentry_version": _version(),
            "type": first.get("type"),
            "vm": self.vm,
            "attacker": first.get("attacker"),
            "times": {
                "first_seen": iso(first_seen),
                "last_seen": iso(max(float(a.get("last_seen") or first_seen) for a in self.alerts)),
                "detected": self.timeline[0]["time"],
                "action": actions[0]["time"] if actions else None,
                "released": releases[-1]["time"] if releases else None,
            },
            "response_seconds": response,
            "capture_frames": self.capture_frames,
            "release_command": release or _release_command(self.vm, first),
        }


def _release_command(vm: str | None, alert: dict) -> str:
    target = vm if vm is not None else (alert.get("attacker") or {}).get("mac") or "VM"
    return f"vmsentry release {shlex.quote(str(target))}"


def _alert_key(alert: dict):
    if alert.get("id"):
        return alert["id"]
    attacker = alert.get("attacker") or {}
    return (alert.get("type"), alert.get("first_seen"), attacker.get("mac"), attacker.get("ip"))


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _atomic_write(dir_fd: int, path: str, data: bytes, where: str) -> None:
    """``data`` to ``path`` (``name`` or ``sub/name``) under ``dir_fd``: a temporary file made with
    ``O_EXCL|O_NOFOLLOW``, written, synced and renamed over ``path``; removed if anything fails."""
    folder, _, name = path.rpartition("/")
    sub = None
    try:
        if folder:
            try:
                os.mkdir(folder, DIR_MODE, dir_fd=dir_fd)
            except FileExistsError:
                pass
            sub = os.open(folder, NOFOLLOW_DIR, dir_fd=dir_fd)
        target = dir_fd if sub is None else sub
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE, dir_fd=target)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.rename(tmp, name, src_dir_fd=target, dst_dir_fd=target)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=target)
            except OSError:
                pass
            raise
    except OSError as exc:
        raise IncidentError(f"evidence {where}: cannot write {path}: {_reason(exc)}") from None
    finally:
        if sub is not None:
            os.close(sub)


def _safe_relative(path: str) -> bool:
    parts = path.split("/")
    return 1 <= len(parts) <= 2 and all(ID_RE.fullmatch(p) for p in parts)


def _open_file(dir_fd: int, path: str) -> int:
    """``path`` (``name`` or ``sub/name``) under ``dir_fd`` for reading, following no link."""
    folder, _, name = path.rpartition("/")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if not folder:
        return os.open(name, flags, dir_fd=dir_fd)
    sub = os.open(folder, NOFOLLOW_DIR, dir_fd=dir_fd)
    try:
        return os.open(name, flags, dir_fd=sub)
    finally:
        os.close(sub)


def _read(dir_fd: int, path: str) -> bytes:
    fd = _open_file(dir_fd, path)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(READ_LIMIT + 1)
    finally:
        os.close(fd)


def _check_file(dir_fd: int, path: str, item: dict) -> str | None:
    try:
        fd = _open_file(dir_fd, path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return "not a regular file (a link?)"
        return f"cannot read: {_reason(exc)}"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "not a regular file"
        if info.st_size != item.get("size"):
            return f"changed (size {info.st_size}, the manifest says {item.get('size')})"
        digest = hashlib.sha256()
        with os.fdopen(fd, "rb", closefd=False) as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != item.get("sha256"):
            return "changed (SHA-256 differs from the manifest)"
        return None
    finally:
        os.close(fd)


def _walk(dir_fd: int, prefix: str = "") -> list[str]:
    """Every name in the bundle (one level of folders), links and other non-files included, sorted."""
    names = []
    for entry in sorted(os.scandir(dir_fd), key=lambda e: e.name):
        path = prefix + entry.name
        if not prefix and entry.is_dir(follow_symlinks=False):
            try:
                sub = os.open(entry.name, NOFOLLOW_DIR, dir_fd=dir_fd)
            except OSError:
                names.append(path)
                continue
            try:
                inside = _walk(sub, path + "/")
            finally:
                os.close(sub)
            names.extend(inside or [path + "/"])
        else:
            names.append(path)
    return names


def _load_manifest(fd: int, incident_id: str) -> dict:
    try:
        manifest = json.loads(_read(fd, MANIFEST))
    except FileNotFoundError:
        raise IncidentError(f"{incident_id}: {MANIFEST}: missing") from None
    except OSError as exc:
        raise IncidentError(f"{incident_id}: {MANIFEST}: {_reason(exc)}") from None
    except ValueError:
        raise IncidentError(f"{incident_id}: {MANIFEST}: not valid JSON") from None
    if not isinstance(manifest, dict):
        raise IncidentError(f"{incident_id}: {MANIFEST}: not a JSON object")
    return manifest


def _load_jsonl(fd: int, incident_id: str, path: str) -> list:
    try:
        text = _read(fd, path).decode("utf-8", "replace")
    except OSError as exc:
        raise IncidentError(
            f"{incident_id}: {path}: {'missing' if exc.errno == errno.ENOENT else _reason(exc)}"
        ) from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise IncidentError(f"{incident_id}: {path}: line {n}: not valid JSON") from None
    return rows
