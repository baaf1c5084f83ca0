"""run_all.sh and grid.py: the grid's arithmetic, the local pool end to end on the built-in data
(two concurrent invocations, an idempotent re-run, kills at random moments) and failures."""

import csv
import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

import grid
import kd
from helpers import ROOT, run_script

# demo-tiny's runs: (T 1, 4 + labels only) x 2 optimizers x 2 budgets, 1 control at T 4,
# 2 other teachers (long, scratch) x 2 T, novel classes (2 T + labels only)
DEMO_TINY_RUNS = 3 * 2 * 2 + 1 + 2 * 2 + 2
MANIFESTS = ("pretrain", "teachers", "distill")  # the stages, one manifest of commands each


def run_all(*args, **kw):
    return run_script("run_all.sh", *args, **kw)


def run_ids(out):
    return sorted(p.parent.name for p in Path(out).glob("runs/*/result.json"))


def executions(out):
    """How many times each command ran: one header line per execution in its (appended) log."""
    return {
        p.name: p.read_text().count("\n== ") + p.read_text().startswith("== ") for p in Path(out).glob("logs/*/*.log")
    }


def test_paper_grid_arithmetic():
    """Run counts are the products of docs/STUDY.md §4's factors (3 seeds, 9 temperatures)."""
    g = grid.build("paper", "python", "out", "data", [])
    runs = {part: sum(cmds.values()) for part, cmds in g.parts.items()}
    # 2 teachers x 2 students x 2 datasets x 2 optimizers x 2 batch sizes x 5 budgets x 9 T x 3 seeds
    assert runs["training configuration (Figs. 2-3)"] == 2 * 2 * 2 * 2 * 2 * 5 * 9 * 3 == 4320
    # kd + 7 methods at 9 T each, except CTKD which learns T (one run)
    assert runs["methods (Fig. 1)"] == 2 * 2 * 2 * (7 * 9 + 1) * 3
    assert runs["controls (Fig. 5)"] == 2 * 2 * 2 * 5 * 9 * 3
    # 4 teachers x 4 fine-tuning durations + 3 CNN teachers from scratch
    assert runs["teacher origination (Table 1)"] == (4 * 4 + 3) * 2 * 2 * 9 * 3
    assert runs["student initialization (Table 2)"] == 2 * 4 * 4 * 2 * 9 * 3
    assert runs["granularity: Cars, Tiny ImageNet (Fig. 6)"] == 4320
    # the whole paper: shared runs (e.g. KD at the baseline config) are counted once
    assert sum(g.stages["distill"].values()) < sum(runs.values())
    assert all(cmd.count(" --T ") == 1 for cmd in g.stages["distill"])  # sweeps are lockstep commands


