"""The study's grid in one readable place: presets -> one manifest of commands per stage.

run_all.sh calls this to write <out>/manifest/<stage>.txt (one shell command per line) and then
runs the stages in order: pretrain -> teachers (and student initial weights) -> distill -> analysis.
Every value below comes from docs/STUDY.md; those marked (default) are the project's choices where
the paper's text lost the number. Temperature sweeps are one lockstep command per configuration.

    python grid.py paper --dry-run          # runs per stage and the first commands
    python grid.py demo --out demo          # writes demo/manifest/*.txt
"""

import argparse
import json
import shlex
import sys
from collections import OrderedDict
from pathlib import Path

import kd
from runs import atomic_write

# ---------------------------------------------------------------------------------------------
# The paper (docs/STUDY.md §1-§4)

T_GRID = [1, 2, 3, 4, 5, 10, 20, 30, 40]  # spans 1..40 (paper); the values (default)
SEEDS = [0, 1, 2]  # mean of 3 seeds (paper)
TEACHERS = ["resnet50", "vit_small_patch16_224"]  # baseline teachers (paper)
EXTRA_TEACHERS = ["convnext_tiny", "regnety_064"]  # origination study (paper)
SCRATCH_TEACHERS = ["resnet50", "convnext_tiny", "regnety_064"]  # no ViT from scratch (paper)
STUDENTS = ["resnet18", "mobilenetv4_conv_medium"]  # baseline students (paper)
EXTRA_STUDENTS = ["convnext_pico", "mobilevitv2_150"]  # initialization study (paper)
METHODS = [m for m in kd.METHODS if m != "kd"]  # compared with kd (paper), each at its own defaults
CONTROLS = [
    ("smooth-global", None),
    ("smooth-instance", None),
    ("bottomk", 1),
    ("bottomk", 2),
    ("bottomk", 5),
]  # k values (default)
OPTIMIZERS = ["adamw", "sgd"]  # (paper)
BATCH_SIZES = [64, 256]  # (paper); baseline 64 (default)
INITS = ["random", "tt", "in1k", "ft"]  # student initializations (paper)


# Per dataset: teacher fine-tuning epochs (Pets 20, CIFAR-100 40: paper), the origination study's
# fine-tuning durations, the five distillation budgets and the baseline budget (default), epochs from
# scratch for teachers and target-trained students (default).
def spec(dataset, ft, baseline, durations=(), budgets=(), root="", scratch=200):
    """A dataset's grid entry: teacher fine-tuning epochs, the origination study's durations, the distillation
    budgets, the baseline budget, the epochs from scratch, and its folder under --data-root (image folders)."""
    return dict(
        dataset=dataset,
        root=root,
        ft=ft,
        durations=list(durations),
        budgets=list(budgets),
        baseline=baseline,
        scratch=scratch,
    )


DATASETS = {
    "pets": spec("pets", ft=20, baseline=100, durations=[5, 10, 20, 40], budgets=[25, 50, 100, 200, 300]),
    "cifar100": spec("cifar100", ft=40, baseline=40, durations=[10, 20, 40, 80], budgets=[10, 20, 40, 80, 120]),
    "cars": spec("cars", ft=20, baseline=100, budgets=[25, 50, 100, 200, 300]),
    "tiny-imagenet": spec("tiny-imagenet", ft=40, baseline=40, budgets=[10, 20, 40, 80, 120]),
    "imagenet-birds": spec("imagefolder", ft=20, baseline=100, root="imagenet-birds"),
    "finer-birds": spec("imagefolder", ft=20, baseline=100, root="finer-birds"),
}
BASELINE_DATASETS = ["pets", "cifar100"]
STUDIES = ["methods", "config", "origination", "init", "granularity"]

# ---------------------------------------------------------------------------------------------
# The built-in data (synth-*): the study on a CPU. The paper's "ImageNet-1k pretraining" is a
# pretraining on synth-src; docs/LAB.md gives the measured properties these values were chosen by
# (teacher accuracies, labels-only students, convergence, time), all fixed before any temperature
# was compared.

