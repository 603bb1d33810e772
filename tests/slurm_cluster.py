"""A throw-away one-node SLURM cluster on this machine, for tests marked ``slurm``.

``slurm_cluster`` (session-scoped pytest fixture) writes a private
``slurm.conf``/``gres.conf`` into a fresh temporary directory, starts its own
``munged`` (private socket and key), ``slurmctld`` and ``slurmd`` on free
ports, waits until the node is ``idle`` and yields a :class:`SlurmCluster`.
At teardown it cancels the jobs left in its queue and stops exactly the
daemons it started, by the pid files in its temporary directory (never by
name), so several sessions on one machine do not disturb each other.

The fixture skips (never fails) when SLURM cannot be started here: binaries
missing (install them with ``bash .ci/install_slurm.sh``), not root, a daemon
that does not start, or a node that is not ``idle`` within ``NODE_UP_TIMEOUT``
seconds. Set ``PRMF_SLURM_KEEP=1`` to keep the temporary directory (configs and
daemon logs) after the session.

Cluster facts a test can rely on:

* one partition, :data:`PARTITION`, which is the default partition;
* one node declared with at least :data:`MIN_NODE_CPUS` CPUs and
  :data:`MIN_NODE_MEMORY_MB` MB (``SlurmdParameters=config_overrides``; with
  ``task/none`` and ``proctrack/linuxproc`` nothing enforces them) and
  :data:`FAKE_GPUS` fake GPUs (``gres/gpu`` backed by ``/dev/null``-like
  files) so that jobs submitted with ``--gpus=1`` are scheduled and see
  ``CUDA_VISIBLE_DEVICES``; no CUDA device is really there;
* no accounting database: ``sacct`` does not work, use
  ``slurm-status-command: squeue`` (``MinJobAge`` is :data:`MIN_JOB_AGE`
  seconds, so finished jobs stay visible to ``squeue`` that long);
* clients (``sbatch``/``squeue``/... and Snakemake's SLURM plugin) find the
  cluster through ``SLURM_CONF`` and through wrapper scripts first on
  ``PATH`` that set it (the jobstep plugin drops ``SLURM_CONF`` before its
  ``srun``): run them with :attr:`SlurmCluster.env`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

PARTITION = "prmftest"
MIN_JOB_AGE = 3600  # finished jobs stay in squeue this long (tests inspect them)
NODE_UP_TIMEOUT = 20.0
FAKE_GPUS = 2
_FAKE_GPU_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom")
MIN_NODE_CPUS = 8
MIN_NODE_MEMORY_MB = 32768

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun")
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def find_binary(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS + CLIENTS + ("mungekey", "runuser") if not find_binary(name)]


class SlurmStartError(RuntimeError):
    """SLURM could not be brought up here (the fixture turns it into a skip)."""


@dataclasses.dataclass
class SlurmCluster:
    root: Path
    conf: Path
    partition: str
    nodename: str
    cpus: int
    real_memory_mb: int
    gpus: int
    min_job_age: int
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: float = 30):
        """Run a SLURM client command (``sbatch``, ``squeue``...) against this cluster."""
        return subprocess.run(
            list(args),
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def job_ids(self) -> set[str]:
        """Ids of all jobs the controller still knows (any state)."""
        out = self.run("squeue", "--noheader", "--states=all", "--format=%i").stdout
        return {line.strip() for line in out.splitlines() if line.strip()}

    def job_table(self) -> dict[str, dict[str, str]]:
        """``{jobid: {state, name, comment, timelimit, min_memory, tres}}`` from squeue."""
        fmt = "%i|%T|%j|%k|%l|%m|%b"
        out = self.run(
            "squeue", "--noheader", "--states=all", f"--format={fmt}"
        ).stdout
        table = {}
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) != 7:
                continue
            jobid, state, name, comment, limit, mem, tres = (p.strip() for p in parts)
            table[jobid] = {
                "state": state,
                "name": name,
                "comment": comment,
                "timelimit": limit,
                "min_memory": mem,
                "tres": tres,
            }
        return table

    def node_state(self) -> str:
        res = self.run(
            "sinfo", "--noheader", "--Node", f"--partition={self.partition}", "--format=%t",
            check=False,
        )
        return res.stdout.strip() if res.returncode == 0 else f"sinfo failed: {res.stderr.strip()}"

    def cancel_all(self) -> None:
        ids = [
            jid
            for jid, row in self.job_table().items()
            if row["state"] in {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED"}
        ]
        if ids:
            self.run("scancel", *ids, check=False)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of every daemon log, for failure messages."""
        chunks = []
        for log in sorted((self.root / "log").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"--- {log.name} ---\n" + "\n".join(text))
        return "\n".join(chunks)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _available_memory_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 4096