def test_lab_grid_shape():
    """The lab decides the central findings: 3 seeds, each with its own teachers, 5 temperatures from 1 to 40, 2
    budgets for both optimizers with a labels-only student; a second replicate adds 3 seeds; lab-full the rest."""
    g = grid.build("lab", "python", "out", "data", [])
    runs = {part: sum(cmds.values()) for part, cmds in g.parts.items() if part != "teachers"}
    assert runs["training configuration (Figs. 2-3)"] == 6 * 2 * 2 * 3  # (5 T + labels) x 2 opts x 2 budgets x 3
    assert runs["controls (Fig. 5)"] == 3 * 1 * 3  # smooth-global, smooth-instance, bottom-1 at T = 40
    assert runs["teacher origination (Table 1)"] == 2 * 5 * 3  # long fine-tuned and from-scratch teachers
    assert runs["overlapping vs novel classes (Fig. 7)"] == 5 * 3
    assert grid.LAB["seeds"] == [0, 1, 2] and grid.LAB["T"] == [1, 2, 4, 8, 40]
    distill = list(g.stages["distill"])
    assert len(distill) == 30 and all(" --amp " in c for c in distill)
    assert sum(" --baseline " in c for c in distill) == 2 * 2 * 3  # one labels-only student per config setting
    trained = {c.split(" --out ")[1].split()[0] for stage in ("pretrain", "teachers") for c in g.stages[stage]}
    assert {c.split(" --teacher ")[1].split()[0] for c in distill} <= trained  # every teacher is trained first
    for seed in (0, 1, 2):  # each seed distils from teachers trained with that seed
        teachers = {c.split(" --teacher ")[1].split()[0] for c in distill if f" --seed {seed} " in c}
        assert teachers and all(t.endswith(f"-t{seed}.pt") for t in teachers)
    assert sum(" --seed " in c for c in g.stages["pretrain"]) == 3  # scratch teachers; one shared pretraining
    two = grid.build("lab", "python", "out", "data", [], replicates=2)
    assert set(g.stages["distill"]) < set(two.stages["distill"]) and len(two.stages["distill"]) == 60
    assert {e["replicate"] for e in two.expected if e["seed"] >= 3} == {1}
    long = grid.build("lab-long", "python", "out", "data", [])
    assert set(long.parts) - set(g.parts) == {"long SGD training (Fig. 3)"}
    longest = [c for c in long.stages["distill"] if " --epochs 512 " in c]
    assert len(longest) == 2 * 3 and all(" --opt sgd " in c for c in longest)  # two halves of the T grid per seed
    assert sum(long.parts["long SGD training (Fig. 3)"].values()) == 6 * 3  # 5 T + labels only, 3 seeds
    full = grid.build("lab-full", "python", "out", "data", [])
    added = {
        "methods (Fig. 1)",
        "batch size (Fig. 2)",
        "student initialization (Table 2)",
        "dataset granularity (Fig. 6)",
    }
    assert set(full.parts) - set(long.parts) == added
    methods = full.parts["methods (Fig. 1)"]
    assert {" --opt adamw " in c for c in methods} == {True, False}  # two settings: "consistently" is testable
    assert set(distill) <= set(long.stages["distill"]) <= set(full.stages["distill"])  # each finishes the last


def test_the_pool_starts_the_longest_commands_first_and_spreads_the_tapes():
    """xargs runs the manifest in order on --jobs workers: longest first leaves no long command alone at the end;
    equally long commands of different tapes alternate, so two workers rarely record one tape twice."""
    g = grid.build("lab-full", "python", "out", "data", [])
    order = grid.ordered(g, "distill")
    assert sorted(order) == sorted(g.stages["distill"])
    costs = [g.cost[c] for c in order]
    assert costs == sorted(costs, reverse=True) and costs[0] == 3 * 512  # the longest: 3 students x 512 epochs
    firsts = [c for c in order if g.cost[c] == 6 * 128]
    assert g.tape_of[firsts[0]] != g.tape_of[firsts[1]]


def test_expected_runs_name_every_run_as_the_analysis_does():
    """manifest/expected.json lists each distillation run in the analysis' terms (analysis/table.py)."""
    from analysis import table

    for preset in ("lab-full", "paper"):
        g = grid.build(preset, "python", "out", "data", [])
        assert len(g.expected) == sum(g.stages["distill"].values())
        assert len({table.expected_key(e) for e in g.expected}) == len(g.expected)  # every run once
    g = grid.build("lab-full", "python", "out", "data", [])
    labels = [e for e in g.expected if e["method"] == "labels"]
    assert labels and all(e["teacher"] is None and e["T"] is None and e["signal"] is None for e in labels)
    inits = {e["student_init"] for e in g.expected}
    assert inits == {"random", "TT", "pretrained", "FT"}
    assert {e["teacher"] for e in g.expected} >= {
        "synth-fine-ft4-t0",
        "synth-fine-ft32-t1",
        "synth-fine-scratch-t2",
        None,
    }
    ctkd = [e for e in g.expected if e["method"] == "ctkd"]
    assert ctkd and all(e["T"] is None for e in ctkd)


@pytest.mark.parametrize("preset", [*grid.BUILTIN, "paper", "study --teacher", "study --source"])
def test_every_generated_command_parses_and_passes_the_runtime_checks(preset):
    """The grid writes only commands its scripts accept (e.g. --eval-from >= 0 for a 1-epoch budget)."""
    import cli
    import distill
    import train_teacher

    if preset.startswith("study"):  # a user's folder, with a teacher or with a source folder to make one
        made = preset.endswith("--source")
        o = grid.study_options(data_root="pets", teacher=None if made else "t.pt", source="src" if made else None)
        g = grid.build("study", "python", "out", "pets", [], o)
        teachers = {Path(shlex.split(c)[shlex.split(c).index("--teacher") + 1]).name for c in g.stages["distill"]}
        assert teachers == ({"pets-ft4.pt", "pets-ft32.pt", "pets-scratch.pt"} if made else {"t.pt"}), teachers
    else:
        g = grid.build(preset, "python", "out", "data", [])
    for stage, cmds in g.stages.items():
        for cmd in cmds:
            argv = shlex.split(cmd)
            script = {"distill.py": distill, "train_teacher.py": train_teacher}[Path(argv[1]).name]
            args = script.get_args(argv[2:])
            cli.check_runtime_args(args)
            assert args.epochs is None or args.epochs >= 1, (stage, cmd)