PLAIN = ["--randaug-n", "0", "--mixup-alpha", "0", "--cutmix-alpha", "0"]  # pretraining: no RandAugment/mixing
LAB = dict(
    # 48 source classes x 200 images; targets of 24 classes, scarce (20 train images per class, as the
    # paper's bird sets have 30) so that a student trained on labels alone is far below the teacher
    synth=["src_train_per_class=200", "target_train_per_class=20", "test_per_class=300"],
    teacher="resnet18d",  # deep stem: resnet18's 7x7/2 stem is too coarse at 32 px
    student="test_resnet",  # timm's 0.4M-parameter ResNet: converges within the budget (resnet10t does not)
    pretrain_epochs=6,
    pretrain_args=PLAIN + ["--lr", "2e-3"],
    brief=4,
    long=32,
    ft_args=["--lr", "1e-3"],  # teacher fine-tuning, brief and long (1:8, as 5:40)
    scratch=100,
    scratch_args=["--lr", "2e-3"],  # a teacher trained from random weights
    T=[1, 2, 4, 8, 16, 40],
    seeds=[0, 1, 2],
    budgets=[16, 48, 128],  # distillation epochs; the longest is every other study's budget
    controls=[("smooth-global", None), ("smooth-instance", None), ("bottomk", 1)],
    control_T=[1, 8, 40],
    studies=["config", "controls", "origination", "overlap"],
    method_T=[1, 4, 16, 40],
    small_bs=16,  # lab-full only
    distill_args=["--amp"],  # bf16 autocast: accuracy parity with float32 in bench.py --parity
)
# The SGD cross-over where it could happen: the lab's SGD sweep at 512 epochs (3,584 steps), 4x the lab's
# longest budget, paid for by the speed levers now on by default (docs/PERFORMANCE.md)
LAB_LONG = dict(LAB, studies=LAB["studies"] + ["long"], long_budgets=[512])
LAB_FULL = dict(LAB_LONG, studies=LAB_LONG["studies"] + ["methods", "batch", "init", "granularity"])
# The demo: the lab in miniature, under 10 minutes on 2 cores (a shorter pretraining, 3 temperatures, 2 budgets;
# the training configuration and the teacher origination, 3 seeds)
DEMO = dict(
    LAB,
    synth=["src_train_per_class=100", "target_train_per_class=20", "test_per_class=100"],
    pretrain_epochs=4,
    long=16,
    scratch=40,
    T=[1, 4, 16],
    budgets=[16, 40],
    studies=["config", "origination"],
)
DEMO_TINY = dict(
    DEMO,
    synth=[
        "groups=4",
        "classes_per_group=2",
        "fine_groups=2",
        "novel_groups=2",
        "novel_classes_per_group=2",
        "coarse_classes_per_group=2",
        "src_train_per_class=8",
        "target_train_per_class=32",
        "test_per_class=4",
    ],
    pretrain_epochs=1,
    brief=1,
    long=2,
    scratch=2,
    T=[1, 4],
    seeds=[0],
    budgets=[1, 2],
    control_T=[4],
    studies=LAB["studies"],
    distill_args=["--allow-weak-teacher"],  # its toy teachers are near chance by design
)
BUILTIN = {"lab": LAB, "lab-long": LAB_LONG, "lab-full": LAB_FULL, "demo": DEMO, "demo-tiny": DEMO_TINY}


