"""A real single-node Slurm cluster on this machine, for the grid's tests (root, Debian).

install() puts Debian's slurm-wlm and munge on the machine if they are missing; start() writes a
slurm.conf for localhost in a temp folder and starts munged, slurmctld and slurmd; stop() ends them.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def can_try():
    """(ok, why not): Slurm can only be installed and run here as root with apt-get."""
    if os.geteuid() != 0:
        return False, "not root: cannot install or run slurmctld/slurmd"
    if not shutil.which("sbatch") and not shutil.which("apt-get"):
        return False, "neither sbatch nor apt-get is available"
    return True, ""


def install():
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"], check=True, env=env, capture_output=True, timeout=900
    )


def _start_munge():
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(os.urandom(1024))
    for d in ("/etc/munge", "/run/munge", "/var/log/munge", "/var/lib/munge"):
        Path(d).mkdir(parents=True, exist_ok=True)
        shutil.chown(d, "munge", "munge")
    shutil.chown(key, "munge", "munge")
    key.chmod(0o400)
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
        subprocess.run(["munged", "--force"], check=True, capture_output=True)


def start(folder, max_array_size=1001):
    """Start a one-node cluster whose state lives in `folder` (arrays of indices below `max_array_size`); returns
    the environment to use it."""
    folder = Path(folder)
    for d in ("state", "spool", "log"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    _start_munge()
    host = socket.gethostname().split(".")[0]
    mem = int(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 * 0.8)
    conf = folder / "slurm.conf"
    conf.write_text(f"""ClusterName=kdtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6917
SlurmdPort=6918
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=defer_batch=0
MinJobAge=600
MaxArraySize={max_array_size}
NodeName={host} CPUs={os.cpu_count()} RealMemory={mem} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    env = dict(os.environ, SLURM_CONF=str(conf))
    subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, capture_output=True)
    subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, capture_output=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
        if "idle" in out or "mix" in out:
            return env
        time.sleep(1)
    raise RuntimeError(f"slurm node did not become idle: {out!r}; see {folder}/log")


def stop(folder):
    for pidfile in ("slurmd.pid", "slurmctld.pid"):
        f = Path(folder) / pidfile
        if f.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(f.read_text().strip()), 15)
    time.sleep(1)
