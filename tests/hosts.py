"""Test hosts built from Linux namespaces, sharing a private database server.

A ``Cluster`` (one per test module) is a Linux bridge in the root namespace with the address
10.77.N.1/24, and a database server of its own (PostgreSQL or MariaDB, by
``DJANGOTASKS_TEST_DB``) that listens only on that address and on a socket in its temporary
directory, with its data there too. A ``Host`` is a network namespace with one veth end on
the bridge (10.77.N.k, no default route: nothing leaves the machine). Each daemon of a host
runs in a UTS + pid + mount namespace of its own, as pid 1, under the hostname the test gave
the host, optionally with a clock shifted by faketime. The hosts share the filesystem, so
their tasks record what they did in files the test reads (see tests/hosts_tasks.py).

The test process reads the database through the ``hosts`` alias, added at runtime and
removed at the end of the module, so the rest of the suite never sees it.

Everything is removed at the end, failed test or not: daemons, namespaces, links, server,
temporary directory. A pytest killed outright takes the daemons and the server with it
(parent-death signals); its namespaces and bridge stay behind (``ip netns``, ``ip link``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from djangotasks.daemon import linux
from tests.helpers import CALL_REPORT, ROOT, wait_until

ALIAS = "hosts"
DB_NAME = "djangotasks_hosts"
# Ports on the private address only: the machine's own servers (127.0.0.1:5432, :3306) and
# anything bound to 0.0.0.0 on the usual ports are left alone.
PORTS = {"postgres": 25432, "mysql": 23306}
# What a host runs in: the hostname is set inside the new UTS namespace, then exec.
SET_HOSTNAME = 'hostname "$1" && shift && exec "$@"'
# Every process of a host imports the tasks of the many-hosts tests (see hosts_tasks.py).
PRELUDE = "import django\ndjango.setup()\nimport tests.hosts_tasks\n"
DAEMON_CODE = PRELUDE + textwrap.dedent(
    """\
    import sys
    from django.core import management
    pidfile, concurrency = sys.argv[1:3]
    argv = ["django", "taskd", "run", "--pidfile", pidfile, "--concurrency", concurrency]
    management.execute_from_command_line(argv)
    """
)


def missing_requirement() -> str | None:
    """Why the many-hosts tests cannot run here, or None."""
    db = os.environ.get("DJANGOTASKS_TEST_DB", "sqlite")
    if db not in PORTS:
        return "many hosts need a database server (DJANGOTASKS_TEST_DB=postgres or mysql)"
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "many hosts need root on Linux (network, pid and UTS namespaces)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"many hosts need {tool!r} (scripts/system-packages.sh installs it)"
    if _libfaketime() is None:
        return "many hosts need libfaketime (the faketime package)"
    if db == "postgres" and not _postgres_bin():
        return "many hosts need PostgreSQL's initdb and postgres (/usr/lib/postgresql/*/bin)"
    if db == "mysql" and not (shutil.which("mariadb-install-db") and Path(MARIADBD).exists()):
        return f"many hosts need mariadb-install-db and {MARIADBD}"
    return None


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and result.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result


def pid_namespace(pid: int) -> str | None:
    """The inode of ``pid``'s pid namespace, as the tasks record it; None when it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid").removeprefix("pid:[").removesuffix("]")
    except OSError:
        return None


