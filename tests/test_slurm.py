"""run_all.sh --slurm on a real single-node Slurm cluster started on this machine (Debian's
slurm-wlm + munge, as root): the stages run as dependent sbatch arrays; a cancelled array task is
completed by re-submitting, which runs only what is missing, so every command runs once and the
cancelled one once more; a stage longer than the cluster's MaxArraySize (20 here) goes as several arrays."""

import re
import subprocess
import time
from pathlib import Path

import pytest
import slurm_cluster
from test_cluster import stub_env, stub_log
from test_grid import ROOT, executions

pytestmark = pytest.mark.slow
MAX_ARRAY_SIZE = 20  # the lab's distillation stage (30 commands) needs two arrays


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
    env = slurm_cluster.start(folder, max_array_size=MAX_ARRAY_SIZE)
    yield env
    slurm_cluster.stop(folder)


def submit(env, out, *extra, preset="demo-tiny", timeout=900):
    return subprocess.run(  # 1G a task: the default (16G) may exceed a small machine's node
        ["bash", str(ROOT / "run_all.sh"), preset, "--slurm", "--out", str(out), "--mem", "1G", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


STAGES = ("pretrain", "teachers", "distill")


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


def test_a_stage_longer_than_max_array_size_runs_every_command_once_before_the_analysis(cluster, tmp_path):
    """The lab's grid with its commands stubbed (each writes one line and ends): the distillation stage's 30
    commands go as two arrays; every command runs once, each stage after every array of the one before, the
    analysis last."""
    env = dict(cluster, **{k: v for k, v in stub_env(tmp_path).items() if k in ("PATH", "PYTHON", "KD_STUB_LOG")})
    r = submit(env, tmp_path / "grid", "--wait", "--max-concurrent", "4", preset="lab", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    manifests = {s: (tmp_path / "grid" / "manifest" / f"{s}.txt").read_text().splitlines() for s in STAGES}
    n = len(manifests["distill"])
    assert n >= MAX_ARRAY_SIZE and f"({n} tasks in 2 arrays: the cluster's MaxArraySize is 20)" in r.stderr, r.stderr
    ran = executions(tmp_path / "grid")  # one log header per execution
    assert len(ran) == sum(map(len, manifests.values())) and set(ran.values()) == {1}, ran
    order = [line[0] for line in stub_log(tmp_path / "stub.log")]
    scripts = ["train_teacher.py"] * (len(manifests["pretrain"]) + len(manifests["teachers"]))
    assert order == scripts + ["distill.py"] * len(manifests["distill"]) + ["analysis.report"], order