class Grid:
    """Collects commands per stage, without duplicates, and counts the runs each command makes; lists every
    distillation run it expects (expected.json, in the analysis' terms)."""

    def __init__(self, python, out, data_root, extra):
        self.python, self.out, self.root, self.extra = python, Path(out), data_root, extra
        self.stages = OrderedDict((s, OrderedDict()) for s in ("pretrain", "teachers", "distill"))
        self.parts = OrderedDict()  # part of the study -> {command: runs}, for the dry-run breakdown
        self.part = None
        self.cost, self.tape_of = {}, {}  # command -> student-epochs; command -> its teacher tape
        self.expected = []  # one dict per distillation run (analysis/integrity.py reads them)
        self.init_kinds = {"random": "random", "in1k": "in1k"}  # --student-init -> the analysis' name of it

    def add(self, stage, argv, runs=1, cost=0, tape=None):
        cmd = " ".join(shlex.quote(str(a)) for a in [self.python] + argv + self.extra)
        self.stages[stage][cmd] = runs
        self.cost[cmd], self.tape_of[cmd] = cost, tape
        if stage == "distill" and self.part:
            self.parts.setdefault(self.part, OrderedDict())[cmd] = runs
        return cmd

    def ordered(self, stage):
        """The stage's commands, longest first (so the pool's last minutes are not one long command alone);
        among equally long ones, commands of different teacher tapes alternate (each tape is recorded once)."""
        seen, rank = {}, {}
        for cmd in self.stages[stage]:
            tape = self.tape_of[cmd]
            rank[cmd] = seen.get(tape, 0) if tape is not None else 0
            seen[tape] = rank[cmd] + 1
        return sorted(self.stages[stage], key=lambda c: (-self.cost[c], rank[c]))

    def data_args(self, name, synth=()):
        d = DATASETS.get(name)
        if d is None:  # a built-in synth-* view
            return ["--dataset", name] + (["--synth", *synth] if synth else [])
        root = str(Path(self.root) / d["root"]) if d["root"] else self.root
        return ["--dataset", d["dataset"], "--data-root", root]

    def train(self, stage, name, arch, init, epochs, out, synth=(), extra=()):
        """A teacher or student-initialisation checkpoint; returns its path."""
        path = self.out / out
        self.add(
            stage,
            [
                "train_teacher.py",
                *self.data_args(name, synth),
                "--arch",
                arch,
                "--init",
                init,
                "--epochs",
                epochs,
                *extra,
                "--out",
                path,
            ],
        )
        return path

    def distill(
        self,
        name,
        teacher,
        student,
        temps,
        *,
        seed,
        opt="adamw",
        bs=64,
        epochs,
        init="random",
        method="kd",
        signal="teacher",
        k=None,
        synth=(),
        tape=None,
        extra=(),
        baseline=False,
    ):
        """One lockstep command: a student per temperature (+ one on labels alone with baseline=True)."""
        argv = [
            "distill.py",
            *self.data_args(name, synth),
            "--teacher",
            teacher,
            "--student",
            student,
            "--student-init",
            init,
            "--method",
            method,
        ]
        argv += ["--signal", signal] + (["--k", k] if k is not None else []) if signal != "teacher" else []
        argv += ["--opt", opt, "--bs", bs, "--epochs", epochs, "--seed", seed, "--out", self.out / "runs"]
        if tape is not None and kd.METHODS[method].needs_two_views:  # its tape holds two views per batch
            tape = f"{tape}-2views"
        argv += (["--teacher-tape", tape] if tape is not None else []) + list(extra)
        argv += (["--baseline"] if baseline else []) + ["--T", *temps]
        runs = (1 if method == "ctkd" else len(temps)) + baseline
        known = len(self.stages["distill"])
        self.add("distill", argv, runs=runs, cost=runs * epochs, tape=tape)
        if len(self.stages["distill"]) == known:  # a command another study added already: its runs are listed
            return
        run = dict(dataset=self.data_args(name, synth)[1], teacher=Path(str(teacher)).stem, student=student,
                   student_init=self.init_kinds.get(str(init), str(init)), method=method, signal=signal, k=k,
                   opt=opt, bs=bs, epochs=epochs, seed=seed)  # fmt: skip
        if name in DATASETS and DATASETS[name]["root"]:
            run["dataset"] = DATASETS[name]["root"]  # an image folder: the analysis names it by its folder
        self.expected += [
            dict(run, T=None if method == "ctkd" else float(T)) for T in ([None] if method == "ctkd" else temps)
        ]
        if baseline:
            self.expected.append(dict(run, teacher=None, method="labels", signal=None, k=None, T=None))


