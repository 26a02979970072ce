"""A real PostgreSQL server for the store tests and the store benchmark: Debian's ``postgresql`` package
(scripts/setup.sh), ``initdb`` + ``pg_ctl`` in a temporary folder, no systemd, listening only on a Unix
socket in that folder (and a free port number, which names the socket). PostgreSQL refuses to run as
root, so as root the server runs as ``nobody`` (``runuser``); as anyone else, as that user.

    with PostgresServer() as server:
        url = server.create_database("t1")   # postgresql://vmsentry@/t1?host=/tmp/...&port=...
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "vmsentry"


def postgres_bin() -> Path:
    """The newest installed server's bin folder (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL server not installed: apt-get install postgresql (scripts/setup.sh)")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, *, durable: bool = False) -> None:
        """``durable``: PostgreSQL's default fsync and synchronous commit (benchmarks); the tests turn
        both off (a test's database is thrown away with the folder)."""
        self.durable = durable
        self.bin = postgres_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="vmsentry-pg-"))
        self.port = free_port()
        self.as_nobody = os.geteuid() == 0
        self.started = False

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "nobody", "--"] if self.as_nobody else []
        proc = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = (self.dir / "log").read_text(errors="replace") if (self.dir / "log").exists() else ""
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({proc.returncode}): {proc.stderr}{proc.stdout}{log}")

    def start(self) -> PostgresServer:
        os.chmod(self.dir, 0o755)
        if self.as_nobody:
            shutil.chown(self.dir, "nobody", "nogroup")
        data = str(self.dir / "data")
        self._run(str(self.bin / "initdb"), "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-k {self.dir} -p {self.port} -c listen_addresses=''"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off"
        self._run(str(self.bin / "pg_ctl"), "-D", data, "-l", str(self.dir / "log"), "-w", "-o", options, "start")
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.dir}&port={self.port}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
