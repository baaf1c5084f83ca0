"""The study's grid in one readable place: presets -> one manifest of commands per stage.

run_all.sh calls this to write <out>/manifest/<stage>.txt (one shell command per line) and then
runs the stages in order: pretrain -> teachers (and student initial weights) -> distill -> analysis.
Every value below comes from docs/STUDY.md; those marked (default) are the project's choices where
the paper's text lost the number. Temperature sweeps are one lockstep command per configuration.

    python grid.py paper --dry-run          # runs per stage, the first commands, GPU-hours and disk
    python grid.py demo --out demo          # writes demo/manifest/*.txt
"""

import argparse
import json
import os
import shlex
import sys
from collections import OrderedDict
from pathlib import Path

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
# kd.py's methods other than KD, compared with KD (paper), each at its own defaults; and those whose logits are
# (weak, strong) view pairs. Spelled out so that planning a grid needs no torch (tests/test_grid.py checks kd.py).
METHODS = ["dkd", "eakd", "ctkd", "lskd", "mlkd", "rld", "dist"]
TWO_VIEW_METHODS = {"mlkd"}
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
def spec(dataset, ft, baseline, size, durations=(), budgets=(), root="", scratch=200):
    """A dataset's grid entry: teacher fine-tuning epochs, the origination study's durations, the distillation
    budgets, the baseline budget, the epochs from scratch, and its folder under --data-root (image folders);
    size: (classes, train images, test images), for the dry-run's costs (training at 224 px, data.py)."""
    return dict(
        dataset=dataset,
        root=root,
        ft=ft,
        durations=list(durations),
        budgets=list(budgets),
        baseline=baseline,
        scratch=scratch,
        classes=size[0],
        train_images=size[1],
        test_images=size[2],
    )


# In steps at batch 64: Pets' 3,680 training images make 57 steps per epoch, so its longest budget (300 epochs) is
# about 17,100 steps; CIFAR-100's (120 epochs of 50,000 images) about 93,700. The lab's longest is 3,584 (lab-long).
DATASETS = {
    "pets": spec("pets", 20, 100, (37, 3680, 3669), durations=[5, 10, 20, 40], budgets=[25, 50, 100, 200, 300]),
    "cifar100": spec(
        "cifar100", 40, 40, (100, 50000, 10000), durations=[10, 20, 40, 80], budgets=[10, 20, 40, 80, 120]
    ),
    "cars": spec("cars", 20, 100, (196, 8144, 8041), budgets=[25, 50, 100, 200, 300]),
    "tiny-imagenet": spec("tiny-imagenet", 40, 40, (200, 100000, 10000), budgets=[10, 20, 40, 80, 120]),
    "imagenet-birds": spec("imagefolder", 20, 100, (52, 52 * 30, 52 * 20), root="imagenet-birds"),
    "finer-birds": spec("imagefolder", 20, 100, (52, 52 * 30, 52 * 20), root="finer-birds"),
}
PAPER_IMAGE_SIZE = 224  # every real dataset trains at 224 px (data.py)