def _read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 1 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _slurm_conf(
    *,
    root: Path,
    nodename: str,
    ctld_port: int,
    slurmd_port: int,
    munge_socket: Path,
    cpus: int,
    memory_mb: int,
    gpus: int,
) -> str:
    gres = f" Gres=gpu:{gpus}" if gpus else ""
    return f"""\
# written by tests/slurm_cluster.py for one test session; throw-away
ClusterName={PARTITION}
SlurmctldHost={nodename}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
MinJobAge={MIN_JOB_AGE}
KillWait=5
GresTypes=gpu
NodeName={nodename} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb}{gres} State=UNKNOWN
PartitionName={PARTITION} Nodes={nodename} Default=YES MaxTime=INFINITE State=UP
"""


def _start_daemon(cmd: list[str], env: dict[str, str], what: str, root: Path) -> None:
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise SlurmStartError(
            f"{what} did not start (exit {res.returncode}): "
            f"{(res.stderr or res.stdout).strip()[-2000:]}"
        )


@contextlib.contextmanager
def start_slurm_cluster(gpus: int = FAKE_GPUS) -> Iterator[SlurmCluster]:
    """Start munged/slurmctld/slurmd in a temp dir; stop them on exit.

    Raises :class:`SlurmStartError` when SLURM cannot be started here.
    """
    if not 0 <= gpus <= len(_FAKE_GPU_DEVICES):
        raise ValueError(f"gpus must be 0..{len(_FAKE_GPU_DEVICES)}")
    missing = missing_binaries()
    if missing:
        raise SlurmStartError(
            f"SLURM/munge binaries not installed ({', '.join(missing)}); "
            "run `bash .ci/install_slurm.sh` as root"
        )
    if os.geteuid() != 0:
        raise SlurmStartError("starting slurmd/munged needs root")

    root = Path(tempfile.mkdtemp(prefix="prmf-slurm-"))
    root.chmod(0o755)  # munged runs as the munge user and must reach its dir
    pidfiles: list[Path] = []
    cluster: SlurmCluster | None = None
    try:
        for sub in ("state", "spool", "run", "log"):
            (root / sub).mkdir()
        nodename = socket.gethostname().split(".")[0]
        cpus = max(os.cpu_count() or 1, MIN_NODE_CPUS)
        memory_mb = max(_available_memory_mb() - 512, MIN_NODE_MEMORY_MB)

        # --- munge: private key, socket, pid and log, run as the munge user
        munge_dir = root / "munge"
        munge_dir.mkdir()
        munge_dir.chmod(0o711)  # munged: "execute permissions for all required"
        key = munge_dir / "munge.key"
        res = subprocess.run(
            [find_binary("mungekey"), "--create", f"--keyfile={key}"],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise SlurmStartError(f"mungekey failed: {res.stderr.strip()}")
        try:
            for path in (munge_dir, key):
                shutil.chown(path, "munge", "munge")
        except (LookupError, PermissionError) as err:
            raise SlurmStartError(f"cannot hand the munge dir to user munge: {err}") from err
        munge_socket = munge_dir / "munge.socket"
        # munged writes its pid file as the munge user, so it lives in munge_dir
        munge_pid = munge_dir / "munged.pid"
        pidfiles.append(munge_pid)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_"))}
        _start_daemon(
            [
                find_binary("runuser"),
                "-u",
                "munge",
                "--",
                find_binary("munged"),
                f"--socket={munge_socket}",
                f"--key-file={key}",
                f"--pid-file={munge_pid}",
                f"--log-file={munge_dir / 'munged.log'}",
                f"--seed-file={munge_dir / 'munged.seed'}",
            ],
            base_env,
            "munged",
            root,
        )

        # --- slurm config
        conf = root / "slurm.conf"
        conf.write_text(
            _slurm_conf(
                root=root,
                nodename=nodename,
                ctld_port=_free_port(),
                slurmd_port=_free_port(),
                munge_socket=munge_socket,
                cpus=cpus,
                memory_mb=memory_mb,
                gpus=gpus,
            )
        )
        if gpus:
            # gres/gpu needs one device file per GPU (Count= alone is reported
            # as 0 GPUs and the node goes INVAL); any char device will do.
            files = ",".join(_FAKE_GPU_DEVICES[:gpus])
            (root / "gres.conf").write_text(
                f"AutoDetect=off\nNodeName={nodename} Name=gpu File={files}\n"
            )
        # Client shims: snakemake-executor-plugin-slurm-jobstep strips every
        # SLURM_* variable (SLURM_CONF too) before it calls `srun` inside the
        # job, so clients there would look for /etc/slurm/slurm.conf. Rather
        # than writing a system-wide config, put wrappers that pin SLURM_CONF
        # first on PATH (PATH is exported into the jobs).
        shim_dir = root / "bin"
        shim_dir.mkdir()
        for client in CLIENTS + ("sacct", "sstat", "salloc"):
            real = find_binary(client)
            if real:
                shim = shim_dir / client
                shim.write_text(
                    f'#!/bin/sh\nSLURM_CONF="{conf}" exec "{real}" "$@"\n'
                )
                shim.chmod(0o755)
        env = dict(
            base_env,
            SLURM_CONF=str(conf),
            PATH=f"{shim_dir}{os.pathsep}{base_env.get('PATH', os.defpath)}",
        )
        cluster = SlurmCluster(
            root=root,
            conf=conf,
            partition=PARTITION,
            nodename=nodename,
            cpus=cpus,
            real_memory_mb=memory_mb,
            gpus=gpus,
            min_job_age=MIN_JOB_AGE,
            env=env,
        )

        pidfiles.append(root / "run" / "slurmctld.pid")
        _start_daemon([find_binary("slurmctld"), "-f", str(conf), "-i"], env, "slurmctld", root)
        pidfiles.append(root / "run" / "slurmd.pid")
        _start_daemon([find_binary("slurmd"), "-f", str(conf), "-N", nodename], env, "slurmd", root)

        deadline = time.monotonic() + NODE_UP_TIMEOUT
        state = ""
        while time.monotonic() < deadline:
            state = cluster.node_state()
            if state == "idle":
                break
            time.sleep(0.3)
        else:
            raise SlurmStartError(
                f"node {nodename} not idle within {NODE_UP_TIMEOUT:.0f}s "
                f"(state: {state!r})\n{cluster.log_tail()}"
            )
        yield cluster
    finally:
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.cancel_all()
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and any(
                    row["state"] not in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                         "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                                         "DEADLINE", "PREEMPTED"}
                    for row in cluster.job_table().values()
                ):
                    time.sleep(0.3)
        # stop in reverse start order: slurmd, slurmctld, munged
        for pidfile in reversed(pidfiles):
            pid = _read_pid(pidfile)
            if pid is not None:
                _stop_pid(pid)
        if os.environ.get("PRMF_SLURM_KEEP"):
            print(f"\nslurm_cluster: kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running one-node SLURM cluster for this test session (or a skip)."""
    started = time.monotonic()
    try:
        ctx = start_slurm_cluster()
        cluster = ctx.__enter__()
    except SlurmStartError as err:
        pytest.skip(f"SLURM not available: {err}")
    print(f"\nslurm_cluster: up in {time.monotonic() - started:.1f}s at {cluster.root}")
    try:
        yield cluster
    finally:
        ctx.__exit__(None, None, None)
