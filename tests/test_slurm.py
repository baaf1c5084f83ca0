"""run_all.sh --slurm on a real single-node Slurm cluster started on this machine (Debian's
slurm-wlm + munge, as root): the stages run as dependent sbatch arrays; a cancelled array task is
completed by re-submitting, which runs only what is missing, so every command runs once and the
cancelled one once more."""

import re
import subprocess
import time
from pathlib import Path

import pytest
import slurm_cluster
from test_grid import ROOT, executions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ok, why = slurm_cluster.can_try()
    if not ok:
        pytest.skip(f"no Slurm test here: {why}")
    try:
        slurm_cluster.install()
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"no Slurm test here: cannot install slurm-wlm/munge ({e})")
    folder = tmp_path_factory.mktemp("slurm")
    env = slurm_cluster.start(folder)
    yield env
    slurm_cluster.stop(folder)


def submit(env, out, *extra, timeout=900):
    return subprocess.run(
        ["bash", str(ROOT / "run_all.sh"), "demo-tiny", "--slurm", "--out", str(out), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def queue(env):
    return subprocess.run(["squeue", "-h", "-o", "%i %j %T"], env=env, capture_output=True, text=True).stdout.split(
        "\n"
    )


def test_grid_through_sbatch_arrays_and_a_cancelled_task_completed_by_resubmission(cluster, tmp_path):
    """The pretraining and the teachers (two dependent arrays; the distillation stage behaves alike and is the
    local tests' business): one running teacher task is cancelled, the re-submission runs only it."""
    stages = ("pretrain", "teachers")
    r = submit(cluster, tmp_path, "--max-concurrent", "2", "--stop-after", "teachers")
    assert r.returncode == 0, r.stderr
    job = re.search(r"submitted teachers: job (\d+)", r.stderr).group(1)
    deadline = time.time() + 600
    while time.time() < deadline:  # wait until the teachers' array runs, then cancel one of its tasks
        running = [ln.split()[0] for ln in queue(cluster) if ln.startswith(f"{job}_") and "RUNNING" in ln]
        # a task cancelled while slurmd is still launching it can run to the end anyway (seen here once): cancel
        # only once every running task's command has started, i.e. has written its log's header
        if running and len(list((tmp_path / "logs" / "teachers").glob("*.log"))) >= len(running):
            subprocess.run(["scancel", running[0]], env=cluster, check=True)
            break
        time.sleep(0.5)
    else:
        pytest.fail("the teachers' array never started")
    while any(ln.strip() for ln in queue(cluster)):
        time.sleep(1)
    before = executions(tmp_path)
    outputs = [Path(cmd.split(" --out ")[1].split()[0]) for cmd in (tmp_path / "manifest" / "teachers.txt").open()]
    assert sum(p.is_file() for p in outputs) == len(outputs) - 1  # the cancelled task's checkpoint is missing
    r = submit(cluster, tmp_path, "--wait", "--stop-after", "teachers")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "submitted teachers" in r.stderr and "(1 tasks)" in r.stderr  # only the cancelled command again
    assert "submitted pretrain" not in r.stderr and all(p.is_file() for p in outputs)
    after = executions(tmp_path)
    rerun = [k for k in after if after[k] != before.get(k, 0)]
    n_cmds = sum(len((tmp_path / "manifest" / f"{s}.txt").read_text().splitlines()) for s in stages)
    assert len(after) == n_cmds and len(rerun) == 1 and after[rerun[0]] == before.get(rerun[0], 0) + 1
    assert all(v == 1 for k, v in after.items() if k not in rerun)  # every other command ran exactly once