# The dry-run's GPU-hours: ASSUMED training rates in images/s (forward + backward, bf16 autocast, channels_last) on
# one H100-class GPU, per image size and model. Unmeasured on a GPU (none was lent to this project): guesses of the
# order public benchmarks give, to plan an allocation; a teacher's forward pass alone (recording a tape) is taken
# as TEACHER_FORWARD_SPEEDUP times its training rate. Data loading and evaluation are not counted.
ASSUMED_TRAIN_RATES = {
    224: {
        "resnet18": 5000,
        "mobilenetv4_conv_medium": 3500,
        "convnext_pico": 3000,
        "mobilevitv2_150": 1200,
        "resnet50": 2000,
        "vit_small_patch16_224": 2500,
        "convnext_tiny": 1200,
        "regnety_064": 1000,
    },
}
TEACHER_FORWARD_SPEEDUP = 3
# Parameters (millions, timm's ImageNet-1k models): a checkpoint holds 4 bytes each, a run's ckpt.pt with AdamW 12
PARAMS_M = {
    "resnet18": 11.7,
    "mobilenetv4_conv_medium": 9.7,
    "convnext_pico": 9.1,
    "mobilevitv2_150": 10.6,
    "resnet50": 25.6,
    "vit_small_patch16_224": 22.1,
    "convnext_tiny": 28.6,
    "regnety_064": 30.6,
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
    T=[1, 2, 4, 8, 40],
    # A replicate unit is a seed: its own teachers (fine-tuned from the one shared pretraining, as the paper's
    # teachers share their ImageNet weights) and its own students. A replicate is 3 units; --replicates 2 adds 3.
    seeds=[0, 1, 2],
    teacher_per_seed=True,
    budgets=[16, 128],  # distillation epochs; the longest is every other study's budget
    controls=[("smooth-global", None), ("smooth-instance", None), ("bottomk", 1)],
    control_T=[40],
    studies=["config", "controls", "origination", "overlap"],
    method_T=[1, 4, 40],
    small_bs=16,  # lab-full only
    distill_args=["--amp"],  # bf16 autocast: accuracy parity with float32 in bench.py --parity
    findings=[1, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 17],  # the findings its runs test (tests/test_grid_findings.py)
)
# The SGD cross-over where it could happen: the lab's SGD sweep at 512 epochs (3,584 steps), 4x the lab's
# longest budget
LAB_LONG = dict(LAB, studies=LAB["studies"] + ["long"], long_budgets=[512])
LAB_FULL = dict(LAB_LONG, studies=LAB_LONG["studies"] + ["methods", "batch", "init", "granularity"],
                findings=list(range(1, 18)))  # fmt: skip
