"""A real one-node SLURM cluster on loopback, with accounting, for tests.

Everything lives in one private directory under /tmp: a MUNGE daemon with its own key and socket,
a MariaDB instance, ``slurmdbd``, ``slurmctld`` and ``slurmd``, all on free loopback ports, so the
cluster never touches /etc/slurm, /etc/munge or the system's munged and several can coexist.

Why slurmdbd + MariaDB: submitit polls job state with ``sacct`` only (SlurmInfoWatcher). With
``AccountingStorageType=accounting_storage/none`` sacct errors out, submitit logs "Bypassing sacct
error" and every job stays UNKNOWN: ``job.result()`` still returns when the job wrote its result
pickle, but a job that dies without one (scancel, OOM, node failure) hangs its waiter forever.
Slurm 22.05 has no file-based accounting any more (``accounting_storage/filetxt`` is gone and sacct
has lost ``--completion``), so real accounting means slurmdbd, which needs MySQL/MariaDB. Both are
Debian packages (``slurmdbd mariadb-server``); the private MariaDB is initialised and started with
the cluster, once per test session.

The configuration files and the binaries: :mod:`tests.harness.services.slurm_conf`.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.services import (
    ServiceUnavailable,
    die_with_parent,
    port_open,
    stop_process,
    tail,
    wait_for,
)
from tests.harness.services.slurm_conf import (
    DB_NAME,
    DB_PASS,
    DB_USER,
    Ports,
    detect_node,
    required_binaries,
    slurm_conf_text,
    slurmdbd_conf_text,
)

FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)


@dataclass
class SlurmCluster:
    """A running test cluster. ``env`` carries SLURM_CONF for subprocesses (sbatch, submitit, ...)."""

    root: Path
    conf_path: Path
    bins: dict[str, str]
    ports: Ports = field(default_factory=Ports.pick)
    daemons: dict[str, subprocess.Popen] = field(default_factory=dict)
    startup_s: float = 0.0

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf_path)}

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def run(self, *args: str, timeout: float = 60, check: bool = True, **kw) -> subprocess.CompletedProcess:
        """Run a SLURM client command (``scontrol``, ``sinfo``, ...) against this cluster."""
        cmd = [self.bins.get(args[0], args[0]), *args[1:]]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def sbatch(self, script: str, *options: str, cwd: Path | str | None = None) -> str:
        """Submit a batch script given as text (``#!/bin/bash`` added if missing); return the job id."""
        if not script.startswith("#!"):
            script = "#!/bin/bash\n" + script
        out = self.run("sbatch", "--parsable", *options, input=script, cwd=cwd or self.root).stdout
        return out.strip().split(";")[0]

    def state(self, job_id: str) -> str:
        """Job state (``PENDING``, ``RUNNING``, ``COMPLETED``, ...) from scontrol, else from sacct."""
        proc = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        match = re.search(r"\bJobState=(\S+)", proc.stdout)
        if match:
            return match.group(1)
        proc = self.run("sacct", "-n", "-X", "-P", "-o", "State", "-j", str(job_id), check=False)
        lines = proc.stdout.split()
        return lines[0] if lines else "UNKNOWN"

    def wait(self, job_id: str, timeout: float = 120, poll: float = 0.5) -> str:
        """Block until the job reaches a final state and return it; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(job_id)
            if state in FINAL_STATES:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {state} after {timeout:.0f} s\n{self.logs()}")
            time.sleep(poll)

    def requeue(self, job_id: str) -> None:
        """``scontrol requeue``: the job is killed and runs again from the start (about 11 s later)."""
        self.run("scontrol", "requeue", str(job_id))

    def cancel_all(self, timeout: float = 15) -> None:
        """scancel every job in the queue and wait until the queue is empty."""
        ids = self.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
        if not ids:
            return
        self.run("scancel", *ids, check=False)
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", "-o", "%i", check=False).stdout.split() and time.monotonic() < deadline:
            time.sleep(0.5)

    def logs(self, lines: int = 20) -> str:
        """The tails of every daemon log, for error messages; daemons that exited come first."""
        dead = {name for name, proc in self.daemons.items() if proc.poll() is not None}
        files = sorted([*self.log_dir.glob("*.log"), *self.log_dir.glob("*.out")],
                       key=lambda p: (p.stem not in dead, p.name))
        return "\n".join(f"--- {p.name} ---\n{tail(p, lines)}" for p in files if p.stat().st_size)


def _spawn(cluster: SlurmCluster, name: str, cmd: Sequence[str]) -> subprocess.Popen:
    """Start one foreground daemon with its output in ``log/<name>.out``."""
    out = (cluster.log_dir / f"{name}.out").open("ab")
    proc = subprocess.Popen(
        list(cmd), env=cluster.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        cwd=cluster.root, preexec_fn=die_with_parent,
    )
    out.close()
    cluster.daemons[name] = proc
    return proc


def _dead_daemon(cluster: SlurmCluster) -> str | None:
    """A message naming the first daemon that exited, if any."""
    for name, proc in cluster.daemons.items():
        if proc.poll() is not None:
            return f"{name} exited with {proc.returncode}"
    return None


def _start_munge(cluster: SlurmCluster) -> None:
    # munged demands a private key (0400 in a 0700 dir) and a socket dir everyone can traverse.
    key_dir, run_dir = cluster.root / "munge", cluster.root / "munge-run"
    key_dir.mkdir(mode=0o700)
    run_dir.mkdir(mode=0o755)
    key = key_dir / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    sock = run_dir / "munge.socket"
    _spawn(cluster, "munged", [
        cluster.bins["munged"], "--foreground", f"--socket={sock}", f"--key-file={key}",
        f"--pid-file={run_dir / 'munged.pid'}", f"--seed-file={key_dir / 'seed'}",
        f"--log-file={cluster.log_dir / 'munged.log'}",
    ])

    def ready() -> bool:
        probe = subprocess.run([cluster.bins["munge"], "-n", "-S", str(sock)], capture_output=True)
        return probe.returncode == 0

    wait_for(ready, 20, "munged", lambda: _dead_daemon(cluster))


def _start_mysql(cluster: SlurmCluster) -> None:
    # A throw-away MariaDB for slurmdbd: no system config (--no-defaults), small InnoDB files,
    # TCP on a loopback port plus a private unix socket used once to create the slurm user.
    data, sock = cluster.root / "mysql", cluster.root / "run" / "mysql.sock"
    innodb = ["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M", "--innodb-lock-wait-timeout=900"]
    install = subprocess.run(
        [cluster.bins["install_db"], "--no-defaults", "--user=root", f"--datadir={data}",
         "--auth-root-authentication-method=normal", "--skip-test-db", *innodb],
        capture_output=True, text=True, timeout=120,
    )
    if install.returncode != 0:
        raise ServiceUnavailable(f"mariadb-install-db failed:\n{install.stdout}\n{install.stderr}")
    _spawn(cluster, "mysqld", [
        cluster.bins["mysqld"], "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}",
        f"--port={cluster.ports.mysql}", "--bind-address=127.0.0.1", "--skip-log-bin", "--skip-name-resolve",
        f"--pid-file={cluster.root / 'run' / 'mysqld.pid'}", f"--log-error={cluster.log_dir / 'mysqld.log'}",
        *innodb,
    ])
    wait_for(lambda: sock.exists() and port_open(cluster.ports.mysql), 60, "mariadb",
             lambda: _dead_daemon(cluster))
    sql = (f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASS}'; "
           f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';")
    grant = subprocess.run([cluster.bins["mysql"], "--no-defaults", "-S", str(sock), "-u", "root", "-e", sql],
                           capture_output=True, text=True, timeout=60)
    if grant.returncode != 0:
        raise ServiceUnavailable(f"creating the slurm database user failed: {grant.stderr}")


def _node_state(cluster: SlurmCluster) -> str:
    proc = cluster.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=15)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def create_cluster(root: Path) -> SlurmCluster:
    """Write slurm.conf and slurmdbd.conf under ``root``; nothing is started yet."""
    if os.geteuid() != 0:
        raise ServiceUnavailable("the SLURM test cluster runs its daemons as root; not root here")
    cluster = SlurmCluster(root=root, conf_path=root / "etc" / "slurm.conf", bins=required_binaries())
    for sub in ("etc", "state", "spool", "log", "run"):
        (root / sub).mkdir(mode=0o755, exist_ok=True)
    cluster.conf_path.write_text(slurm_conf_text(root, cluster.ports, detect_node()))
    dbd_conf = cluster.conf_path.with_name("slurmdbd.conf")
    dbd_conf.write_text(slurmdbd_conf_text(root, cluster.ports))
    dbd_conf.chmod(0o600)  # slurmdbd refuses a config others can read (it holds the DB password)
    return cluster


def start_cluster(cluster: SlurmCluster, timeout: float = 60) -> None:
    """Start munged, MariaDB, slurmdbd, slurmctld and slurmd; return once the node is idle.

    Raises ServiceUnavailable with the daemon log tails; the caller stops whatever did start
    with :func:`stop_cluster` either way.
    """
    t0 = time.monotonic()
    bins = cluster.bins
    try:
        _start_munge(cluster)
        _start_mysql(cluster)
        _spawn(cluster, "slurmdbd", [bins["slurmdbd"], "-D"])
        wait_for(lambda: port_open(cluster.ports.slurmdbd), 30, "slurmdbd", lambda: _dead_daemon(cluster))
        _spawn(cluster, "slurmctld", [bins["slurmctld"], "-D", "-f", str(cluster.conf_path)])
        wait_for(lambda: port_open(cluster.ports.slurmctld), 30, "slurmctld", lambda: _dead_daemon(cluster))
        _spawn(cluster, "slurmd", [bins["slurmd"], "-D", "-f", str(cluster.conf_path), "-N", "localhost"])
        remaining = max(5.0, timeout - (time.monotonic() - t0))
        wait_for(lambda: _node_state(cluster) == "idle", remaining, "slurm node 'localhost' idle",
                 lambda: _dead_daemon(cluster), interval=0.5)
    except (ServiceUnavailable, OSError, subprocess.SubprocessError) as exc:
        raise ServiceUnavailable(f"SLURM test cluster did not start: {exc}\n{cluster.logs()}") from exc
    finally:
        cluster.startup_s = time.monotonic() - t0


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel remaining jobs, then stop the daemons in reverse start order."""
    ctld = cluster.daemons.get("slurmctld")
    if ctld is not None and ctld.poll() is None:
        with suppress(OSError, subprocess.SubprocessError, RuntimeError):
            cluster.cancel_all()
    for name in reversed(list(cluster.daemons)):
        stop_process(cluster.daemons[name], timeout=15)


@contextmanager
def running_cluster(timeout: float = 60, keep: bool = False, attempts: int = 2) -> Iterator[SlurmCluster]:
    """A started cluster in a fresh /tmp directory (0755: munged checks its socket path's modes).

    A failed start is retried once with new ports (another process may have taken one). The
    daemons are stopped and the directory removed on exit (``keep=True`` keeps the directory).
    """
    for attempt in range(1, attempts + 1):
        root = Path(tempfile.mkdtemp(prefix="dnrt-slurm-", dir="/tmp"))
        root.chmod(0o755)
        cluster: SlurmCluster | None = None
        try:
            cluster = create_cluster(root)
            start_cluster(cluster, timeout=timeout)
        except ServiceUnavailable:
            if cluster is not None:
                stop_cluster(cluster)
            shutil.rmtree(root, ignore_errors=True)
            if cluster is None or attempt == attempts:
                raise
            continue
        try:
            yield cluster
        finally:
            stop_cluster(cluster)
            if not keep:
                shutil.rmtree(root, ignore_errors=True)
        return