# ---------------------------------------------------------------------------------------------
# The paper's five studies


def teacher_path(g, name, arch, epochs=None, scratch=False):
    d = DATASETS[name]
    if scratch:
        return g.train("teachers", name, arch, "random", d["scratch"], f"teachers/{name}-{arch}-scratch.pt")
    epochs = epochs or d["ft"]
    return g.train("teachers", name, arch, "in1k", epochs, f"teachers/{name}-{arch}-ft{epochs}.pt")


def study_methods(g, names=BASELINE_DATASETS):
    g.part = "methods (Fig. 1)"
    for name in names:
        for t in TEACHERS:
            teacher = teacher_path(g, name, t)
            for s in STUDENTS:
                for seed in SEEDS:
                    for method in ["kd"] + METHODS:
                        g.distill(name, teacher, s, T_GRID, seed=seed, epochs=DATASETS[name]["baseline"], method=method)


def study_config(g, names=BASELINE_DATASETS, controls=True, part="training configuration (Figs. 2-3)"):
    for name in names:
        for t in TEACHERS:
            teacher = teacher_path(g, name, t)
            for s in STUDENTS:
                for seed in SEEDS:
                    g.part = part
                    for opt in OPTIMIZERS:
                        for bs in BATCH_SIZES:
                            for epochs in DATASETS[name]["budgets"]:
                                g.distill(name, teacher, s, T_GRID, seed=seed, opt=opt, bs=bs, epochs=epochs)
                    g.part = "controls (Fig. 5)"
                    for signal, k in CONTROLS if controls else []:
                        g.distill(
                            name, teacher, s, T_GRID, seed=seed, epochs=DATASETS[name]["baseline"], signal=signal, k=k
                        )


def study_origination(g, names=BASELINE_DATASETS):
    g.part = "teacher origination (Table 1)"
    for name in names:
        teachers = [
            teacher_path(g, name, t, epochs=e) for t in TEACHERS + EXTRA_TEACHERS for e in DATASETS[name]["durations"]
        ]
        teachers += [teacher_path(g, name, t, scratch=True) for t in SCRATCH_TEACHERS]
        for teacher in teachers:
            for s in STUDENTS:
                for seed in SEEDS:
                    g.distill(name, teacher, s, T_GRID, seed=seed, epochs=DATASETS[name]["baseline"])


def study_init(g, names=BASELINE_DATASETS):
    g.part = "student initialization (Table 2)"
    for name in names:
        d = DATASETS[name]
        for s in STUDENTS + EXTRA_STUDENTS:
            inits = {
                "random": "random",
                "in1k": "in1k",
                "tt": g.train("teachers", name, s, "random", d["scratch"], f"students/{name}-{s}-tt.pt"),
                "ft": g.train("teachers", name, s, "in1k", d["ft"], f"students/{name}-{s}-ft.pt"),
            }
            g.init_kinds.update({str(inits["tt"]): "TT", str(inits["ft"]): "FT"})
            for t in TEACHERS:
                teacher = teacher_path(g, name, t)
                for seed in SEEDS:
                    for init in INITS:
                        g.distill(name, teacher, s, T_GRID, seed=seed, epochs=d["baseline"], init=inits[init])


def study_granularity(g):
    study_config(g, names=["cars", "tiny-imagenet"], controls=False, part="granularity: Cars, Tiny ImageNet (Fig. 6)")
    g.part = "granularity: ImageNet-Birds vs Finer-Grained Birds (Fig. 7)"
    for name in ["imagenet-birds", "finer-birds"]:
        for t in TEACHERS:
            teacher = teacher_path(g, name, t)
            for s in STUDENTS:
                for seed in SEEDS:
                    g.distill(name, teacher, s, T_GRID, seed=seed, epochs=DATASETS[name]["baseline"])


# ---------------------------------------------------------------------------------------------
# The study on the built-in data: the lab, lab-full, the demo


