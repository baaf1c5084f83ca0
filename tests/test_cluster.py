"""run_all.sh on machines it cannot have in a test, with stubs placed first on PATH: the local pool's GPUs (a stub
nvidia-smi) and Slurm's arrays and resources (a stub sbatch and scontrol). The grid's commands are replaced by a
stub interpreter (PYTHON=stub) that only writes one line per command: its script, worker slot and visible GPUs.
tests/test_slurm.py runs the same split on a real Slurm."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ("pretrain", "teachers", "distill")


def write_exe(path, text):
    path.write_text(text)
    path.chmod(0o755)
    return path


def stub_python(folder):
    """An interpreter for run_all.sh (PYTHON=...): grid.py runs for real, every other command appends
    '<script or -m module> <slot> <CUDA_VISIBLE_DEVICES, unset or empty> <hash of its arguments>' to $KD_STUB_LOG."""
    return write_exe(
        Path(folder) / "python-stub",
        f"""#!/usr/bin/env bash
[[ "$1" == grid.py ]] && exec '{sys.executable}' "$@"
sleep "${{KD_STUB_SLEEP:-0}}"
script=$1 gpus=${{CUDA_VISIBLE_DEVICES-unset}}
[[ $1 == -m ]] && script=$2
echo "$script ${{KD_SLOT:--}} ${{gpus:-empty}} $(echo "$*" | sha1sum | cut -c1-12)" >>"$KD_STUB_LOG"
""",
    )


def stub_log(path):
    """The stub's lines as (script, slot, CUDA_VISIBLE_DEVICES, hash) tuples, in the order they were written."""
    return [tuple(line.split()) for line in Path(path).read_text().splitlines()] if Path(path).exists() else []


