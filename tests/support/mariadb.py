"""A real MariaDB server for the session, and a fresh database for each test.

Debian's ``mariadb-server`` (``make mariadb`` installs it) runs as a child of
the test session: its own data folder and unix socket in a temporary folder, a
free port on 127.0.0.1, no option files read (``--no-defaults``), so nothing
of a system installation is touched. The tests connect over TCP with PyMySQL as
a user with a password, exactly as ``imgpipe run --from-sql`` would.

Start-up cost, measured on the shared 2-core machine: ``mariadb-install-db``
about 2.7 s, then ready for connections in about 0.7 s (5.5 s in all under a
load of 5); each session's own figure is kept in ``MariaDB.started_in``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

USER = "imgpipe"
# Characters that URL quoting changes, so a leak in any spelling would be caught.
PASSWORD = "Pw-9f3!k@q/x"


@dataclass
class MariaDB:
    port: int
    socket: Path
    error_log: Path
    started_in: float

    def url(self, database: str = "", *, password: str = PASSWORD) -> str:
        from sqlalchemy.engine import URL

        return URL.create(
            "mysql+pymysql", USER, password, "127.0.0.1", self.port, database or None
        ).render_as_string(hide_password=False)

    def admin(self, sql: str) -> None:
        """Run one statement as root over the unix socket (root has no TCP login)."""
        self.query(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of one statement run as root over the unix socket."""
        import pymysql

        connection = pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            connection.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if found:
            return found
    raise RuntimeError(
        f"none of {names} found: run `make mariadb` (apt-get install mariadb-server)"
    )


def _wait_ready(server: MariaDB, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the server logs that it is ready (connecting earlier can leave a socket open)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log = server.error_log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"mariadbd exited with {process.returncode}:\n{log}")
        if server.error_log.is_file() and "ready for connections" in server.error_log.read_text(
            errors="replace"
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"mariadbd not ready after {timeout} s; see {server.error_log}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    started = time.monotonic()
    root = tmp_path_factory.mktemp("mariadb")
    data = root / "data"
    subprocess.run(
        [
            _binary("mariadb-install-db", "mysql_install_db"),
            "--no-defaults",
            f"--datadir={data}",
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = MariaDB(_free_port(), root / "mysqld.sock", root / "error.log", 0.0)
    process = subprocess.Popen(
        [
            _binary("mariadbd", "mysqld"),
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={server.socket}",
            f"--port={server.port}",
            "--bind-address=127.0.0.1",
            "--skip-networking=0",
            "--skip-name-resolve",
            "--user=root",
            f"--pid-file={root / 'mysqld.pid'}",
            f"--log-error={server.error_log}",
            # A test server: small buffers, no binary log, no durability to wait for.
            "--innodb-buffer-pool-size=32M",
            "--skip-log-bin",
            "--performance-schema=OFF",
            "--innodb-flush-log-at-trx-commit=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(server, process)
        server.admin(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
        server.admin(f"GRANT ALL ON *.* TO '{USER}'@'127.0.0.1'")
        server.started_in = time.monotonic() - started
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def mariadb_url(mariadb: MariaDB) -> Iterator[str]:
    """A URL (with its password) to a new, empty database of the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    mariadb.admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield mariadb.url(name)
    finally:
        mariadb.admin(f"DROP DATABASE {name}")


def load_covers(
    url: str,
    rows: list[tuple[Any, ...]],
    columns: tuple[str, ...] = ("creator_name", "cover_url"),
    table: str = "covers",
) -> None:
    """A table ``table`` with an ``id`` key and text ``columns``, holding ``rows`` in order."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    metadata = sqlalchemy.MetaData()
    covers = sqlalchemy.Table(
        table,
        metadata,
        sqlalchemy.Column("id", sqlalchemy.Integer, primary_key=True, autoincrement=True),
        *(sqlalchemy.Column(name, sqlalchemy.Text) for name in columns),
    )
    try:
        with engine.begin() as connection:
            metadata.create_all(connection)
            if rows:
                connection.execute(
                    covers.insert(), [dict(zip(columns, row, strict=True)) for row in rows]
                )
    finally:
        engine.dispose()
