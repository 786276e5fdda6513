"""A throw-away one-node SLURM cluster on loopback, for tests and for trying the slurm profile by hand.

Debian's `slurm-wlm` and `munge` packages provide the daemons (`ensure_installed` apt-installs them when
missing). Nothing outside the cluster's own directory is configured: munged, slurmctld and slurmd run in the
foreground as children of this process, on free loopback ports, with their own munge key and socket, state,
spool, logs and `slurm.conf`; client commands find the cluster through `SLURM_CONF` (see `LocalSlurm.env`).
No systemd, no slurmdbd: accounting is off, so job status must be read with `squeue` (`sacct` answers
"accounting storage is disabled"); finished jobs stay visible to `squeue`/`scontrol` for `MinJobAge` seconds.

The node declares more CPUs and memory than the host has (`SlurmdParameters=config_overrides`) so that jobs
sized for a real cluster are scheduled, and one GPU as a count-only GRES (`AutoDetect=off`, no device file):
a job may ask for `--gpus=1` and is scheduled, though no GPU exists.

Command line (root): `python tests/slurm/localslurm.py start DIR` starts a cluster and prints the
`export SLURM_CONF=...` line to use it; `python tests/slurm/localslurm.py stop DIR` stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "munge", "unmunge")
NODE = "atlasnode"
PARTITION = "atlas"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL"}


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(Path(d) / name) for d in ("/usr/sbin", "/sbin") if (Path(d) / name).exists()), None
    )


def missing_commands() -> list[str]:
    return [name for name in DAEMONS + CLIENTS if _which(name) is None]


def ensure_installed(timeout: float = 600) -> str | None:
    """Install slurm-wlm and munge with apt-get when missing. Returns None when ready, else why not."""
    if not missing_commands():
        return None
    if os.geteuid() != 0:
        return f"SLURM is not installed ({', '.join(missing_commands())} missing) and we are not root"
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and apt-get is not available to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    steps = [
        ["apt-get", *lock, "update", "-qq"],
        ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ]
    deadline = time.monotonic() + timeout
    for step in steps:
        try:
            done = subprocess.run(
                step,
                env=env,
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"`{' '.join(step)}` timed out"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return f"`{' '.join(step)}` failed ({done.returncode}): {' | '.join(tail)}"
    if missing_commands():
        return f"installed {' '.join(PACKAGES)} but {', '.join(missing_commands())} still missing"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def parse_scontrol(text: str) -> list[dict[str, str]]:
    """Records of `scontrol -o show ...` output: one line per record, `Key=Value` pairs."""
    records = []
    for line in text.splitlines():
        record: dict[str, str] = {}
        key = None
        for token in line.split(" "):
            if "=" in token and token.split("=", 1)[0].replace("/", "").replace(":", "").isalnum():
                key, value = token.split("=", 1)
                record[key] = value
            elif key is not None and token:
                record[key] += " " + token  # values with spaces (Command, WorkDir, Reason...)
        if record:
            records.append(record)
    return records


class ClusterError(RuntimeError):
    pass


class LocalSlurm:
    """One controller and one node on 127.0.0.1, everything under `root`."""

    def __init__(
        self,
        root: str | os.PathLike,
        cpus: int = 16,
        memory_mb: int = 64000,
        gpus: int = 1,
        min_job_age: int = 600,
    ):
        self.root = Path(root).resolve()
        self.cpus, self.memory_mb, self.gpus, self.min_job_age = cpus, memory_mb, gpus, min_job_age
        self.conf = self.root / "etc" / "slurm.conf"
        # slurmd fetches its configuration (configless) before it knows any AuthInfo, so munged must answer on
        # the default socket.
        self.munge_socket = Path("/run/munge/munge.socket.2")
        self.processes: dict[str, subprocess.Popen] = {}

    # -- configuration ------------------------------------------------------------------------------
    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment in which SLURM client commands (and Snakemake's slurm executor) use this cluster."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        for name in [key for key in env if key.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if name != "SLURM_CONF":
                del env[name]  # an enclosing allocation must not leak into ours
        return env

    def _write_config(self) -> None:
        for sub in ("etc", "munge", "state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o755)
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld_port, slurmd_port = _free_ports(2)
        self.ctld = f"127.0.0.1:{ctld_port}"
        host = socket.gethostname().split(".")[0]
        r = self.root
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        lines = [
            "# Written by tests/slurm/localslurm.py: a throw-away one-node cluster on loopback.",
            "ClusterName=atlastest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "MailProg=/bin/true",
            # No cgroups in containers: track processes by parent id, no task binding, no accounting daemon.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            # Without a default, a job that names no memory is given the whole node and jobs run one by one.
            "DefMemPerCPU=500",
            # squeue (the status command without slurmdbd) sees finished jobs for MinJobAge seconds.
            f"MinJobAge={self.min_job_age}",
            "ReturnToService=2",
            "KillWait=5",
            "InactiveLimit=0",
            "SlurmdParameters=config_overrides",
            "SlurmctldParameters=enable_configless",
            "GresTypes=gpu",
            f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus}"
            f" RealMemory={self.memory_mb}{gres} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        gres_conf = ["AutoDetect=off"]
        if self.gpus:
            gres_conf.append(f"NodeName={NODE} Name=gpu File=/dev/null Count={self.gpus}")
        (self.conf.parent / "gres.conf").write_text("\n".join(gres_conf) + "\n")

    # -- daemons ------------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 (kept open for the daemon)
        try:
            self.processes[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env() if env is None else env,
                start_new_session=True,  # a Ctrl-C in the test's terminal is the test's to handle
            )
        finally:
            log.close()
        (self.root / "run" / "pids.json").write_text(
            json.dumps({key: proc.pid for key, proc in self.processes.items()})
        )

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}\n{self.logs()}")

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.logs()}")
            time.sleep(0.2)

    def start(self, timeout: float = 60) -> LocalSlurm:
        missing = missing_commands()
        if missing:
            raise ClusterError(f"missing commands: {', '.join(missing)} (see ensure_installed)")
        self._write_config()
        try:
            if self._munge_works():
                pass  # a munged already answers on the default socket (e.g. the system's): share it
            else:
                self.munge_socket.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                self._spawn(
                    "munged",
                    [
                        _which("munged"),
                        "--foreground",
                        "--force",
                        f"--socket={self.munge_socket}",
                        f"--key-file={self.root / 'munge' / 'munge.key'}",
                        f"--pid-file={self.root / 'run' / 'munged.pid'}",
                        f"--log-file={self.root / 'log' / 'munged.log'}",
                        f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                    ],
                )
                self._wait("munged", self._munge_works, timeout)
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])
            self._wait("slurmctld", self._controller_up, timeout)
            # Configless: slurmd fetches the configuration from slurmctld and links /run/slurm/conf to its
            # cache, where srun inside a job finds it (the jobstep executor drops SLURM_CONF for srun).
            env = self.env()
            del env["SLURM_CONF"]
            self._spawn("slurmd", [_which("slurmd"), "-D", "-N", NODE, "--conf-server", self.ctld], env=env)
            self._wait("the node to be idle", lambda: self.node_state() == "idle", timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _controller_up(self) -> bool:
        return self.run("scontrol", "ping", check=False).returncode == 0

    def _munge_works(self) -> bool:
        if not self.munge_socket.exists():
            return False
        try:
            credential = subprocess.run(
                ["munge", "-n", f"--socket={self.munge_socket}"], capture_output=True, timeout=10, check=True
            ).stdout
            subprocess.run(
                ["unmunge", f"--socket={self.munge_socket}"],
                input=credential,
                capture_output=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return True

    def node_state(self) -> str:
        done = self.run("sinfo", "--noheader", "--nodes", NODE, "--format=%T", check=False)
        return done.stdout.strip().rstrip("*~#!%$@^-") if done.returncode == 0 else ""

    def stop(self, timeout: float = 30) -> None:
        """Cancel every job, then stop the daemons this object started (by pid), newest first."""
        if self.processes.get("slurmctld") and self.processes["slurmctld"].poll() is None:
            self.run("scancel", "--full", f"--partition={PARTITION}", check=False)
            deadline = time.monotonic() + timeout / 2
            while time.monotonic() < deadline:
                queue = self.run("squeue", "--noheader", "--states=RUNNING,COMPLETING", check=False)
                if queue.returncode != 0 or not queue.stdout.strip():
                    break
                time.sleep(0.5)
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout / 3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.processes.clear()
        _unlink_conf_link(self.root)
        pids = self.root / "run" / "pids.json"
        if pids.exists():
            pids.unlink()

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- clients ------------------------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run(
            list(argv), env=self.env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise ClusterError(f"`{' '.join(argv)}` failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def submit(self, *sbatch_args: str) -> str:
        """sbatch a job; returns its id."""
        return self.run("sbatch", "--parsable", *sbatch_args).stdout.strip().split(";")[0]

    def wait(self, jobid: str, timeout: float = 60) -> str:
        """Wait until a job has ended; returns its final state (COMPLETED, FAILED, CANCELLED...)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.run("squeue", "-h", "-j", jobid, "--states=all", "-o", "%T", check=False).stdout
            state = state.strip()
            if state in FINAL_STATES:
                return state
            if time.monotonic() > deadline:
                state = state or "unknown"
                raise ClusterError(f"job {jobid} still {state} after {timeout:.0f}s\n{self.logs()}")
            time.sleep(0.3)

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for MinJobAge seconds), as `scontrol` records."""
        done = self.run("scontrol", "--oneliner", "--details", "show", "job", check=False)
        if done.returncode != 0 or "No jobs in the system" in done.stdout:
            return []
        return parse_scontrol(done.stdout)

    def logs(self, lines: int = 30) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts)


def _unlink_conf_link(root: Path) -> None:
    """Remove slurmd's /run/slurm/conf link when it points into this cluster's directory."""
    link = Path("/run/slurm/conf")
    if link.is_symlink() and Path(os.readlink(link)).resolve().is_relative_to(root):
        link.unlink()


def _stop_from_pidfile(root: Path) -> None:
    pids = root / "run" / "pids.json"
    if not pids.exists():
        print(f"no cluster recorded under {root}", file=sys.stderr)
        return
    cluster = LocalSlurm(root)
    cluster.run("scancel", "--full", f"--partition={PARTITION}", check=False)
    for name, pid in reversed(list(json.loads(pids.read_text()).items())):
        try:
            os.kill(pid, signal.SIGTERM)
            print(f"stopped {name} ({pid})")
        except ProcessLookupError:
            pass
    pids.unlink()
    _unlink_conf_link(root.resolve())


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["install", "start", "stop"])
    parser.add_argument("root", nargs="?", default="/tmp/atlas-slurm", help="the cluster's directory")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.action == "install":
        reason = ensure_installed()
        print(reason or "slurm-wlm and munge are installed")
        return 1 if reason else 0
    if args.action == "stop":
        _stop_from_pidfile(root)
        return 0
    reason = ensure_installed()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    cluster = LocalSlurm(root).start()
    # The daemons outlive this command; `stop` ends them by the pids recorded in DIR/run/pids.json.
    cluster.processes.clear()
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
