"""The audit log's Ed25519 key and the signed statements made with it (checkpoints, the pruned prefix).

The private half is made on first use in the log's folder (``audit.key``, PKCS#8 PEM, mode 0600, created
under a random name and linked into place, so two processes starting at once end with one key); the
public half goes beside it (``audit.pub``, PEM) and is printed once on standard error so the operator can
keep it elsewhere. Nothing ever prints or returns the private half.

A signed statement is canonical JSON (``type``, ``key_id`` and its fields); the signature covers its exact
bytes. A checkpoint file an auditor keeps carries the public key too, so it can be checked on its own and a
log re-signed with another key is caught.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE = "audit.key"
PUBLIC_FILE = "audit.pub"


class AuditError(Exception):
    """The audit log cannot be used: the message is one line naming the file (key, database, checkpoint)."""


class AuditTampered(AuditError):
    """The log, or a checkpoint given with it, does not verify: ``audit`` exits 1 (not 2)."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def key_id(public: bytes) -> str:
    """16 hex characters of SHA-256 over the raw 32-byte public key: the name the log and checkpoints use."""
    return hashlib.sha256(public).hexdigest()[:16]


def public_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def read_public(path: str | os.PathLike) -> bytes:
    """The raw public key from a PEM file (``audit.pub``) or a file holding its base64 (what was printed)."""
    try:
        data = Path(path).read_bytes()[:8192]
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the public key: {exc.strerror or exc}") from None
    try:
        if b"BEGIN PUBLIC KEY" in data:
            pub = serialization.load_pem_public_key(data)
            if not isinstance(pub, Ed25519PublicKey):
                raise ValueError("not an Ed25519 key")
            return public_raw(pub)
        raw = unb64(data.decode("ascii").split()[-1])
        if len(raw) != 32:
            raise ValueError("not 32 bytes")
        return raw
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: not an Ed25519 public key ({exc})") from None


def load_or_create(directory: Path, announce: Callable[[str], None]) -> Ed25519PrivateKey:
    path = directory / KEY_FILE
    if not path.exists():
        _create(directory, announce)
    try:
        info = path.stat()
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuditError(
                f"{path}: the audit key is readable by others (mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it"
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the audit key: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise AuditError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path}: not an Ed25519 key")
    return key


def _create(directory: Path, announce: Callable[[str], None]) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fd, tmp = tempfile.mkstemp(prefix=".audit.key.", dir=directory)  # mode 0600, O_EXCL
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, directory / KEY_FILE)  # fails if another process made its key first: that one wins
        except FileExistsError:
            return
    finally:
        os.unlink(tmp)
    _write_public(directory / PUBLIC_FILE, public_pem)
    raw = public_raw(key)
    announce(
        f"new audit signing key ed25519:{key_id(raw)} in {directory}; keep its public half elsewhere "
        f"(also in {directory / PUBLIC_FILE}): {b64(raw)}"
    )


def _write_public(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".audit.pub.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@dataclass(frozen=True)
class Signed:
    """A statement (canonical JSON bytes) and its Ed25519 signature."""

    body: bytes
    signature: bytes

    @property
    def fields(self) -> dict:
        return json.loads(self.body)

    def valid(self, public: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(self.signature, self.body)
        except (InvalidSignature, ValueError):
            return False
        return True


def sign(key: Ed25519PrivateKey, kind: str, **fields: object) -> Signed:
    body = canonical({"type": kind, "key_id": key_id(public_raw(key)), **fields})
    return Signed(body, key.sign(body))
