"""A throwaway PostgreSQL server for tests (no Ray, no Docker): the distribution's binaries,
a fresh data directory under a temp dir, trust auth, listening on 127.0.0.1 only.

    with running_postgres() as url:  # postgresql://speakerscribe@127.0.0.1:PORT/speakerscribe
        ...

PostgreSQL refuses to run as root: as root its binaries run as the ``postgres`` system user
(``runuser``), which owns the temp dir; as anyone else they run as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "speakerscribe"
"""The superuser that ``initdb`` creates (trust auth: no password)."""
DATABASE = "speakerscribe"
RUN_AS_WHEN_ROOT = "postgres"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin``, else ``pg_config --bindir``."""
    candidates = [
        Path(p)
        for p in glob.glob("/usr/lib/postgresql/*/bin")
        if (Path(p) / "postgres").exists() and (Path(p) / "initdb").exists()
    ]
    if candidates:

        def version(path: Path) -> tuple[int, ...]:
            return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)

        return max(candidates, key=version)
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            found = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
        if found and (Path(found) / "postgres").exists() and (Path(found) / "initdb").exists():
            return Path(found)
    return None


def _as_root() -> bool:
    return os.geteuid() == 0


def postgres_available() -> str | None:
    """Why a server cannot be started here, or None when it can."""
    if find_bindir() is None:
        return (
            "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/postgres, "
            "no pg_config --bindir); install the postgresql package"
        )
    if _as_root():
        try:
            pwd.getpwnam(RUN_AS_WHEN_ROOT)
        except KeyError:
            return f"running as root and there is no {RUN_AS_WHEN_ROOT!r} user to run PostgreSQL"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (PostgreSQL refuses to run as root)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess[str]:
    if _as_root():
        command = ["runuser", "-u", RUN_AS_WHEN_ROOT, "--", *command]
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)


def _check(result: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
        raise RuntimeError(
            f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{tail}"
        )


def _connect(url: str, timeout_s: float = 30.0):
    """An autocommit connection, retried while the server comes up."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def create_database(server_url: str, name: str | None = None) -> str:
    """A new empty database on the server of ``server_url``; its URL."""
    name = name or f"test_{uuid.uuid4().hex[:12]}"
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a plain database name: {name!r}")
    with _connect(server_url) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def running_postgres(user: str = USER, database: str = DATABASE) -> Iterator[str]:
    """A PostgreSQL server for the length of the block: its URL, with ``database`` created.
    Stopped (``pg_ctl stop -m fast``) and its files removed on the way out."""
    reason = postgres_available()
    if reason is not None:
        raise RuntimeError(reason)
    bindir = find_bindir()
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="speakerscribe-pg-"))
    data, sockets, log = root / "data", root / "sockets", root / "postgres.log"
    sockets.mkdir()
    if _as_root():
        account = pwd.getpwnam(RUN_AS_WHEN_ROOT)
        for path in (root, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    started = False
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", user, "-A", "trust"]
        initdb += ["-E", "UTF8", "--no-locale", "--no-sync"]
        _check(_run(initdb, root, timeout=120), "initdb")
        for _attempt in range(3):  # the free port may be taken before the server binds it
            port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            start = [str(bindir / "pg_ctl"), "start", "-D", str(data), "-l", str(log)]
            start += ["-w", "-t", "60", "-o", options]
            result = _run(start, root, timeout=90)
            if result.returncode == 0:
                started = True
                break
        else:
            _check(result, "pg_ctl start", log)
        url = f"postgresql://{user}@127.0.0.1:{port}"
        create_database(f"{url}/postgres", database)
        yield f"{url}/{database}"
    finally:
        if started:
            _run([str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"], root)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":  # a quick check: python tests/postgres_server.py
    why = postgres_available()
    if why:
        raise SystemExit(why)
    begun = time.monotonic()
    with running_postgres() as server:
        print(server, f"up in {time.monotonic() - begun:.2f} s")
        with _connect(server) as conn:
            print(conn.execute("SELECT version()").fetchone())
        begun = time.monotonic()
        print(create_database(server), f"created in {time.monotonic() - begun:.3f} s")