def test_the_grid_plans_without_torch_and_knows_kd_pys_methods():
    """grid.py spells out kd.py's method names and two-view methods (run_all.sh starts it on every call; torch
    costs 1.5 s there): they must be kd.py's."""
    assert list(kd.METHODS) == grid.METHODS
    assert {name for name, m in kd.METHODS.items() if m.needs_two_views} == grid.TWO_VIEW_METHODS
    code = "import sys, grid; grid.build('lab-full', 'python', 'out', 'data', []); print('torch' in sys.modules)"
    r = run_script("-c", code)
    assert r.stdout.strip() == "False", r.stdout + r.stderr


def test_commands_that_share_a_tape_record_the_same_views():
    """A tape is per teacher, seed, batch size and views: MLKD's two-view sweeps get their own."""
    g = grid.build("lab-full", "python", "out", "data", [])
    views = {}
    for cmd in g.stages["distill"]:
        argv = shlex.split(cmd)
        tape = argv[argv.index("--teacher-tape") + 1]
        two = kd.METHODS[argv[argv.index("--method") + 1]].needs_two_views
        views.setdefault(tape, set()).add(two)
    assert all(len(v) == 1 for v in views.values()) and {True, False} == set().union(*views.values())


def test_the_paper_grid_records_one_tape_per_teacher_seed_and_batch_size():
    """Every paper distillation replays its teacher from a tape shared by the commands of one teacher, seed, batch
    size and views (two-view methods have their own): each tape is valid for all of its commands (tape.KEY_FIELDS)."""
    g = grid.build("paper", "python", "out", "data", [])
    shared = {}
    for cmd in g.stages["distill"]:
        argv = shlex.split(cmd)
        assert argv.count("--teacher-tape") == 1, cmd
        value = {flag: argv[argv.index(flag) + 1] for flag in ("--teacher", "--seed", "--bs", "--dataset")}
        value["two views"] = kd.METHODS[argv[argv.index("--method") + 1]].needs_two_views
        value["data"] = argv[argv.index("--data-root") + 1]
        shared.setdefault(argv[argv.index("--teacher-tape") + 1], set()).add(tuple(value.items()))
    assert all(len(v) == 1 for v in shared.values())  # one teacher, seed, batch size, data and views per tape
    assert len({v for vs in shared.values() for v in vs}) == len(shared)  # and one tape for each


def test_the_paper_dry_run_prints_its_gpu_hours_and_disk_consistent_with_its_counts(monkeypatch):
    """The methods study by hand: 64 runs per (dataset, teacher, student, seed) at the baseline budget, one tape per
    teacher and seed plus MLKD's two-view one, the teachers' fine-tuning; twice the seeds, twice the distillation's
    hours and tapes, the same teachers; the dry-run prints the figures."""
    rates = grid.ASSUMED_TRAIN_RATES
    students, forward, teachers = 0.0, 0.0, 0.0
    for name in grid.BASELINE_DATASETS:
        d = grid.PAPER_DATASETS[name]
        images = d["baseline"] * d["train_images"]
        students += sum(2 * 3 * (7 * 9 + 1) * images / rates[s] for s in grid.STUDENTS)
        forward += sum(3 * (1 + 2) * images / (grid.TEACHER_FORWARD_SPEEDUP * rates[t]) for t in grid.TEACHERS)
        teachers += sum(d["ft"] * d["train_images"] / rates[t] for t in grid.TEACHERS)
    g = grid.build("methods", "python", "out", "data", [])
    hours = grid.gpu_hours(g)
    assert hours == pytest.approx(((students + forward) / 3600, teachers / 3600))
    tapes, kept, _ = grid.disk_bytes(g)
    assert kept == pytest.approx(2 * sum(grid.PARAMS_M[t] * 4e6 for t in grid.TEACHERS))
    monkeypatch.setattr(grid, "SEEDS", [0, 1, 2, 3, 4, 5])
    doubled = grid.build("methods", "python", "out", "data", [])
    assert sum(doubled.stages["distill"].values()) == 2 * sum(g.stages["distill"].values())
    assert grid.gpu_hours(doubled) == pytest.approx((2 * hours[0], hours[1]))
    assert grid.disk_bytes(doubled)[:2] == pytest.approx((2 * tapes, kept))
    monkeypatch.undo()
    r = run_all("paper", "--dry-run")
    paper = grid.build("paper", "python", "out", "data", [])
    assert r.returncode == 0 and all(line in r.stdout.splitlines() for line in grid.cost_lines(paper)), r.stdout
    assert "GPU-hours: " in r.stdout and "of teacher tapes (174)" in r.stdout


