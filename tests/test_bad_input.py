"""Every refusal of bad input, one table: script, command line ({d}: the test's folder, {t}: the session's teacher),
the message, and what to set up first. Each refusal ends the command with exit code 2 and one line
'<script>: error: <message>' ('...': any text) after no other error, traceback or mention of the refused flag, and
leaves every file under {d} (run folders, checkpoints, tapes) as it was. Rows marked P1-P10 or 'probe' once ended in a
traceback, exit 1, a message naming no flag, a note before the error or a file written (issue 14)."""

import os
import re
import shutil
import sys

import pytest
import torch
from test_analysis import write_run

import data
import distill
import grid
import models
import train_teacher
from analysis import advise, report
from helpers import TINY, distill_args, run_script, teacher_args, without_synth, write_image_folder

SYNTH = TINY[1 : TINY.index("--data-root")]  # the KEY=VALUE sizes of TINY, for advise.py
MAINS = {"distill.py": distill.main, "train_teacher.py": train_teacher.main, "advise.py": advise.main,
         "data.py": data.main, "grid.py": grid.main, "report.py": report.main}  # fmt: skip
ADVISE = ["--teacher", "{t}", "--synth", *SYNTH]
STUDY = ["study", "--out", "{d}/out", "--data-root", "{d}/folder", "--teacher", "{t}", "--image-size", "32",
         "--budgets", "1", "--T", "1", "4", "--student", "test_resnet"]  # fmt: skip
FEWSHOT = ["fewshot", "{d}/src", "{d}/out", "--n-train", "3", "--n-test"]


def D(*flags, teacher="{t}"):
    return distill_args(teacher, "{d}/out", *flags)


def T(*flags):
    return teacher_args("{d}/out/t.pt", *flags)


def ckpt(change):
    """Setup: {d}/bad.pt, the session teacher's checkpoint dict after change(it)."""

    def setup(d, t):
        c = torch.load(t, weights_only=True)
        change(c)
        torch.save(c, d / "bad.pt")

    return setup


class Exploit:
    """Pickles to a call of os.system: loading it without weights_only=True would run the command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def exploit(d, t=None):
    """{d}/evil.pt, whose unpickling would write {d}/EXECUTED (an unchanged folder shows that it never ran)."""
    torch.save({"format": models.CHECKPOINT_FORMAT, "arch": "test_resnet", "x": Exploit(d / "EXECUTED")}, d / "evil.pt")
    return d / "evil.pt"


def damaged_run(damage, T="2"):
    """Setup: distill.py --T 2 4 --epochs 1 --keep-ckpt into {d}/out, then damage(the T run's folder, T 2's)."""

    def setup(d, t):
        assert distill.main(distill_args(t, d / "out", "--T", "2", "4", "--epochs", "1", "--keep-ckpt")) == 0
        t2, t4 = sorted((d / "out").iterdir())
        damage(t2 if T == "2" else t4, t2)

    return setup


def unfinished(damage):
    """The run folder without result.json and ckpt.pt, then damage(it)."""
    return lambda run, t2: [(run / name).unlink() for name in ("result.json", "ckpt.pt")] and damage(run)


def another_students_ckpt(d, t):
    """probe: a test_resnet's ckpt.pt in an unfinished resnet10t run folder was a state_dict traceback."""
    damaged_run(lambda t2, _: None)(d, t)
    assert distill.main(distill_args(t, d / "r10", "--T", "4", "--epochs", "1", "--student", "resnet10t")) == 0
    (run,) = (d / "r10").iterdir()
    (run / "result.json").unlink()
    shutil.copy(sorted((d / "out").iterdir())[0] / "ckpt.pt", run / "ckpt.pt")


def taped(damage=lambda key: None):
    """Setup: a tape {d}/tape recorded by a 1-epoch run at --T 2, then damage(its key.json)."""

    def setup(d, t):
        assert distill.main(distill_args(t, d / "rec", "--T", "2", "--epochs", "1", "--teacher-tape", f"{d}/tape")) == 0
        damage(d / "tape" / "key.json")

    return setup


def trained(then=lambda d: None):
    """Setup: train_teacher.py into {d}/t.pt, then then(d)."""
    return lambda d, t: train_teacher.main(teacher_args(d / "t.pt")) or then(d)