def eval_last_quarter(epochs):
    """Evaluate three times in the last quarter of the budget (where convergence is read) and at the end."""
    every = max(1, epochs // 8)
    return ["--eval-every", every, "--eval-from", max(0, epochs - 2 * every)]


def builtin(g, c):
    """Every study in c["studies"] on synth-* (teacher fine-tuned from a synth-src pretraining)."""
    syn, studies, longest = c["synth"], c["studies"], max(c["budgets"])

    def train(stage, view, arch, init, epochs, name, extra):
        return g.train(stage, view, arch, init, epochs, name, syn, extra)

    g.part = "teachers"
    src = train(
        "pretrain",
        "synth-src",
        c["teacher"],
        "random",
        c["pretrain_epochs"],
        "pretrained/synth-src-teacher.pt",
        c["pretrain_args"],
    )
    # from random weights, so it trains beside the pretraining (stage 1), not after it
    if "origination" in studies:
        scratch = train(
            "pretrain",
            "synth-fine",
            c["teacher"],
            "random",
            c["scratch"],
            "teachers/synth-fine-scratch.pt",
            c["scratch_args"],
        )

    def fine_tune(dataset, epochs):  # the synth-src teacher fine-tuned on `dataset`
        name = f"teachers/{dataset}-ft{epochs}.pt"
        return train("teachers", dataset, c["teacher"], src, epochs, name, c["ft_args"])

    brief = fine_tune("synth-fine", c["brief"])
    if "origination" in studies or "overlap" in studies:
        long_ = fine_tune("synth-fine", c["long"])
    if "overlap" in studies:
        # Fig. 7 compares teachers fine-tuned equally long; briefly fine-tuned, the novel teacher is worse than a
        # student trained on labels alone (its pretraining never told the sub-variants apart), so both are "long"
        novel = fine_tune("synth-novel", c["long"])
    if "granularity" in studies:
        coarse = fine_tune("synth-coarse", c["brief"])
    if "init" in studies:  # Table 2: a student pretrained on synth-src ("IN1K"), then fine-tuned ("FT"); "TT"
        src_student = train(
            "pretrain",
            "synth-src",
            c["student"],
            "random",
            c["pretrain_epochs"],
            "pretrained/synth-src-student.pt",
            c["pretrain_args"],
        )
        inits = {
            "TT": train(
                "pretrain",
                "synth-fine",
                c["student"],
                "random",
                longest,
                "students/synth-fine-tt.pt",
                c["scratch_args"],
            ),
            "IN1K": src_student,
            "FT": train(
                "teachers",
                "synth-fine",
                c["student"],
                src_student,
                c["brief"],
                "students/synth-fine-ft.pt",
                c["ft_args"],
            ),
        }
        g.init_kinds.update({str(path): "pretrained" if kind == "IN1K" else kind for kind, path in inits.items()})

    for seed in c["seeds"]:

        def run(
            part, view, teacher, temps=c["T"], bs=64, seed=seed, **kw
        ):  # a lockstep sweep; a tape per teacher, seed
            g.part = part
            tape = g.out / "tapes" / f"{Path(teacher).stem}-s{seed}-bs{bs}"
            g.distill(
                view,
                teacher,
                c["student"],
                temps,
                seed=seed,
                synth=syn,
                tape=tape,
                bs=bs,
                extra=c["distill_args"] + eval_last_quarter(kw["epochs"]),
                **kw,
            )

        if "config" in studies:  # Figs. 2-3: optimizer x budget x T, each with its labels-only student
            for opt in OPTIMIZERS:
                for epochs in c["budgets"]:
                    run(
                        "training configuration (Figs. 2-3)", "synth-fine", brief, opt=opt, epochs=epochs, baseline=True
                    )
        if "controls" in studies:  # Fig. 5: smoothing with matched entropy and bottom-k vs the teacher
            for signal, k in c["controls"]:
                run("controls (Fig. 5)", "synth-fine", brief, c["control_T"], epochs=longest, signal=signal, k=k)
        if "origination" in studies:  # Table 1: long fine-tuned and from-scratch teachers
            for teacher in (long_, scratch):
                run("teacher origination (Table 1)", "synth-fine", teacher, epochs=longest)
        if "overlap" in studies:  # Fig. 7: fine classes absent from the pretraining labels
            run("overlapping vs novel classes (Fig. 7)", "synth-novel", novel, epochs=longest, baseline=True)
        if "long" in studies:  # Fig. 3 at budgets long enough to see whether SGD's shrinking gap crosses
            for epochs in c["long_budgets"]:
                for temps in (c["T"][: len(c["T"]) // 2], c["T"][len(c["T"]) // 2 :]):  # two halves: a balanced pool
                    small = temps[0] == c["T"][0]
                    run(
                        "long SGD training (Fig. 3)",
                        "synth-fine",
                        brief,
                        temps,
                        opt="sgd",
                        epochs=epochs,
                        baseline=small,
                    )
        if "methods" in studies:  # Fig. 1: the other KD methods, each at its own defaults, with both optimizers
            for opt in OPTIMIZERS:  # "consistently" needs more than one setting
                for method in c.get("methods", METHODS):
                    run("methods (Fig. 1)", "synth-fine", brief, c["method_T"], epochs=longest, method=method, opt=opt)
        if "batch" in studies:  # the batch-size shift of the SGD cross-over, with a smaller batch
            for epochs in c["budgets"]:
                run(
                    "batch size (Fig. 2)",
                    "synth-fine",
                    brief,
                    opt="sgd",
                    bs=c["small_bs"],
                    epochs=epochs,
                    baseline=True,
                )
        if "init" in studies:  # Table 2: student initialisations
            for init in inits.values():
                run("student initialization (Table 2)", "synth-fine", brief, epochs=longest, init=init, baseline=True)
        if "granularity" in studies:  # Fig. 6: coarse-grained target
            run("dataset granularity (Fig. 6)", "synth-coarse", coarse, epochs=longest, baseline=True)


def build(preset, python, out, data_root, extra):
    g = Grid(python, out, data_root, extra)
    if preset in BUILTIN:
        builtin(g, BUILTIN[preset])
    else:
        for study in STUDIES if preset == "paper" else [preset]:
            globals()[f"study_{study}"](g)
    return g


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "preset", help="lab, lab-long, lab-full, demo, demo-tiny (tests), paper, or one study: " + ", ".join(STUDIES)
    )
    p.add_argument("--out", default="results", help="results folder (manifests go to <out>/manifest/)")
    p.add_argument("--data-root", default="data", help="folder holding the real datasets")
    p.add_argument("--python", default="python", help="python interpreter written into the commands")
    p.add_argument("--extra", default="", help="flags appended to every training command, e.g. '--amp --workers 8'")
    p.add_argument("--dry-run", action="store_true", help="print runs per stage and the first commands; write nothing")
    args = p.parse_args(argv)
    if args.preset not in [*BUILTIN, "paper", *STUDIES]:
        print(
            f"grid.py: error: unknown preset '{args.preset}' (expected {', '.join([*BUILTIN, 'paper', *STUDIES])})",
            file=sys.stderr,
        )
        return 2
    g = build(args.preset, args.python, args.out, args.data_root, shlex.split(args.extra))
    for part, cmds in g.parts.items():
        print(f"{part}: {sum(cmds.values())} distillation runs in {len(cmds)} commands")
    for stage, cmds in g.stages.items():
        print(f"{stage}: {len(cmds)} commands, {sum(cmds.values())} runs")
        if args.dry_run:
            for cmd in list(cmds)[:3]:
                print(f"  {cmd}")
            continue
        atomic_write(g.out / "manifest" / f"{stage}.txt", "".join(c + "\n" for c in g.ordered(stage)))
    if not args.dry_run:
        atomic_write(g.out / "manifest" / "expected.json", json.dumps(g.expected, indent=0) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