# The demo: the lab in miniature, under 10 minutes on 2 cores (a shorter pretraining, 3 temperatures, 2 budgets;
# the training configuration and the teacher origination, 3 seeds)
DEMO = dict(
    LAB,
    teacher_per_seed=False,  # one teacher of each kind: the demo's intervals hold the students' noise only
    synth=["src_train_per_class=100", "target_train_per_class=20", "test_per_class=100"],
    pretrain_epochs=4,
    long=16,
    scratch=40,
    T=[1, 4, 16],
    budgets=[16, 40],
    studies=["config", "origination"],
    findings=[1, 3, 4, 5, 6, 11, 12, 13, 14],
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
    controls=[("smooth-global", None)],  # the other two signals: tests/test_engine.py
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
        self.expected = []  # one dict per distillation run (analysis/table.py matches them)
        self.init_kinds = {"random": "random", "in1k": "in1k"}  # --student-init -> the analysis' name of it
        self.own_data = {}  # the study's data: name -> (data flags, the analysis' name of the dataset)
        self.trained = {}  # checkpoint path -> (data name, architecture, epochs)
        self.replicate = 0  # the replicate the next distillation runs belong to (expected.json)
        self.plan = {}  # distillation command -> what the dry-run's costs need (data, models, runs, epochs, tape)

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
        if name in self.own_data:
            return self.own_data[name][0]
        d = DATASETS.get(name)
        if d is None:  # a built-in synth-* view
            return ["--dataset", name] + (["--synth", *synth] if synth else [])
        root = str(Path(self.root) / d["root"]) if d["root"] else self.root
        return ["--dataset", d["dataset"], "--data-root", root]

    def train(self, stage, name, arch, init, epochs, out, synth=(), extra=()):
        """A teacher or student-initialisation checkpoint; returns its path."""
        path = self.out / out
        self.trained[path] = (name, arch, epochs)
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
        if tape is not None and method in TWO_VIEW_METHODS:  # its tape holds two views per batch
            tape = f"{tape}-2views"
        argv += (["--teacher-tape", tape] if tape is not None else []) + list(extra)
        argv += (["--baseline"] if baseline else []) + ["--T", *temps]
        runs = (1 if method == "ctkd" else len(temps)) + baseline
        known = len(self.stages["distill"])
        cmd = self.add("distill", argv, runs=runs, cost=runs * epochs, tape=tape)
        if len(self.stages["distill"]) == known:  # a command another study added already: its runs are listed
            return
        views = 2 if method in TWO_VIEW_METHODS else 1
        plan = dict(name=name, teacher=teacher, student=student, runs=runs, epochs=epochs, bs=bs, views=views)
        self.plan[cmd] = dict(plan, tape=tape)
        label = self.own_data[name][1] if name in self.own_data else self.data_args(name, synth)[1]
        run = dict(
            dataset=label,
            teacher=Path(str(teacher)).stem,
            student=student,
            student_init=self.init_kinds.get(str(init), str(init)),
            method=method,
            signal=signal,
            k=k,
            opt=opt,
            bs=bs,
            epochs=epochs,
            seed=seed,
            synth=dict(s.split("=", 1) for s in synth) or None,
            replicate=self.replicate,
        )
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


def tape_path(g, teacher, seed, bs=64):
    """The teacher tape of a teacher, seed and batch size (Grid.distill gives two-view methods their own)."""
    return g.out / "tapes" / f"{Path(teacher).stem}-s{seed}-bs{bs}"


def study_methods(g, names=BASELINE_DATASETS):
    g.part = "methods (Fig. 1)"
    for name in names:
        for t in TEACHERS:
            teacher = teacher_path(g, name, t)
            for s in STUDENTS:
                for seed in SEEDS:
                    for method in ["kd"] + METHODS:
                        epochs, tape = DATASETS[name]["baseline"], tape_path(g, teacher, seed)
                        g.distill(name, teacher, s, T_GRID, seed=seed, epochs=epochs, method=method, tape=tape)


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
                                tape = tape_path(g, teacher, seed, bs)
                                g.distill(name, teacher, s, T_GRID, seed=seed, opt=opt, bs=bs, epochs=epochs, tape=tape)
                    g.part = "controls (Fig. 5)"
                    for signal, k in CONTROLS if controls else []:
                        epochs, tape = DATASETS[name]["baseline"], tape_path(g, teacher, seed)
                        g.distill(name, teacher, s, T_GRID, seed=seed, epochs=epochs, signal=signal, k=k, tape=tape)


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
                    epochs, tape = DATASETS[name]["baseline"], tape_path(g, teacher, seed)
                    g.distill(name, teacher, s, T_GRID, seed=seed, epochs=epochs, tape=tape)


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
                        tape = tape_path(g, teacher, seed)
                        g.distill(
                            name, teacher, s, T_GRID, seed=seed, epochs=d["baseline"], init=inits[init], tape=tape
                        )


def study_granularity(g):
    study_config(g, names=["cars", "tiny-imagenet"], controls=False, part="granularity: Cars, Tiny ImageNet (Fig. 6)")
    g.part = "granularity: ImageNet-Birds vs Finer-Grained Birds (Fig. 7)"
    for name in ["imagenet-birds", "finer-birds"]:
        for t in TEACHERS:
            teacher = teacher_path(g, name, t)
            for s in STUDENTS:
                for seed in SEEDS:
                    epochs, tape = DATASETS[name]["baseline"], tape_path(g, teacher, seed)
                    g.distill(name, teacher, s, T_GRID, seed=seed, epochs=epochs, tape=tape)


# ---------------------------------------------------------------------------------------------
# The study on the built-in data: the lab, lab-full, the demo


def eval_last_quarter(epochs):
    """Evaluate three times in the last quarter of the budget (where convergence is read) and at the end."""
    every = max(1, epochs // 8)
    return ["--eval-every", every, "--eval-from", max(0, epochs - 2 * every)]


def builtin(g, c, replicates=1):
    """Every study in c["studies"] on synth-* (teachers fine-tuned from one synth-src pretraining). Each seed is a
    replicate unit with its own teachers when c["teacher_per_seed"]; replicate r runs c["seeds"] shifted by r x n."""
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

    def teachers(t):
        """The teachers of teacher seed t (the shared ones when t is None): {role: checkpoint path}."""
        tag, seed = ("", []) if t is None else (f"-t{t}", ["--seed", t])

        def fine_tune(dataset, epochs):  # the synth-src teacher fine-tuned on `dataset`
            name = f"teachers/{dataset}-ft{epochs}{tag}.pt"
            return train("teachers", dataset, c["teacher"], src, epochs, name, c["ft_args"] + seed)

        out = {"brief": fine_tune("synth-fine", c["brief"])}
        if "origination" in studies:  # from random weights, so it trains beside the pretraining (stage 1)
            name = f"teachers/synth-fine-scratch{tag}.pt"
            out["scratch"] = train("pretrain", "synth-fine", c["teacher"], "random", c["scratch"], name,
                                   c["scratch_args"] + seed)  # fmt: skip
        if "origination" in studies or "overlap" in studies:
            out["long"] = fine_tune("synth-fine", c["long"])
        if "overlap" in studies:
            # Fig. 7 compares teachers fine-tuned equally long; briefly fine-tuned, the novel teacher is worse than
            # a student trained on labels alone (its pretraining never told the sub-variants apart): both "long"
            out["novel"] = fine_tune("synth-novel", c["long"])
        if "granularity" in studies:
            out["coarse"] = fine_tune("synth-coarse", c["brief"])
        return out

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

    shared = None if c.get("teacher_per_seed", True) else teachers(None)
    n = len(c["seeds"])
    for replicate in range(replicates):
        for seed in [s + replicate * n for s in c["seeds"]]:
            g.replicate = replicate
            one_unit(g, c, seed, shared or teachers(seed), inits if "init" in studies else {})


def one_unit(g, c, seed, t, inits):
    """The distillation commands of one replicate unit (seed) with its teachers `t`."""
    syn, studies, longest, brief = c["synth"], c["studies"], max(c["budgets"]), t["brief"]

    def run(part, view, teacher, temps=c["T"], bs=64, seed=seed, **kw):  # a lockstep sweep; a tape per teacher
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
                run("training configuration (Figs. 2-3)", "synth-fine", brief, opt=opt, epochs=epochs, baseline=True)
    if "controls" in studies:  # Fig. 5: smoothing with matched entropy and bottom-k vs the teacher
        for signal, k in c["controls"]:
            run("controls (Fig. 5)", "synth-fine", brief, c["control_T"], epochs=longest, signal=signal, k=k)
    if "origination" in studies:  # Table 1: long fine-tuned and from-scratch teachers
        for teacher in (t["long"], t["scratch"]):
            run("teacher origination (Table 1)", "synth-fine", teacher, epochs=longest)
    if "overlap" in studies:  # Fig. 7: fine classes absent from the pretraining labels
        run("overlapping vs novel classes (Fig. 7)", "synth-novel", t["novel"], epochs=longest)
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
        run("dataset granularity (Fig. 6)", "synth-coarse", t["coarse"], epochs=longest, baseline=True)


# ---------------------------------------------------------------------------------------------
# Your own lab: the lab's protocol on your data and teacher (bash run_all.sh study ...)

STUDY = dict(LAB, student="resnet18", teacher_arch="resnet18d", budgets=LAB["budgets"], seeds=3,
             findings=[1, 3, 4, 5, 6, 8], source_findings=[11, 12, 13, 14])  # fmt: skip


def study_student(dataset):
    """The study's default student: the lab's on the built-in data, the paper's ResNet-18 on images of your own."""
    return LAB["student"] if str(dataset).startswith("synth-") else STUDY["student"]


def own_data_flags(dataset, data_root, image_size=None, synth=()):
    """The data flags of the study's commands, and the name the analysis gives the data (a folder's name)."""
    flags = ["--dataset", dataset] + (["--data-root", data_root] if data_root else [])
    flags += (["--image-size", image_size] if image_size else []) + (["--synth", *synth] if synth else [])
    label = Path(data_root).resolve().name if dataset == "imagefolder" else dataset
    return flags, label


def study(g, o):
    """The lab's protocol on one dataset: a teacher (given, or made: from scratch, or pretrained on --source then
    fine-tuned briefly and long), the lab's temperatures, both optimizers, the budgets and seeds, a labels-only
    student in every setting, one tape per teacher and seed; with --source also the origination study."""
    c = dict(STUDY, student=study_student(o.dataset))
    c.update({k: v for k, v in vars(o).items() if v is not None and k in STUDY})
    g.own_data["target"] = own_data_flags(o.dataset, o.data_root, o.image_size, o.synth)
    name = g.own_data["target"][1]

    def train(stage, data, init, epochs, out, extra):
        return g.train(stage, data, c["teacher_arch"], init, epochs, out, extra=extra)

    g.part = "teachers"
    brief, long_, scratch = o.teacher, None, None
    if o.teacher is None:
        brief = scratch = train(
            "pretrain", "target", "random", c["scratch"], f"teachers/{name}-scratch.pt", c["scratch_args"]
        )
    if o.teacher is None and o.source is not None:
        g.own_data["source"] = own_data_flags(o.source_dataset, o.source, o.image_size)
        src = train("pretrain", "source", "random", c["pretrain_epochs"], "pretrained/source.pt", c["pretrain_args"])
        brief, long_ = (
            train("teachers", "target", src, e, f"teachers/{name}-ft{e}.pt", c["ft_args"])
            for e in (c["brief"], c["long"])
        )
    settings = [("training configuration (Figs. 2-3)", brief, opt, e, True) for opt in OPTIMIZERS for e in c["budgets"]]
    if long_ is not None:
        settings += [("teacher origination (Table 1)", t, "adamw", max(c["budgets"]), False) for t in (long_, scratch)]
    for seed in range(c["seeds"]):
        for part, teacher, opt, epochs, baseline in settings:
            g.part = part
            tape = g.out / "tapes" / f"{Path(teacher).stem}-s{seed}-bs64"
            extra = c["distill_args"] + eval_last_quarter(epochs)
            g.distill(
                "target",
                teacher,
                c["student"],
                c["T"],
                seed=seed,
                opt=opt,
                epochs=epochs,
                tape=tape,
                extra=extra,
                baseline=baseline,
            )


# ---------------------------------------------------------------------------------------------
# The paper grid's cost, for the dry-run: GPU-hours at ASSUMED_TRAIN_RATES, the disk of its tapes and checkpoints


def train_rate(arch):
    return ASSUMED_TRAIN_RATES[PAPER_IMAGE_SIZE][arch]


def can_cost(g):
    """Whether every command's data and models have an entry above (the paper's grid, not the built-in data's)."""
    names = {n for n, _, _ in g.trained.values()} | {p["name"] for p in g.plan.values()}
    archs = {a for _, a, _ in g.trained.values()} | {p["student"] for p in g.plan.values()}
    return bool(g.plan) and names <= set(DATASETS) and archs <= set(ASSUMED_TRAIN_RATES[PAPER_IMAGE_SIZE])


def teacher_passes(g):
    """The teacher forward passes of the grid: one per tape (its longest command's epochs; shorter budgets replay a
    prefix), or one per command without a tape; each with its data, teacher architecture, batch size and views."""
    passes = {}
    for cmd, p in g.plan.items():
        arch = g.trained[Path(p["teacher"])][1]
        t = dict(name=p["name"], arch=arch, bs=p["bs"], views=p["views"], taped=p["tape"] is not None, epochs=0)
        t = passes.setdefault(p["tape"] or cmd, t)
        t["epochs"] = max(t["epochs"], p["epochs"])
    return passes


def gpu_hours(g):
    """(distillation, teachers) GPU-hours: every student's and trained checkpoint's training images at its model's
    rate, and the teacher forward passes (teacher_passes) at TEACHER_FORWARD_SPEEDUP times the teacher's."""
    images = {name: d["train_images"] for name, d in DATASETS.items()}
    students = sum(p["runs"] * p["epochs"] * images[p["name"]] / train_rate(p["student"]) for p in g.plan.values())
    forward = sum(
        t["epochs"] * t["views"] * images[t["name"]] / (TEACHER_FORWARD_SPEEDUP * train_rate(t["arch"]))
        for t in teacher_passes(g).values()
    )
    teachers = sum(epochs * images[name] / train_rate(arch) for name, arch, epochs in g.trained.values())
    return (students + forward) / 3600, teachers / 3600


def tape_bytes(t):
    """A tape's float32 logits: every full batch of every epoch and view, and the evaluation logits (train + test)."""
    d = DATASETS[t["name"]]
    logits = t["epochs"] * (d["train_images"] // t["bs"] * t["bs"]) * t["views"] + d["train_images"] + d["test_images"]
    return logits * d["classes"] * 4


def disk_bytes(g):
    """(tapes, kept checkpoints, the largest distillation command's checkpoints while it runs) in bytes: float32
    weights; a run's ckpt.pt also holds AdamW's two moments and is deleted when the run finishes."""
    tapes = sum(tape_bytes(t) for t in teacher_passes(g).values() if t["taped"])
    kept = sum(PARAMS_M[arch] * 1e6 * 4 for _, arch, _ in g.trained.values())
    running = max(p["runs"] * PARAMS_M[p["student"]] * 1e6 * 12 for p in g.plan.values())
    return tapes, kept, running


def size_text(n):
    return f"{n / 1e12:,.1f} TB" if n >= 1e12 else f"{n / 1e9:,.1f} GB"


def cost_lines(g):
    distill, teachers = gpu_hours(g)
    tapes, kept, running = disk_bytes(g)
    n_tapes = sum(t["taped"] for t in teacher_passes(g).values())
    return [
        f"GPU-hours: {distill + teachers:,.0f} ({distill:,.0f} distillation, {teachers:,.0f} teachers and student "
        f"initializations) on one H100-class GPU at grid.ASSUMED_TRAIN_RATES (assumed, unmeasured on a GPU; "
        f"data loading and evaluation not counted)",
        f"disk: {size_text(tapes)} of teacher tapes ({n_tapes}), {size_text(kept)} of teacher and student checkpoints, "
        f"and up to {size_text(running)} per running distillation command (its runs' ckpt.pt, deleted as each ends)",
    ]


def build(preset, python, out, data_root, extra, options=None, replicates=1):
    g = Grid(python, out, data_root, extra)
    if preset == "study":
        study(g, options)
    elif preset in BUILTIN:
        builtin(g, BUILTIN[preset], replicates)
    else:
        paper = {"methods": study_methods, "config": study_config, "origination": study_origination,
                 "init": study_init, "granularity": study_granularity}  # fmt: skip
        for s in STUDIES if preset == "paper" else [preset]:
            paper[s](g)
    return g


def check_study(o):
    """Every check of the study's flags and files before anything is written: ValueError (one line) for bad
    input; returns (class count, train images, test images, notes)."""
    import cli
    import data
    import kd
    import models

    if o.dataset not in data.DATASETS:
        raise ValueError(f"--dataset: unknown dataset '{o.dataset}' (expected one of {', '.join(data.DATASETS)})")
    if o.teacher is not None and o.source is not None:
        raise ValueError("--source: pretrains a teacher the study makes; it cannot be given with --teacher")
    for flag, values, low, high in (
        ("--budgets", o.budgets, 1, None),
        ("--seeds", [o.seeds], 1, 100),
        ("--T", o.T, kd.T_RANGE[0], kd.T_RANGE[1]),
        ("--image-size", [o.image_size], 8, 4096),
        ("--max-hours", [o.max_hours], 0, None),
    ):
        for v in values or []:
            if v is not None:
                cli.check_range(flag, v, low, high, integer=flag in ("--budgets", "--seeds", "--image-size"))
    for arch, flag in ((o.student, "--student"), (o.teacher_arch, "--teacher-arch")):
        if arch is not None and not models.is_known_arch(arch):
            raise ValueError(f"{flag}: unknown timm architecture '{arch}'")
    notes = []
    if o.dataset == "imagefolder":
        counts = data.imagefolder_counts(o.data_root)  # DatasetError: one line naming the missing split or class
        classes, n_train, n_test = counts["classes"], sum(counts["train"]), sum(counts["test"])
        single = [c for c, n in zip(classes, counts["train"]) if n == 1]
        notes += (
            [f"note: {len(single)} class(es) with a single training image ({', '.join(single[:5])})"] if single else []
        )
        untested = [c for c, n in zip(classes, counts["test"]) if n == 0]
        notes += [f"note: class(es) without test images: {', '.join(untested[:5])}"] if untested else []
        if o.source is not None:
            data.imagefolder_counts(o.source)
    else:
        synth = cli.parse_key_values(o.synth, "--synth")
        data.check_synth_args(o.dataset, synth)
        train = data.load_split(o.dataset, "train", o.data_root, synth=synth)
        classes, n_train, n_test = (
            train.classes,
            len(train),
            len(data.load_split(o.dataset, "test", o.data_root, synth=synth)),
        )
    if o.teacher is not None:
        ckpt = models.load_checkpoint(o.teacher)
        if ckpt["num_classes"] != len(classes):
            raise ValueError(
                f"--teacher: '{o.teacher}' has {ckpt['num_classes']} classes, the data {len(classes)} ({o.data_root})"
            )
        if ckpt["classes"] != list(classes):
            notes.append("note: --teacher names other classes than the data; its outputs are matched by index")
        trained_at = models.trained_image_size(ckpt)
        if trained_at is not None and trained_at != (o.image_size or data.aug_config_for(o.dataset).image_size):
            notes.append(f"note: the teacher was trained at {trained_at} px (--image-size chooses the study's)")
    return len(classes), n_train, n_test, notes


def estimate_study_seconds(dataset, data_root, teacher, student, image_size, synth, budgets, seeds, device, jobs):
    """(runs, wall seconds) of `bash run_all.sh study` with these options on `jobs` workers of `device`."""
    o = study_options(
        dataset=dataset,
        data_root=data_root,
        teacher=teacher,
        student=student,
        image_size=image_size,
        synth=list(synth or []),
        budgets=budgets,
        seeds=seeds,
    )
    classes, n_train, n_test, _ = check_study(o)
    g = build("study", "python", "out", data_root, [], o)
    return sum(g.stages["distill"].values()), study_seconds(g, o, classes, n_train, n_test, device, jobs)


def study_seconds(g, o, classes, n_train, n_test, device, jobs):
    """Wall seconds of the study grid `g` (options `o`) on `jobs` workers of `device`, from step rates measured
    here (estimate.py) with the study's student, teacher architecture and resolution."""
    import estimate

    student = o.student or study_student(o.dataset)
    teacher_arch = o.teacher_arch or STUDY["teacher_arch"]
    size = o.image_size or data_image_size(o.dataset)
    return estimate.estimate_seconds(g, classes, n_train, n_test, student, teacher_arch, size, device, jobs)


def data_image_size(dataset):
    import data

    return data.aug_config_for(dataset).image_size


def study_options(**given):
    """The study's options (argparse.Namespace) with every one not given set to None (the preset's default)."""
    keys = [
        "dataset",
        "data_root",
        "teacher",
        "source",
        "source_dataset",
        "student",
        "teacher_arch",
        "image_size",
        "synth",
        "budgets",
        "seeds",
        "T",
        "max_hours",
    ]
    o = argparse.Namespace(**{k: None for k in keys})
    o.dataset, o.source_dataset, o.synth = "imagefolder", "imagefolder", []
    for k, v in given.items():
        setattr(o, k, v)
    return o


def add_study_args(p):
    g = p.add_argument_group("the study preset (your own lab): bash run_all.sh study --data-root DIR [--teacher CKPT]")
    g.add_argument(
        "--dataset", default="imagefolder", help="the data: imagefolder (--data-root DIR) or a named dataset"
    )
    g.add_argument("--teacher", default=None, help="teacher checkpoint (train_teacher.py); without it, one is made")
    g.add_argument(
        "--source",
        default=None,
        help="a larger related image folder: the made teacher is pretrained "
        "there, then fine-tuned briefly and long (the origination study too)",
    )
    g.add_argument("--source-dataset", default="imagefolder", help="the --source's dataset kind")
    g.add_argument("--student", default=None, help="student architecture (default resnet18; test_resnet on synth-*)")
    g.add_argument(
        "--teacher-arch", default=None, help=f"architecture of a made teacher (default {STUDY['teacher_arch']})"
    )
    g.add_argument("--image-size", type=int, default=None, help="resolution (default: the dataset's, 224 for folders)")
    g.add_argument("--synth", nargs="*", default=[], metavar="KEY=VALUE", help="sizes of a built-in synth-* dataset")
    g.add_argument("--budgets", type=int, nargs="+", default=None, help=f"epochs (default {STUDY['budgets']})")
    g.add_argument("--seeds", type=int, default=None, help=f"seeds per setting (default {STUDY['seeds']})")
    g.add_argument("--T", type=float, nargs="+", default=None, help=f"temperatures (default {STUDY['T']})")
    g.add_argument("--max-hours", type=float, default=None, help="refuse a study estimated to take longer")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "preset",
        help="lab, lab-long, lab-full, demo, demo-tiny (tests), study, paper, or one study: " + ", ".join(STUDIES),
    )
    p.add_argument("--out", default="results", help="results folder (manifests go to <out>/manifest/)")
    p.add_argument("--data-root", default="data", help="folder holding the real datasets (study: the image folder)")
    p.add_argument("--python", default="python", help="python interpreter written into the commands")
    p.add_argument("--extra", default="", help="flags appended to every training command, e.g. '--amp --workers 8'")
    p.add_argument("--dry-run", action="store_true", help="print runs per stage and the first commands; write nothing")
    p.add_argument("--jobs", type=int, default=None, help="study: workers the estimate assumes (default: run_all.sh's)")
    p.add_argument("--replicates", type=int, default=1, help="built-in presets: independent replicates of the seeds")
    add_study_args(p)
    args = p.parse_args(argv)
    if args.replicates < 1 or (args.replicates > 1 and args.preset not in BUILTIN):
        print("grid.py: error: --replicates: expected a positive integer, with a built-in preset", file=sys.stderr)
        return 2
    if args.preset not in [*BUILTIN, "study", "paper", *STUDIES]:
        presets = ", ".join([*BUILTIN, "study", "paper", *STUDIES])
        print(f"grid.py: error: unknown preset '{args.preset}' (expected {presets})", file=sys.stderr)
        return 2
    study_flags = [
        k
        for k in ("teacher", "source", "student", "teacher_arch", "image_size", "budgets", "seeds", "T", "max_hours")
        if getattr(args, k) is not None
    ]
    if args.preset != "study" and study_flags:
        print(f"grid.py: error: --{study_flags[0].replace('_', '-')}: only for the study preset", file=sys.stderr)
        return 2
    if args.preset == "study":
        try:
            classes, n_train, n_test, notes = check_study(args)
        except ValueError as e:  # DatasetError and CheckpointError too
            print(f"grid.py: error: {e}", file=sys.stderr)
            return 2
        for line in notes:
            print(f"grid.py: {line}", file=sys.stderr)
    g = build(args.preset, args.python, args.out, args.data_root, shlex.split(args.extra), args, args.replicates)
    if args.preset == "study" and (args.dry_run or args.max_hours is not None):
        import torch

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        jobs = args.jobs or (torch.cuda.device_count() if device.type == "cuda" else os.cpu_count() or 1)
        seconds = study_seconds(g, args, classes, n_train, n_test, device, jobs)
        runs = sum(g.stages["distill"].values())
        print(
            f"study: {runs} distillation runs, estimated {seconds / 3600:.1f} h on {jobs} {device.type} worker(s) "
            f"(step rates measured here; a rough figure)"
        )
        if args.max_hours is not None and seconds > args.max_hours * 3600:
            print(
                f"grid.py: error: --budgets: the study is estimated at {seconds / 3600:.1f} h, over --max-hours "
                f"{args.max_hours:g}; shorten --budgets or use fewer --seeds",
                file=sys.stderr,
            )
            return 2
    for part, cmds in g.parts.items():
        print(f"{part}: {sum(cmds.values())} distillation runs in {len(cmds)} commands")
    for stage, cmds in g.stages.items():
        print(f"{stage}: {len(cmds)} commands, {sum(cmds.values())} runs")
        if stage == "distill" and args.dry_run and can_cost(g):
            print("\n".join(cost_lines(g)))
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
