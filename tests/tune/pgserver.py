"""A throwaway PostgreSQL server for tests: `initdb` a cluster in a temporary directory, start it
with `pg_ctl` on a free port of 127.0.0.1 (unix socket in the same directory), create a database,
and stop and delete it all at the end.

Anything that keeps a server from running here (no server binaries, no psycopg2, initdb or the
start failing) raises `PgUnavailable` with the reason; the fixture in conftest.py turns it into a
skip. PostgreSQL refuses to run as root, so as root the server programs run as the `postgres`
system user that Debian's package creates (or `nobody`), via runuser or su.

Cleanup: `stop()` (the fixture's teardown), atexit for an interrupted run, and a watchdog process
for a test process killed by a signal (SIGTERM, SIGKILL), which skips atexit: pg_ctl detaches
the server from the test process, so nothing else would stop it.

Environment: TRAINWELL_PG_BIN=DIR looks for initdb and pg_ctl in DIR only (a missing DIR makes
the binaries unfindable, which is how the skip is tested).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

BIN_ENV = "TRAINWELL_PG_BIN"
DBNAME = "trainwell_test"
SUPERUSER = "postgres"
NOT_FOUND = "PostgreSQL server binaries not found (Debian package postgresql; .ci/run installs it)"

INITDB_TIMEOUT = 120.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
START_TRIES = 4

# Settings for a disposable test cluster: no durability, loopback only.
CONF = """
# trainwell tests
listen_addresses = '127.0.0.1'
unix_socket_directories = '{sockdir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
"""


# The watchdog: waits for EOF on its stdin, whose write end only the test process holds. Bytes
# first mean "stopped already"; bare EOF means the test process died: stop the server, delete.
WATCHDOG = r"""
import os, shutil, signal, subprocess, sys
if sys.stdin.buffer.read():
    sys.exit()
tmpdir, stop = sys.argv[1], sys.argv[2:]
try:
    stopped = subprocess.run(stop, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, timeout=60).returncode == 0
except Exception:
    stopped = False
if not stopped:
    try:
        with open(os.path.join(tmpdir, "data", "postmaster.pid")) as f:
            os.killpg(int(f.read().split()[0]), signal.SIGKILL)
    except Exception:
        pass