def stub_env(tmp_path, **extra):
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env.update(PATH=f"{bin_}:{env['PATH']}", PYTHON=str(stub_python(tmp_path)), KD_STUB_LOG=str(tmp_path / "stub.log"))
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def run_all(env, *args):
    return subprocess.run(
        ["bash", str(ROOT / "run_all.sh"), *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def stub_nvidia_smi(tmp_path, gpus):
    lines = "".join(f"echo 'GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:04d})'\n" for i in range(gpus))
    write_exe(
        tmp_path / "bin" / "nvidia-smi", "#!/usr/bin/env bash\n" + (lines or "echo 'No devices were found'; exit 6\n")
    )


@pytest.mark.parametrize(
    "gpus, visible, jobs, expected",
    [
        (2, None, None, ["0", "1"]),  # one worker per GPU
        (4, None, "2", ["0", "1", "2", "3"]),  # --jobs: worker i on GPU i (the old pool put all on cuda:0)
        (4, "5,7", "3", ["5", "7"]),  # CUDA_VISIBLE_DEVICES shorter than nvidia-smi -L, fewer GPUs than workers
        (0, None, "2", []),  # no GPU: the CPU, said once
        (4, "", "2", []),  # every GPU hidden: the CPU
    ],
)
def test_the_local_pool_gives_each_worker_its_own_gpu(tmp_path, gpus, visible, jobs, expected):
    """Each command sees exactly one GPU, its worker slot's (round-robin over the list when the workers outnumber
    the GPUs, with a note); never an empty list, never a silent fall back to the CPU."""
    (tmp_path / "bin").mkdir()
    stub_nvidia_smi(tmp_path, gpus)
    env = stub_env(tmp_path, KD_STUB_SLEEP="0.1")
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    r = run_all(env, "demo-tiny", "--out", tmp_path / "grid", *(["--jobs", jobs] if jobs else []))
    assert r.returncode == 0, r.stderr[-3000:]
    ran = [line for line in stub_log(tmp_path / "stub.log") if line[0] != "analysis.report"]
    n_cmds = sum(len((tmp_path / "grid" / "manifest" / f"{s}.txt").read_text().splitlines()) for s in MANIFESTS)
    assert len(ran) == n_cmds and len({line[3] for line in ran}) == n_cmds  # every command once
    workers = int(jobs or gpus)
    assert re.search(rf"commands to run, {workers} worker\(s\)", r.stderr), r.stderr
    if expected:
        assert all(gpu == expected[int(slot) % len(expected)] for _, slot, gpu, _ in ran), ran
        assert len({slot for _, slot, _, _ in ran}) > 1  # the pool did run workers side by side
        assert ("share them round-robin" in r.stderr) == (workers > len(expected)), r.stderr
        assert "on the CPU" not in r.stderr
    else:
        assert all(gpu == ("unset" if visible is None else "empty") for _, _, gpu, _ in ran), ran
        assert r.stderr.count("no GPU") == 1, r.stderr


def stub_slurm(tmp_path, max_array_size):
    """sbatch that records its arguments (one line each, NUL-separated) and answers job ids 100, 101, ...;
    scontrol that reports MaxArraySize; squeue that lists nothing (every job finished)."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    write_exe(
        bin_ / "sbatch",
        f"""#!/usr/bin/env bash
n=$(( $(cat '{tmp_path}/sbatch.log' 2>/dev/null | wc -l) + 100 ))
printf '%s\\0' "$@" >>'{tmp_path}/sbatch.log'; echo >>'{tmp_path}/sbatch.log'
echo "$n"
""",
    )
    config = "" if max_array_size is None else f"echo 'MaxArraySize            = {max_array_size}'"
    write_exe(bin_ / "scontrol", f"#!/usr/bin/env bash\necho 'MaxJobCount             = 10000'\n{config}\n")
    write_exe(bin_ / "squeue", "#!/usr/bin/env bash\n")


def submissions(tmp_path):
    """Each sbatch call: (job id, {option: value}) in order."""
    calls = []
    for i, line in enumerate((tmp_path / "sbatch.log").read_text().splitlines()):
        args, opts = [a for a in line.split("\0") if a], {}
        for a, after in zip(args, args[1:] + [""]):
            if a.startswith("--"):  # --key=value, or --key value (--wrap), or a switch
                key, _, value = a[2:].partition("=")
                opts[key] = value or ("" if after.startswith("--") else after)
        calls.append((str(100 + i), opts))
    return calls


def test_a_stage_over_max_array_size_goes_as_several_arrays_each_stage_after_all_of_the_last(tmp_path):
    """The lab's distillation stage at MaxArraySize 20 (indices 1..19): two arrays, every pending line in exactly one,
    the --max-concurrent cap shared; the analysis depends on both; resources from the stage's --workers."""
    stub_slurm(tmp_path, 20)
    env = stub_env(tmp_path)
    r = run_all(env, "lab", "--slurm", "--out", tmp_path / "grid", "--extra", "--workers 3", "--max-concurrent", "9")
    assert r.returncode == 0, r.stderr
    manifest = tmp_path / "grid" / "manifest"
    n = len((manifest / "distill.txt").read_text().splitlines())
    assert 19 < n <= 2 * 19, n  # the lab's stage needs two arrays here
    calls = submissions(tmp_path)
    by_stage = {}
    for job, opts in calls:
        by_stage.setdefault(opts["job-name"].removeprefix("kd-"), []).append((job, opts))
    assert [len(by_stage[s]) for s in ("pretrain", "teachers", "distill", "analysis")] == [1, 1, 2, 1]
    (first, _), (second, _) = by_stage["distill"]
    assert f"submitted distill: jobs {first} {second} ({n} tasks in 2 arrays: the cluster's MaxArraySize is 20)" in (
        r.stderr
    )
    arrays = [opts["array"] for _, opts in by_stage["distill"]]
    assert arrays == [f"1-{(n + 1) // 2}%5", f"1-{n // 2}%4"]  # lines dealt in turn; 9 running at most in all
    lines = [manifest / f"distill.pending.{a}" for a in (1, 2)]
    dealt = sorted(int(k) for f in lines for k in f.read_text().split())
    assert dealt == list(range(1, n + 1))  # every command in one array, once
    assert all(str(f) in opts["wrap"] for f, (_, opts) in zip(lines, by_stage["distill"]))
    teachers = by_stage["teachers"][0][0]
    assert all(opts["dependency"] == f"afterany:{teachers}" for _, opts in by_stage["distill"])
    assert by_stage["analysis"][0][1]["dependency"] == f"afterany:{first}:{second}"
    for stage in ("pretrain", "teachers", "distill"):  # --workers 3: 4 CPUs a task; memory's default
        assert all(o["cpus-per-task"] == "4" and o["mem"] == "16G" for _, o in by_stage[stage]), by_stage[stage]


def test_slurm_defaults_and_overrides_of_cpus_and_memory(tmp_path):
    """Without --workers a task asks for 1 CPU; --cpus and --mem override; a cluster that does not say its
    MaxArraySize gets Slurm's default (1001): one array per stage (bad values: test_bad_input.py)."""
    stub_slurm(tmp_path, None)
    env = stub_env(tmp_path)
    r = run_all(env, "demo-tiny", "--slurm", "--out", tmp_path / "a")
    assert r.returncode == 0, r.stderr
    tasks = [o for _, o in submissions(tmp_path) if o["job-name"] != "kd-analysis"]
    assert len(tasks) == 3 and all(o["cpus-per-task"] == "1" and o["mem"] == "16G" for o in tasks)
    (tmp_path / "sbatch.log").unlink()
    r = run_all(env, "demo-tiny", "--slurm", "--out", tmp_path / "b", "--cpus", "6", "--mem", "40G")
    assert r.returncode == 0, r.stderr
    tasks = [o for _, o in submissions(tmp_path) if o["job-name"] != "kd-analysis"]
    assert all(o["cpus-per-task"] == "6" and o["mem"] == "40G" for o in tasks)