def folder(classes="abc", damage=lambda root: None):
    """Setup: a user's image folder {d}/folder, 2 images a class (the session's teacher has 3), then damage(it)."""
    return lambda d, t: damage(write_image_folder(d / "folder", list(classes), 2))


def source(d, t):
    for name in ("a", "b"):
        (d / "src" / name).mkdir(parents=True)
        for i in range(5):
            (d / "src" / name / f"{i}.png").write_bytes(b"")


def only_dirname_on_path(d, t):
    (d / "bin").mkdir()
    (d / "bin" / "dirname").symlink_to(shutil.which("dirname"))
    return {"PATH": str(d / "bin")}


BAD_FLAGS = [  # P7, refused by both training scripts
    (["--workers", "-1"], "--workers"),
    (["--eval-every", "-1"], "--eval-every"),
    (["--image-size", "0"], "--image-size"),  # probe: a note about the teacher's resolution came first
    (["--randaug-n", "1000000"], "--randaug-n"),  # probe: accepted, then every image took a million operations
    (["--synth", "groups=0"], "--synth groups"),
    (["--synth", "foo=1"], "--synth: unknown key 'foo'"),
    (["--synth", "groups=abc"], "--synth groups"),
    (["--synth", "fine_groups=5"], "--synth: sizes out of range"),  # probe: named no flag (fine_groups > groups)
    (["--bs", "1000"], "--bs"),  # probe: the message did not name the flag
    (["--device", "meta"], "--device"),  # probe: a torch device that failed mid-run with a traceback
    (["--device", "cuda:99"], "--device cuda"),  # refused with CUDA or without
]
T_RANGE = "--T: temperatures must be in [0.5, 100] (where every loss is finite and meaningful), got "