shutil.rmtree(tmpdir, ignore_errors=True)
"""


class PgUnavailable(RuntimeError):
    """A server cannot be started here; str() is the reason to skip with."""


def _version_key(bindir: str) -> tuple[int, ...]:
    name = Path(bindir).parent.name  # /usr/lib/postgresql/<ver>/bin
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def find_binaries() -> tuple[Path, Path]:
    """(initdb, pg_ctl): $TRAINWELL_PG_BIN only when set, else PATH, else the newest
    /usr/lib/postgresql/<ver>/bin. Raises PgUnavailable."""
    override = os.environ.get(BIN_ENV)
    if override is not None:
        dirs = [override]
    else:
        dirs = [os.environ.get("PATH", "")]
        dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for d in dirs:
        initdb, pg_ctl = shutil.which("initdb", path=d), shutil.which("pg_ctl", path=d)
        if initdb and pg_ctl:
            # Resolve links (/usr/local/bin/initdb -> .../15/bin/initdb): pg_ctl finds the
            # postgres program next to its real path.
            return Path(initdb).resolve(), Path(pg_ctl).resolve()
    where = f"{BIN_ENV}={override}" if override is not None else "PATH or /usr/lib/postgresql/*/bin"
    raise PgUnavailable(f"{NOT_FOUND}; looked in {where}")


def free_port() -> int:
    """A port of 127.0.0.1 that was free a moment ago (bound to port 0, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_user() -> str | None:
    """The unprivileged user to run the server programs as, or None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PgUnavailable("running as root and neither a 'postgres' nor a 'nobody' user exists")


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    if user is None:
        return argv
    if shutil.which("runuser"):
        return ["runuser", "-u", user, "--", *argv]
    if shutil.which("su"):
        return ["su", "-s", "/bin/sh", user, "-c", shlex.join(argv)]
    raise PgUnavailable("running as root and neither runuser nor su is available to drop to a user")


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class PgServer:
    """A running throwaway server. `url` is a SQLAlchemy URL of its database."""

    pg_ctl: Path
    tmpdir: Path
    user: str | None
    port: int = 0
    dbname: str = DBNAME
    version: str = ""
    start_seconds: float = 0.0
    _stopped: bool = field(default=False, repr=False)
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def datadir(self) -> Path:
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        return self.tmpdir / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{SUPERUSER}@127.0.0.1:{self.port}/{self.dbname}"

    def dsn(self, dbname: str | None = None) -> dict[str, object]:
        """psycopg2.connect keywords for a database of this server (default: the test one)."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": SUPERUSER,
            "dbname": dbname or self.dbname,
            "connect_timeout": 5,
        }

    def run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a server program as the server's user; output to a file, not a pipe (a daemon
        started by pg_ctl would keep a pipe open)."""
        out = self.tmpdir / "cmd.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        with open(out, "w") as f:
            proc = subprocess.run(
                _as_user(self.user, argv),
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,  # the user must be able to read its working directory
                env=env,
                timeout=timeout,
                text=True,
            )
        proc.stdout = out.read_text(errors="replace")
        return proc

    def log_tail(self) -> str:
        try:
            return _tail(self.logfile.read_text(errors="replace"))
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL) and delete its directory.
        Idempotent; also registered with atexit."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            self._stop_server()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        if self._watchdog is not None:
            with contextlib.suppress(Exception):
                self._watchdog.communicate(b"stopped", timeout=10)
            if self._watchdog.poll() is None:
                self._watchdog.kill()

    def _start_watchdog(self) -> None:
        stop = [str(self.pg_ctl), "stop", "-D", str(self.datadir), "-m", "immediate", "-w"]
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(self.tmpdir), *_as_user(self.user, stop)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,  # outlives a signal sent to the test run's process group
        )

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _stop_server(self) -> None:
        if self._postmaster_pid() is None:
            return
        for mode in ("fast", "immediate"):
            with contextlib.suppress(subprocess.TimeoutExpired):
                argv = [str(self.pg_ctl), "stop", "-D", str(self.datadir), "-m", mode, "-w"]
                argv += ["-t", str(int(STOP_TIMEOUT))]
                if self.run(argv, timeout=STOP_TIMEOUT + 10).returncode == 0:
                    return
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)  # pg_ctl starts the postmaster in its own group
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _wait_accepting(server: PgServer, deadline: float) -> None:
    import psycopg2

    while True:
        try:
            conn = psycopg2.connect(**server.dsn("postgres"))
        except psycopg2.OperationalError as e:
            if time.monotonic() > deadline:
                raise PgUnavailable(f"PostgreSQL started but refuses connections: {e}") from e
            time.sleep(0.1)
            continue
        conn.close()
        return


def _create_database(server: PgServer) -> None:
    import psycopg2

    conn = psycopg2.connect(**server.dsn("postgres"))
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            server.version = cur.fetchone()[0]
            cur.execute(f'CREATE DATABASE "{server.dbname}"')
    finally:
        conn.close()


def start_server(dbname: str = DBNAME) -> PgServer:
    """Create, start and return a throwaway server; stop() it when done. Raises PgUnavailable
    with the reason when a server cannot run here."""
    t0 = time.monotonic()
    try:
        import psycopg2  # noqa: F401
    except ImportError as e:
        raise PgUnavailable(f"psycopg2 is not installed ({e}); pip install psycopg2-binary") from e
    initdb, pg_ctl = find_binaries()
    user = _run_user()
    _as_user(user, ["true"])  # raises when there is no way to drop root

    tmpdir = Path(tempfile.mkdtemp(prefix="trainwell-pg-"))
    server = PgServer(pg_ctl=pg_ctl, tmpdir=tmpdir, user=user, dbname=dbname)
    atexit.register(server.stop)  # also when the run is interrupted
    try:
        server._start_watchdog()  # and when the test process is killed
        if user is not None:
            pw = pwd.getpwnam(user)
            os.chown(tmpdir, pw.pw_uid, pw.pw_gid)
        _initdb(server, initdb)
        _start(server)
        _create_database(server)
    except PgUnavailable:
        server.stop()
        raise
    except Exception as e:
        server.stop()
        raise PgUnavailable(
            f"could not start a PostgreSQL test server: {type(e).__name__}: {e}"
        ) from e
    server.start_seconds = time.monotonic() - t0
    return server


def _initdb(server: PgServer, initdb: Path) -> None:
    argv = [str(initdb), "-D", str(server.datadir), "-A", "trust", "-E", "UTF8", "--locale=C"]
    argv += ["-U", SUPERUSER, "--no-sync"]
    try:
        proc = server.run(argv, timeout=INITDB_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise PgUnavailable(f"initdb ({initdb}) timed out after {INITDB_TIMEOUT:.0f} s") from e
    if proc.returncode != 0:
        who = f" as user {server.user}" if server.user else ""
        raise PgUnavailable(f"initdb ({initdb}){who} failed:\n{_tail(proc.stdout)}")
    conf = CONF.format(sockdir=str(server.tmpdir).replace("'", "''"))
    with open(server.datadir / "postgresql.conf", "a") as f:
        f.write(conf)


def _start(server: PgServer) -> None:
    """Start on a free port; a port taken between picking and binding gets another try."""
    failure = ""
    for _ in range(START_TRIES):
        server.port = free_port()
        argv = [str(server.pg_ctl), "start", "-D", str(server.datadir), "-l", str(server.logfile)]
        argv += ["-w", "-t", str(int(START_TIMEOUT)), "-o", f"-p {server.port}"]
        try:
            proc = server.run(argv, timeout=START_TIMEOUT + 15)
        except subprocess.TimeoutExpired:
            proc = None
        if proc is not None and proc.returncode == 0:
            _wait_accepting(server, time.monotonic() + START_TIMEOUT)
            return
        failure = (proc.stdout if proc else "pg_ctl start timed out") + "\n" + server.log_tail()
        server._stop_server()  # whatever half-started
        if not re.search(r"already in use|could not bind|could not create any TCP", failure):
            break  # not a port clash: another port will not help
    raise PgUnavailable(f"pg_ctl could not start the PostgreSQL test server:\n{_tail(failure)}")


@contextlib.contextmanager
def postgres_server(dbname: str = DBNAME) -> Iterator[PgServer]:
    """`with postgres_server() as server:` a running throwaway server, stopped and deleted after."""
    server = start_server(dbname)
    try:
        yield server
    finally:
        server.stop()