def test_dry_run_prints_counts_and_commands():
    r = run_all("paper", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "training configuration (Figs. 2-3): 4320 distillation runs" in r.stdout
    assert "distill: " in r.stdout and "python" in r.stdout and "distill.py" in r.stdout


@pytest.mark.slow
def test_demo_tiny_end_to_end_concurrent_idempotent_and_survives_a_kill(tmp_path):
    """Two run_all.sh started together on one folder, one SIGKILLed as it starts a distillation: the other finishes the
    grid; every command ran once, except those the killed pool was running (two workers: up to two commands ran
    twice, the second time resuming)."""
    out = tmp_path / "grid"
    kw = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    killed, survivor = [run_all("demo-tiny", "--out", out, background=True, **kw) for _ in range(2)]
    next((line for line in killed.stderr if line.startswith("[distill] ")), None)  # None: the other did them all
    if killed.poll() is None:
        os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate()
    err = survivor.communicate(timeout=900)[1]
    assert survivor.returncode == 0, err[-3000:]
    expected = json.loads((out / "manifest" / "expected.json").read_text())
    assert len(run_ids(out)) == len(expected) == DEMO_TINY_RUNS
    assert sum(int(row["n"]) for row in csv.DictReader((out / "results.csv").open())) == DEMO_TINY_RUNS  # one cell each
    assert (out / "REPORT.md").read_text().startswith("# Report")
    n_cmds = sum(len(Path(out, "manifest", f"{s}.txt").read_text().splitlines()) for s in MANIFESTS)
    ran = sorted(executions(out).values())
    assert len(ran) == n_cmds and set(ran) <= {1, 2} and ran.count(2) <= 2, ran
    # a re-run finds everything done and runs nothing; the failure of a command the grid no longer has
    # (one fixed since) is history, not a failure of this grid
    (out / ".failed" / "0123456789abcdef").write_text("2\tlogs/distill/old.log\tpython distill.py --old\n")
    r = run_all("demo-tiny", "--out", out)
    assert r.returncode == 0 and "0 of" in r.stderr and sorted(executions(out).values()) == ran
    assert "FAILED" not in r.stderr, r.stderr


def test_failures_are_listed_with_logs_and_a_nonzero_exit(tmp_path):
    """Refused commands are listed with their logs; more threads than cores (a fixed OMP_NUM_THREADS times the
    workers) is said in one note."""
    cores = len(os.sched_getaffinity(0))
    env = {"OMP_NUM_THREADS": str(cores)}
    r = run_all(
        "demo-tiny", "--out", tmp_path, "--stop-after", "pretrain", "--jobs", "2", "--extra", "--epochs 0", env=env
    )
    assert r.returncode != 0
    assert f"note: OMP_NUM_THREADS={cores} x 2 worker(s) > " in r.stderr, r.stderr
    assert "FAILED commands" in r.stderr and "logs/pretrain/" in r.stderr
    failed = list((tmp_path / ".failed").iterdir())
    assert failed and all("--epochs 0" in f.read_text() for f in failed)
    assert not list(tmp_path.glob("runs/*/result.json"))


def test_ci_runs_exactly_the_readmes_test_command():
    """.ci/run must run the README's command 2 verbatim (CI = what a user runs)."""
    readme = (ROOT / "README.md").read_text()
    command = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m"))
    assert command in readme and "pytest" in command and "ruff check" in command