def processes_in(namespace: str) -> list[int]:
    """Pids (as the root namespace sees them) of the live processes of a pid namespace."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_namespace(int(entry.name)) == namespace:
            with contextlib.suppress(OSError):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
    return found


def process_alive(namespace: str, pid: int) -> bool:
    """True if the process that is ``pid`` inside pid namespace ``namespace`` still runs."""
    for root_pid in processes_in(namespace):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{root_pid}/status").read_text()
            nspids = next(line for line in status.splitlines() if line.startswith("NSpid:"))
            if int(nspids.split()[-1]) == pid:
                return True
    return False


def _libfaketime() -> Path | None:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    return found[0] if found else None


SHM = Path("/dev/shm")


def _faketime_shm() -> set[str]:
    return {p.name for p in SHM.glob("*faketime_s*")}


def _die_with_pytest() -> None:
    linux.set_parent_death_signal(signal.SIGKILL)


# -- the private database server ------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return found[-1].parent if found else None


MARIADBD = "/usr/sbin/mariadbd"


class DatabaseServer:
    """A server of the cluster's own: data and socket in ``directory``, TCP on ``address``."""

    vendor = ""

    def __init__(self, directory: Path, address: str) -> None:
        self.directory = directory
        self.address = address
        self.port = PORTS[self.vendor]
        self.data = directory / "data"
        self.log_path = directory / "server.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def initialise(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def preexec(self) -> None:
        _die_with_pytest()

    def connect(self) -> Any:
        """A driver connection to the server (no database), or an exception."""
        raise NotImplementedError

    def create_database(self, name: str) -> None:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """What tests/settings.py reads to reach this server."""
        raise NotImplementedError

    def django_settings(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.preexec
            )
        wait_until(self._ready, timeout=60, interval=0.05)

    def _ready(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise AssertionError(f"the database server exited:\n{self.log_path.read_text()}")
        try:
            self.connect().close()
        except Exception:
            return False
        return True

    def stop(self) -> None:
        """Stop the server (a clean, fast shutdown: connections are closed) and wait."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None

    stop_signal = signal.SIGTERM


class PostgresServer(DatabaseServer):
    vendor = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: ends sessions, no waiting for clients

    def initialise(self) -> None:
        user = pwd.getpwnam("postgres")
        os.chown(self.directory, user.pw_uid, user.pw_gid)
        bin_dir = _postgres_bin()
        initdb = [str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres"]
        run("runuser", "-u", "postgres", "--", *initdb, "--auth=trust", "--no-sync")
        subnet = self.address.rsplit(".", 1)[0] + ".0/24"
        (self.data / "pg_hba.conf").write_text(
            f"local all all trust\nhost all all {subnet} trust\n"
        )
        os.chown(self.data / "pg_hba.conf", user.pw_uid, user.pw_gid)

    def command(self) -> list[str]:
        return [
            str(_postgres_bin() / "postgres"), "-D", str(self.data),
            "-h", self.address, "-p", str(self.port), "-k", str(self.directory),
            "-c", "fsync=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB",
        ]  # fmt: skip

    def preexec(self) -> None:
        user = pwd.getpwnam("postgres")
        os.setgid(user.pw_gid)
        os.setgroups([])
        os.setuid(user.pw_uid)
        # After setuid: changing credentials clears the parent-death signal.
        _die_with_pytest()

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host=self.address, port=self.port, user="postgres", dbname=dbname,
            connect_timeout=2, autocommit=True,
        )  # fmt: skip

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def env(self) -> dict[str, str]:
        return {"PGHOST": self.address, "PGPORT": str(self.port), "PGUSER": "postgres"}

    def django_settings(self, name: str) -> dict[str, Any]:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name, "USER": "postgres", "HOST": self.address, "PORT": str(self.port),
        }  # fmt: skip


class MariaDBServer(DatabaseServer):
    vendor = "mysql"

    def initialise(self) -> None:
        run(
            "mariadb-install-db", "--no-defaults", f"--datadir={self.data}", "--user=root",
            "--auth-root-authentication-method=normal", "--skip-test-db",
        )  # fmt: skip

    def command(self) -> list[str]:
        # --skip-grant-tables: anyone who reaches the private address is root, as with trust
        # authentication on PostgreSQL. --skip-name-resolve: no DNS lookups for clients.
        return [
            MARIADBD, "--no-defaults", "--user=root", f"--datadir={self.data}",
            f"--socket={self.directory / 'mysqld.sock'}",
            f"--pid-file={self.directory / 'mysqld.pid'}",
            f"--bind-address={self.address}", f"--port={self.port}",
            "--skip-grant-tables", "--skip-name-resolve", "--skip-log-bin",
            "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0", "--max-connections=300",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
        ]  # fmt: skip

    def connect(self) -> Any:
        import MySQLdb

        return MySQLdb.connect(host=self.address, port=self.port, user="root", connect_timeout=2)

    def create_database(self, name: str) -> None:
        conn = self.connect()
        try:
            conn.cursor().execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        finally:
            conn.close()

    def env(self) -> dict[str, str]:
        return {"MYSQL_HOST": self.address, "MYSQL_PORT": str(self.port), "MYSQL_USER": "root"}

    def django_settings(self, name: str) -> dict[str, Any]:
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name, "USER": "root", "HOST": self.address, "PORT": str(self.port),
            "OPTIONS": {"charset": "utf8mb4"},
        }  # fmt: skip


# -- the network, hosts and their daemons ---------------------------------------------------


class Cluster:
    """The bridge, the private server and its database; the factory of hosts."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.directory = Path(tempfile.mkdtemp(prefix="djangotasks-hosts-"))
        self.directory.chmod(0o755)  # the server's user must reach its own subdirectory
        self.shared = self.directory / "shared"  # where tasks of all hosts write
        self.shared.mkdir(mode=0o777)
        self.n = 0
        self.bridge = ""
        self.server: DatabaseServer | None = None
        self.hosts: list[Host] = []
        self._host_numbers = itertools.count(11)

    @property
    def prefix(self) -> str:
        return f"10.77.{self.n}"

    def create(self) -> None:
        self._create_bridge()
        server_dir = self.directory / "server"
        server_dir.mkdir()
        cls = PostgresServer if self.vendor == "postgres" else MariaDBServer
        self.server = cls(server_dir, f"{self.prefix}.1")
        self.server.initialise()
        self.server.start()
        self.server.create_database(DB_NAME)
        result = subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--settings=tests.settings", "-v0"],
            cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def _create_bridge(self) -> None:
        # Two pytest runs on one machine must not share a subnet: the first N whose bridge
        # we could create is ours ("ip link add" of an existing name fails).
        start = os.getpid() % 200
        for i in range(200):
            n = 20 + (start + i) % 200
            if run("ip", "link", "add", f"dt{n}br", "type", "bridge", check=False).returncode:
                continue
            self.n, self.bridge = n, f"dt{n}br"
            run("ip", "addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
            return
        raise RuntimeError("no free 10.77.N.0/24 subnet for the test hosts")

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of every process that uses the cluster's database."""
        assert self.server is not None
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("DJANGOTASKS_", "PG", "MYSQL_", "FAKETIME"))
        }  # fmt: skip
        env.update(self.server.env())
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            DJANGOTASKS_TEST_DB=self.vendor,
            DJANGOTASKS_DB_NAME=DB_NAME,
            DJANGOTASKS_TEST_VAR=str(self.directory),
        )
        env.update(extra)
        return env

    def stop_server(self) -> None:
        """Stop the database server (same data directory and port when it starts again)."""
        assert self.server is not None
        # The test's own connection would be broken by the restart: it reconnects after.
        connections[ALIAS].close()
        self.server.stop()

    def start_server(self) -> None:
        assert self.server is not None
        self.server.start()

    def add_alias(self) -> None:
        """Let the test process read the cluster's database as ``using(ALIAS)``."""
        assert self.server is not None
        databases = {
            "default": dict(connections.settings["default"]),
            ALIAS: self.server.django_settings(DB_NAME),
        }
        connections.settings[ALIAS] = connections.configure_settings(databases)[ALIAS]

    def remove_alias(self) -> None:
        # pytest-django creates test databases for every alias it sees when the first
        # database test starts: the alias must not outlive this module.
        if ALIAS in connections.settings:
            with contextlib.suppress(Exception):
                connections[ALIAS].close()
            with contextlib.suppress(AttributeError):
                delattr(connections._connections, ALIAS)
            del connections.settings[ALIAS]

    def empty_tables(self) -> None:
        """Remove what earlier tests left (tasks, workers, jobs); content types stay."""
        from django.apps import apps
        from django.core.management.color import no_style

        connection = connections[ALIAS]
        tables = [
            m._meta.db_table
            for label in ("djangotasks", "tests")
            for m in apps.get_app_config(label).get_models(include_auto_created=True)
        ]
        with connection.cursor() as cursor:
            for sql in connection.ops.sql_flush(no_style(), tables, allow_cascade=True):
                cursor.execute(sql)

    def host(self, name: str, faketime: str | None = None) -> Host:
        """A new host: a network namespace on the bridge, with hostname ``name``.

        ``faketime``: a libfaketime offset such as ``"+60s"`` for every process of the host
        (its daemons, their tasks, its clients).
        """
        number = next(self._host_numbers)
        host = Host(self, name, number, faketime)
        self.hosts.append(host)
        host.create()
        return host

    def remove_hosts(self) -> None:
        for host in self.hosts:
            host.remove()
        self.hosts = []

    def destroy(self) -> None:
        self.remove_hosts()
        if self.server is not None:
            self.server.stop()
        if self.bridge:
            run("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.directory, ignore_errors=True)


class Host:
    """A network namespace on the cluster's bridge; its daemons each get a pid namespace."""

    def __init__(self, cluster: Cluster, name: str, number: int, faketime: str | None) -> None:
        self.cluster = cluster
        self.name = name
        self.netns = f"dt{cluster.n}h{number}"
        self.link = f"dt{cluster.n}h{number}r"  # the bridge's end of the veth pair
        self.address = f"{cluster.prefix}.{number}"
        self.faketime = faketime
        self.directory = cluster.directory / self.netns
        self.daemons: list[Daemon] = []
        self.shm_before = _faketime_shm() if faketime else set()

    def create(self) -> None:
        self.directory.mkdir()
        run("ip", "netns", "add", self.netns)
        run("ip", "link", "add", self.link, "type", "veth", "peer", "name", "eth0",
            "netns", self.netns)  # fmt: skip
        run("ip", "link", "set", self.link, "master", self.cluster.bridge, "up")
        run("ip", "-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
        run("ip", "-n", self.netns, "link", "set", "eth0", "up")
        run("ip", "-n", self.netns, "link", "set", "lo", "up")

    def _prefix(self, *unshare: str) -> list[str]:
        """argv that runs a command in this host's namespaces, with its hostname and clock."""
        return [
            "ip", "netns", "exec", self.netns, "unshare", "--uts", *unshare,
            "sh", "-c", SET_HOSTNAME, "sh", self.name,
        ]  # fmt: skip

    def env(self, **extra: str) -> dict[str, str]:
        env = self.cluster.env(**extra)
        if self.faketime:
            # libfaketime preloaded, as the faketime wrapper does; not the wrapper itself: it
            # names a semaphore in /dev/shm after its pid, which is 1 in every pid namespace,
            # and one left by a killed host makes the next wrapper refuse to start.
            # Monotonic clocks get the same constant offset, which no difference of two
            # readings sees. libfaketime 0.9.10 with Python 3.13, measured here: with
            # FAKETIME_DONT_FAKE_MONOTONIC=1, time.sleep() fails with EINVAL (its absolute
            # monotonic clock_nanosleep); without it, sleep, select and selectors work, but a
            # timed wait on a threading lock or Event waits the offset longer. The daemon's
            # loop and these tests' tasks use only the former.
            env["LD_PRELOAD"] = str(_libfaketime())
            env["FAKETIME"] = self.faketime
        return env

    def start_daemon(
        self, concurrency: int = 4, wait: bool = True, as_pid1: bool = True, **env: str
    ) -> Daemon:
        """Start ``taskd run`` as pid 1 of a new pid namespace on this host.

        ``env``: e.g. DJANGOTASKS_HEARTBEAT, DJANGOTASKS_WORKER_TIMEOUT. With ``wait``, return
        once a worker row with this host's name more than before exists. ``as_pid1=False``:
        a shell is pid 1 and the daemon its child, pid 2 (a container with an init shim).
        """
        n = len(self.daemons) + 1
        log_path = self.directory / f"taskd-{n}.log"
        pidfile = self.directory / f"taskd-{n}.pid"
        # "; exit": a shell must not exec its last command in place of itself.
        shim = [] if as_pid1 else ["sh", "-c", '"$@"; exit $?', "sh"]
        argv = [
            *self._prefix("--pid", "--fork", "--mount-proc", "--kill-child"),
            *shim, sys.executable, "-c", DAEMON_CODE, str(pidfile), str(concurrency),
        ]  # fmt: skip
        before = self.workers().count()
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                argv, cwd=ROOT, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_pytest,
            )  # fmt: skip
        daemon = Daemon(self, popen, log_path, before)
        self.daemons.append(daemon)
        daemon.find_pid1()
        if wait:
            daemon.wait_registered()
        return daemon

    def workers(self) -> Any:
        from djangotasks.models import Worker

        return Worker.objects.using(ALIAS).filter(hostname=self.name)

    def client(self, code: str, timeout: float = 120, **env: str) -> str:
        """Run Python ``code`` on this host with Django set up; return what it printed."""
        argv = [*self._prefix(), sys.executable, "-c", PRELUDE + textwrap.dedent(code)]
        result = subprocess.run(
            argv, cwd=ROOT, env=self.env(**env), capture_output=True, text=True,
            timeout=timeout, preexec_fn=_die_with_pytest,
        )  # fmt: skip
        assert result.returncode == 0, f"client on {self.name} failed:\n{result.stderr}"
        return result.stdout

    def cut(self) -> None:
        """Unplug the host: its packets (to the database too) go nowhere until restore()."""
        run("ip", "link", "set", self.link, "down")

    def restore(self) -> None:
        run("ip", "link", "set", self.link, "up")

    def remove(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        # Processes in the namespace would keep it (and its veth) alive: they are gone now.
        run("ip", "netns", "del", self.netns, check=False)
        run("ip", "link", "del", self.link, check=False)
        if self.faketime:
            # libfaketime names a semaphore and a shared memory segment after the pid of each
            # process it runs in and leaves them behind when that process is killed.
            for name in _faketime_shm() - self.shm_before:
                with contextlib.suppress(OSError):
                    (SHM / name).unlink()


class Daemon:
    """``taskd run`` as pid 1 of its own pid namespace; ``popen`` is the ``unshare`` above it."""

    def __init__(
        self, host: Host, popen: subprocess.Popen[bytes], log_path: Path, workers_before: int
    ) -> None:
        self.host = host
        self.popen = popen
        self.log_path = log_path
        self.workers_before = workers_before
        self.pid1 = 0  # as the root namespace sees it
        self.namespace = ""

    def find_pid1(self) -> None:
        children = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")

        def child() -> int | None:
            if self.popen.poll() is not None:
                raise AssertionError(f"unshare exited {self.popen.returncode}:\n{self.log}")
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    return int(pid)
            return None

        self.pid1 = wait_until(child, timeout=10, interval=0.005)
        self.namespace = wait_until(lambda: pid_namespace(self.pid1), timeout=10)
        status = Path(f"/proc/{self.pid1}/status").read_text()
        nspid = next(line for line in status.splitlines() if line.startswith("NSpid:"))
        assert nspid.split()[-1] == "1", nspid

    def wait_registered(self, timeout: float = 60) -> None:
        """Wait for a worker row with the host's name more than before the start."""
        wait_until(
            lambda: self.host.workers().count() > self.workers_before or not self.running(),
            timeout=timeout,
        )
        assert self.running(), self.log

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def processes(self) -> list[int]:
        """Every live process of the daemon's pid namespace (root namespace pids)."""
        return processes_in(self.namespace) if self.namespace else []

    def terminate(self) -> None:
        """SIGTERM to the daemon (pid 1 of its namespace: it gets it since it handles it)."""
        os.kill(self.pid1, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """The host dies: SIGKILL to pid 1 ends every process of its pid namespace at once."""
        if self.pid1 and self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid1, signal.SIGKILL)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()  # --kill-child: unshare's death kills pid 1 too
            self.popen.wait()
        wait_until(lambda: not self.processes(), timeout=10)


@pytest.fixture(scope="module")
def cluster(django_db_blocker: Any) -> Iterator[Cluster]:
    """The module's bridge and private database server, migrated."""
    reason = missing_requirement()
    if reason:
        pytest.skip(reason)
    made = Cluster(os.environ["DJANGOTASKS_TEST_DB"])
    try:
        made.create()
        made.add_alias()
        yield made
    finally:
        made.remove_alias()
        made.destroy()


@pytest.fixture
def hosts(
    cluster: Cluster, django_db_blocker: Any, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Host]]:
    """``hosts(name, faketime=None)`` makes a host; all are removed after the test.

    The test may read the cluster's database (``using(ALIAS)``) throughout.
    """
    with django_db_blocker.unblock():
        cluster.empty_tables()
        shutil.rmtree(cluster.shared)
        cluster.shared.mkdir(mode=0o777)
        try:
            yield cluster.host
        finally:
            report = request.node.stash.get(CALL_REPORT, None)
            if report is not None and report.failed:
                for host in cluster.hosts:
                    for daemon in host.daemons:
                        print(f"--- {host.name} {daemon.log_path.name} ---\n{daemon.log}")
            cluster.remove_hosts()
            connections[ALIAS].close()


def wait_for(predicate: Callable[[], Any], timeout: float = 60) -> Any:
    """``wait_until`` with a looser poll: these predicates read the database or files."""
    return wait_until(predicate, timeout=timeout, interval=0.1)