CASES = {
    **{f"distill {' '.join(f)}": ("distill.py", D(*f), m) for f, m in BAD_FLAGS},
    **{f"train_teacher {' '.join(f)}": ("train_teacher.py", T(*f), m) for f, m in BAD_FLAGS},
    **{f"--T {v}": ("distill.py", D("--T", v), T_RANGE + v) for v in ("0", "1e-30", "101", "nan", "inf")},  # P4
    "--T warm": ("distill.py", D("--T", "warm"), "--T: "),
    "--bs many": ("distill.py", D("--bs", "many"), "--bs: "),
    "--epochs 0": ("distill.py", D("--epochs", "0"), "--epochs"),
    "--lr -1": ("distill.py", D("--lr", "-1"), "--lr"),
    "--wd -0.1": ("distill.py", D("--wd", "-0.1"), "--wd"),
    "--opt lion": ("distill.py", D("--opt", "lion"), "--opt"),
    "--method fancy": ("distill.py", D("--method", "fancy"), "--method"),
    "--signal noise": ("distill.py", D("--signal", "noise"), "--signal"),
    "--student resnet_nope": ("distill.py", D("--student", "resnet_nope"), "--student"),
    "--dataset imagenet22k": ("distill.py", D("--dataset", "imagenet22k"), "--dataset"),
    "bottomk without --k": ("distill.py", D("--signal", "bottomk"), "--signal bottomk needs --k"),
    "bottomk --k 3 of 3": ("distill.py", D("--signal", "bottomk", "--k", "3"), "--k"),
    "a signal and --ce-weight": ("distill.py", D("--signal", "smooth-global", "--ce-weight", "1"),
                                 "--signal smooth-global:...--ce-weight"),
    "a signal and --hp": ("distill.py", D("--signal", "bottomk", "--k", "1", "--hp", "beta=2"),
                          "--signal bottomk:...--hp"),
    "dist at --bs 1": ("distill.py", D("--method", "dist", "--bs", "1"), "--bs"),
    "--hp nonsense=1": ("distill.py", D("--hp", "nonsense=1"), "--hp...nonsense"),
    "--hp T=8": ("distill.py", D("--hp", "T=8"), "--hp T: set it with --T"),  # P4
    "--hp ce_weight": ("distill.py", D("--hp", "ce_weight=0.5"), "--hp ce_weight: set it with --ce-weight"),  # P4
    **{f"{m} {hp}": ("distill.py", D("--method", m, "--hp", hp), f"--hp: {m} hyperparameter {message}") for m, hp,
       message in (("dkd", "warmup=-1", "warmup"), ("dkd", "warmup=0", "warmup"),
                   ("dkd", "warmup=2.5", "warmup: expected an integer"),
                   ("dkd", "beta=abc", "beta: expected a finite number"),
                   ("dkd", "beta=nan", "beta: expected a finite number"), ("ctkd", "ramp_epochs=0", "ramp_epochs"),
                   ("eakd", "h_ub=0", "h_ub"), ("mlkd", "temperatures=4,0.1", "temperatures"),
                   ("kd", "t2=1", "t2: expected true or false"), ("kd", "kd_weight=-1", "kd_weight"))},  # P4
    "--synth with a real dataset": ("distill.py", without_synth(D()) + ["--dataset", "cifar100", "--synth", "groups=2"],
                                    "--synth: applies to the built-in synth-* datasets only"),  # P7
    "--out ''": ("distill.py", D("--out", ""), "--out: expected a folder, got an empty string"),  # probe
    "--teacher-tape ''": ("distill.py", D("--teacher-tape", ""), "--teacher-tape: expected a folder"),  # probe
    "--teacher ''": ("distill.py", D(teacher=""), "...checkpoint path is empty"),  # probe: said '.' is a folder
    "--out under a file": ("distill.py", distill_args("{t}", "{d}/file/runs"), "--out:...not writable",
                           lambda d, t: (d / "file").write_text("x")),
    "a dataset that is not there": ("distill.py", without_synth(D("--dataset", "cifar100", "--data-root",
                                    "{d}/nowhere")), "cifar100:...{d}/nowhere"),
    "--download offline": ("distill.py", without_synth(D("--dataset", "cifar100", "--data-root", "{d}", "--download")),
                           "...cifar100: download into...failed"),
    # teachers and initialisations that cannot be used
    "a missing teacher": ("distill.py", D(teacher="{d}/nope.pt"), "...{d}/nope.pt"),
    "a truncated teacher": ("distill.py", D(teacher="{d}/bad.pt"), "...{d}/bad.pt",
                            lambda d, t: (d / "bad.pt").write_bytes(t.read_bytes()[:1000])),
    "a foreign file": ("distill.py", D(teacher="{d}/bad.pt"), "...{d}/bad.pt",
                       lambda d, t: torch.save({"state_dict": {}}, d / "bad.pt")),
    "a folder as teacher": ("distill.py", D(teacher="{d}"), "...checkpoint '{d}' is a folder"),  # P8
    "/dev/null as teacher": ("distill.py", D(teacher="/dev/null"), "...'/dev/null' is not a regular file"),  # P8
    **{f"{script}: {what}": (script, argv, "...checkpoint '{d}/bad.pt'", ckpt(change)) for what, change in (
        ("another arch", lambda c: c.update(arch="resnet10t")), ("no normalization", lambda c: c.pop("normalization")),
        ("no head tensor", lambda c: c["state_dict"].pop("fc.weight"))) for script, argv in (
        ("distill.py", D(teacher="{d}/bad.pt")), ("advise.py", ["--teacher", "{d}/bad.pt", "--synth", *SYNTH]))},  # P7
    "a teacher near chance": ("distill.py", [a for a in D(teacher="{d}/bad.pt") if a != "--allow-weak-teacher"],
                              "...near chance...--allow-weak-teacher",  # P8: refused after the run folder is claimed
                              ckpt(lambda c: [c["state_dict"][k].zero_() for k in ("fc.weight", "fc.bias")])),
    **{f"{script}: non-finite weights": (script, argv, "--teacher...non-finite logits", ckpt(
        lambda c: [v.mul_(float("nan")) for v in c["state_dict"].values() if v.is_floating_point()]))
       for script, argv in (("distill.py", D(teacher="{d}/bad.pt")),  # probe: every student 'diverged', exit 3
                            ("advise.py", ["--teacher", "{d}/bad.pt", "--synth", *SYNTH]))},  # probe: NaNs as a 'tail'
    "a teacher of 3 classes on 6": ("distill.py", D("--dataset", "synth-coarse"), "...3 classes...synth-coarse has 6"),
    "--student-init another arch": ("distill.py", D("--student", "resnet10t", "--student-init", "{t}"),
                                    "--student-init"),
    "pickled code as teacher": ("distill.py", D(teacher="{d}/evil.pt"), "...{d}/evil.pt...weights_only", exploit),
    "pickled code as --student-init": ("distill.py", D("--student-init", "{d}/evil.pt"), "...weights_only", exploit),
    "pickled code as --init": ("train_teacher.py", T("--init", "{d}/evil.pt"), "...weights_only", exploit),
    "in1k weights offline": ("train_teacher.py", T("--init", "in1k"), "...--pretrained-file",  # the one download
                             lambda d, t: {"HF_HUB_OFFLINE": "1"}),
    "--init is --out": ("train_teacher.py", teacher_args("{d}/t.pt", "--init", "{d}/t.pt"),
                        "--init: '{d}/t.pt' is also --out", trained()),  # probe: it overwrote its initialisation
    "a file as the run folder": ("train_teacher.py", teacher_args("{d}/t.pt"), "...run folder '{d}/t.run' is a file",
                                 lambda d, t: (d / "t.run").write_text("x")),  # probe: '[Errno 17]'
    "changed flags, a finished run": ("train_teacher.py", teacher_args("{d}/t.pt", "--epochs", "2"),
                                      "...keys that differ: epochs", trained()),  # probe: moved result.json aside
    "changed flags, no model": ("train_teacher.py", teacher_args("{d}/t.pt", "--bs", "6"), "...keys that differ: bs",
                                trained(lambda d: (d / "t.pt").unlink())),
    # run folders and tapes that cannot be trusted
    "an empty ckpt.pt": ("distill.py", D("--T", "2", "--epochs", "1"), "...ckpt.pt cannot be loaded safely",
                         damaged_run(unfinished(lambda run: (run / "ckpt.pt").write_bytes(b"")))),  # P7: disk full
    "pickled code as ckpt.pt": ("distill.py", D("--T", "2", "--epochs", "1"), "...ckpt.pt cannot be loaded safely",
                                damaged_run(unfinished(lambda r: exploit(r.parent.parent).rename(r / "ckpt.pt")))),
    "ckpt.pt of another student": ("distill.py", D("--T", "4", "--epochs", "1", "--student", "resnet10t", "--out",
                                   "{d}/r10"), "...ckpt.pt was written for another run", another_students_ckpt),
    "ckpt.pt of another T": ("distill.py", D("--T", "4", "--epochs", "1"), "...ckpt.pt was written for another run",
                             damaged_run(lambda run, t2: (run / "result.json").unlink() or shutil.copy(
                                 t2 / "ckpt.pt", run / "ckpt.pt"), T="4")),  # probe: resumed silently
    **{f"config.json {text}": ("distill.py", D("--T", "2", "--epochs", "1"), "...config.json",
                               damaged_run(unfinished(lambda run, text=text: (run / "config.json").write_text(text))))
       for text in ('{"identity": ', '{"identity": 5}')},  # P8; probe: the second was a TypeError traceback
    **{f"a folder as {name}": ("distill.py", D("--T", "2", "--epochs", "1"), f"...{name}' is not a file",
                               damaged_run(unfinished(lambda run, name=name: (run / name).unlink(missing_ok=True) or
                                                      (run / name).mkdir())))
       for name in ("ckpt.pt", "log.jsonl")},  # probe: a traceback in the middle of training
    "a tape of another setup": ("distill.py", D("--T", "2", "--epochs", "1", "--teacher-tape", "{d}/tape", "--seed",
                                "1", "--bs", "6"), "--teacher-tape...bs...seed", taped()),
    "a broken key.json": ("distill.py", D("--teacher-tape", "{d}/tape"), "--teacher-tape...{d}/tape/key.json",
                          taped(lambda key: key.write_text('{"dataset": '))),  # P3
    "a folder as key.json": ("distill.py", D("--teacher-tape", "{d}/tape"), "--teacher-tape:...key.json",
                             taped(lambda key: key.unlink() or key.mkdir())),  # probe: an OSError naming no flag
    # advise.py
    "advise --image-size 0": ("advise.py", [*ADVISE, "--image-size", "0"], "--image-size"),  # probe: a note first
    "advise --device meta": ("advise.py", [*ADVISE, "--device", "meta"], "--device"),  # probe: a traceback
    "advise: a missing teacher": ("advise.py", ["--teacher", "{d}/missing.pt"], "...does not exist"),
    "advise: no findings file": ("advise.py", [*ADVISE, "--findings", "{d}/none.json"], "...cannot read"),
    "advise: not a findings file": ("advise.py", [*ADVISE, "--findings", "{d}/f.json"], "...not a findings.json",
                                    lambda d, t: (d / "f.json").write_text('{"id": 3}')),
    # data.py fewshot (P7: exit 1 with a bare 'error:' line)
    "fewshot: no source": ("data.py", ["fewshot", "{d}/missing", *FEWSHOT[2:], "2"],
                           "fewshot: source folder {d}/missing not found"),
    "fewshot: output not empty": ("data.py", [*FEWSHOT, "2"], "...not empty",
                                  lambda d, t: source(d, t) or (d / "out").mkdir() or (d / "out" / "x").touch()),
    "fewshot: small classes": ("data.py", [*FEWSHOT, "3"], "...a (5), b (5)", source),
    "fewshot: --n-train 0": ("data.py", [*FEWSHOT[:4], "0", "--n-test", "2"], "--n-train: must be >= 1", source),
    # the grid and the study
    "an unknown preset": ("run_all.sh", ["nonsense"], "unknown preset"),
    "--jobs zero": ("run_all.sh", ["demo", "--jobs", "zero"], "--jobs"),
    "an unknown option": ("run_all.sh", ["demo", "--frobnicate"], "unknown option"),
    "--out --dry-run": ("run_all.sh", ["demo-tiny", "--out", "--dry-run", "--out", "o", "--dry-run"],
                        "--out: expected a value"),  # P6: took --dry-run as the results folder
    "--out alone": ("run_all.sh", ["demo-tiny", "--out"], "--out: expected a value"),  # P6: an unbound variable
    **{f"--slurm {f} {v}": ("run_all.sh", ["demo-tiny", "--slurm", "--out", "o", f, v], f)
       for f, v in (("--cpus", "0"), ("--cpus", "two"), ("--mem", "lots"), ("--mem", "16GB"))},
    "--slurm without sbatch": ("run_all.sh", ["demo", "--slurm", "--out", "o"], "--slurm: sbatch not found",
                               only_dirname_on_path),
    "study: no test split": ("grid.py", STUDY, "...test not found",
                             folder(damage=lambda root: shutil.rmtree(root / "test"))),
    "study: a class without images": ("grid.py", STUDY, "...no valid file",
                                      folder(damage=lambda root: [p.unlink() for p in (root / "train/b").iterdir()])),
    "study: other classes": ("run_all.sh", STUDY, "grid.py: error: --teacher: ", folder("abcd")),
    "study: --source and --teacher": ("grid.py", [*STUDY, "--source", "{d}/folder"], "--source", folder()),
    "study: over --max-hours": ("grid.py", [*STUDY, "--max-hours", "0.000001"], "--budgets: the study is estimated at",
                                folder()),
    "report: two runs of one cell": ("report.py", ["{d}"], "...move one out",
                                     lambda d, t: write_run(d, 70.0) or write_run(d, 71.0, folder="-copy")),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(teacher, tmp_path, capsys, monkeypatch, case):
    script, argv, message, *setup = CASES[case]
    monkeypatch.chdir(tmp_path)  # --out '' would write here
    made = setup[0](tmp_path, teacher) if setup else None
    env = made if isinstance(made, dict) else {}  # a setup may give the command an environment of its own
    argv = [a.format(d=tmp_path, t=teacher) for a in argv]
    before = files_in(tmp_path)
    capsys.readouterr()
    if script.endswith(".sh") or env:  # a shell script, or a command with an environment of its own
        r = run_script(script, *argv, cwd=tmp_path, env={"PYTHON": sys.executable, **env})
        code, err = r.returncode, r.stderr
    else:
        try:
            code = MAINS[script](argv)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
    *said, last = err.splitlines() or [""]  # a run's progress and notes before a late refusal
    flag = re.findall(r"^--[\w-]+", message)  # probe: a note about a bad --image-size came before its error
    assert code == 2 and not any(w in ln for ln in said for w in ("error", "Traceback", *flag)), err
    line = message if message.startswith("grid.py: error: ") else f"{script}: error: {message}"
    assert re.match(re.escape(line.format(d=tmp_path)).replace(r"\.\.\.", ".*"), last), err
    assert files_in(tmp_path) == before


def files_in(folder):
    """{path: bytes (None for a folder or a run folder's lock, which holds the last pid)} of everything under folder."""
    return {str(p): None if p.is_dir() or p.name == ".lock" else p.read_bytes() for p in sorted(folder.rglob("*"))}
