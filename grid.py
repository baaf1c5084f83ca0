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
# kd.py's methods (kd.METHODS' names), KD first: the others are compared with it (paper), each at its own defaults;
# and those whose logits are (weak, strong) view pairs. Spelled out so that planning a grid needs no torch
# (tests/test_grid.py checks them against kd.py).
METHODS = ["kd", "dkd", "eakd", "ctkd", "lskd", "mlkd", "rld", "dist"]
TWO_VIEW_METHODS = {"mlkd"}
# the control signals (paper), bottom-k with k values (default)
CONTROLS = [("smooth-global", None), ("smooth-instance", None), ("bottomk", 1), ("bottomk", 2), ("bottomk", 5)]
OPTIMIZERS = ["adamw", "sgd"]  # (paper)
BATCH_SIZES = [64, 256]  # (paper); baseline 64 (default)
INITS = ["random", "tt", "in1k", "ft"]  # student initializations (paper)
SCRATCH_EPOCHS = 200  # teachers and target-trained (TT) students from random weights (default)


def paper_dataset(ft, baseline, size, budgets=(), durations=(), folder=False):
    """A dataset's grid entry: teacher fine-tuning epochs, the baseline distillation budget, the five budgets, the
    origination study's fine-tuning durations, whether it is an image folder (<data-root>/<name>); size: (classes,
    train images, test images), for the dry-run's costs (training at 224 px, data.py)."""
    return dict(ft=ft, baseline=baseline, budgets=list(budgets), durations=list(durations), folder=folder,
                classes=size[0], train_images=size[1], test_images=size[2])  # fmt: skip


# Teacher fine-tuning epochs: Pets 20, CIFAR-100 40 (paper), the rest (default); the budgets and durations
# (default). In steps at batch 64: Pets' 3,680 training images make 57 steps per epoch, so its longest budget (300
# epochs) is about 17,100 steps; CIFAR-100's (120 epochs of 50,000 images) about 93,700; the lab's (lab-long) 3,584.
PAPER_DATASETS = {
    "pets": paper_dataset(20, 100, (37, 3680, 3669), [25, 50, 100, 200, 300], durations=[5, 10, 20, 40]),
    "cifar100": paper_dataset(40, 40, (100, 50000, 10000), [10, 20, 40, 80, 120], durations=[10, 20, 40, 80]),
    "cars": paper_dataset(20, 100, (196, 8144, 8041), [25, 50, 100, 200, 300]),
    "tiny-imagenet": paper_dataset(40, 40, (200, 100000, 10000), [10, 20, 40, 80, 120]),
    "imagenet-birds": paper_dataset(20, 100, (52, 52 * 30, 52 * 20), folder=True),
    "finer-birds": paper_dataset(20, 100, (52, 52 * 30, 52 * 20), folder=True),
}
BASELINE_DATASETS = ["pets", "cifar100"]
# The five studies and the datasets each runs on (paper)
STUDIES = {study: BASELINE_DATASETS for study in ("methods", "config", "origination", "init")}
STUDIES["granularity"] = ["cars", "tiny-imagenet", "imagenet-birds", "finer-birds"]

# The dry-run's GPU-hours: ASSUMED training rates in images/s at 224 px (forward + backward, bf16 autocast,
# channels_last) on one H100-class GPU. Unmeasured on a GPU (none was lent to this project): guesses of the order
# public benchmarks give, to plan an allocation; a teacher's forward pass alone (recording a tape) is taken as
# TEACHER_FORWARD_SPEEDUP times its training rate. Data loading and evaluation are not counted.
ASSUMED_TRAIN_RATES = {"resnet18": 5000, "mobilenetv4_conv_medium": 3500, "convnext_pico": 3000,
                       "mobilevitv2_150": 1200, "resnet50": 2000, "vit_small_patch16_224": 2500,
                       "convnext_tiny": 1200, "regnety_064": 1000}  # fmt: skip
TEACHER_FORWARD_SPEEDUP = 3
# Parameters (millions, timm's ImageNet-1k models): a checkpoint holds 4 bytes each, a run's ckpt.pt with AdamW 12
PARAMS_M = {"resnet18": 11.7, "mobilenetv4_conv_medium": 9.7, "convnext_pico": 9.1, "mobilevitv2_150": 10.6,
            "resnet50": 25.6, "vit_small_patch16_224": 22.1, "convnext_tiny": 28.6, "regnety_064": 30.6}  # fmt: skip

# ---------------------------------------------------------------------------------------------
# The built-in data (synth-*): the study on a CPU. The paper's "ImageNet-1k pretraining" is a
# pretraining on synth-src; docs/LAB.md gives the measured properties these values were chosen by
# (teacher accuracies, labels-only students, convergence, time), all fixed before any temperature
# was compared.

LAB = dict(
    # 48 source classes x 200 images; targets of 24 classes, scarce (20 train images per class, as the
    # paper's bird sets have 30) so that a student trained on labels alone is far below the teacher
    synth=["src_train_per_class=200", "target_train_per_class=20", "test_per_class=300"],
    teacher="resnet18d",  # deep stem: resnet18's 7x7/2 stem is too coarse at 32 px
    student="test_resnet",  # timm's 0.4M-parameter ResNet: converges within the budget (resnet10t does not)
    pretrain_epochs=6,
    pretrain_args=["--randaug-n", "0", "--mixup-alpha", "0", "--cutmix-alpha", "0", "--lr", "2e-3"],  # no mixing
    brief=4, long=32, ft_args=["--lr", "1e-3"],  # teacher fine-tuning, brief and long (1:8, as 5:40)
    scratch=100, scratch_args=["--lr", "2e-3"],  # a teacher trained from random weights
    T=[1, 2, 4, 8, 40],
    # A replicate unit is a seed: its own teachers (fine-tuned from the one shared pretraining, as the paper's
    # teachers share their ImageNet weights) and its own students. A replicate is 3 units; --replicates 2 adds 3.
    seeds=[0, 1, 2], teacher_per_seed=True,
    budgets=[16, 128],  # distillation epochs; the longest is every other study's budget
    controls=[("smooth-global", None), ("smooth-instance", None), ("bottomk", 1)], control_T=[40],
    studies=["config", "controls", "origination", "overlap"],
    method_T=[1, 4, 40], small_bs=16,  # lab-full only
    distill_args=["--amp"],  # bf16 autocast: accuracy parity with float32 in bench.py --parity
    findings=[1, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 17],  # the findings its runs test (tests/test_grid_findings.py)
)  # fmt: skip
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
    pretrain_epochs=4, long=16, scratch=40, T=[1, 4, 16], budgets=[16, 40],
    studies=["config", "origination"],
    findings=[1, 3, 4, 5, 6, 11, 12, 13, 14],
)  # fmt: skip
DEMO_TINY = dict(
    DEMO,
    synth=["groups=4", "classes_per_group=2", "fine_groups=2", "novel_groups=2", "novel_classes_per_group=2",
           "coarse_classes_per_group=2", "src_train_per_class=8", "target_train_per_class=32", "test_per_class=4"],
    pretrain_epochs=1, brief=1, long=2, scratch=2, T=[1, 4], seeds=[0], budgets=[1, 2],
    controls=[("smooth-global", None)],  # the other two signals: tests/test_engine.py
    control_T=[4],
    studies=LAB["studies"],
    distill_args=["--allow-weak-teacher"],  # its toy teachers are near chance by design
)  # fmt: skip
BUILTIN = {"lab": LAB, "lab-long": LAB_LONG, "lab-full": LAB_FULL, "demo": DEMO, "demo-tiny": DEMO_TINY}
# Your own lab (bash run_all.sh study ...): the lab's protocol on your data and teacher; --student, --teacher-arch,
# --budgets, --seeds (a count) and --T replace these
STUDY = dict(LAB, student="resnet18", teacher_arch="resnet18d", findings=[1, 3, 4, 5, 6, 8],
             source_findings=[11, 12, 13, 14])  # fmt: skip

# ---------------------------------------------------------------------------------------------
# How a preset becomes commands: each preset yields its distillation settings, one dict per lockstep command
# (training the teachers they need on the way), and build() adds them to a Grid


class Grid:
    """Collects commands per stage, without duplicates, and counts the runs each command makes; lists every
    distillation run it expects (expected.json, in the analysis' terms)."""

    def __init__(self, python, out, data_root, extra):
        self.python, self.out, self.root, self.extra = python, Path(out), data_root, extra
        self.stages = {s: {} for s in ("pretrain", "teachers", "distill")}  # stage -> {command: runs}
        self.parts = {}  # part of the study -> {command: runs}, for the dry-run breakdown
        self.cost, self.tape_of = {}, {}  # command -> student-epochs; command -> its teacher tape
        self.plan = {}  # distillation command -> what the dry-run's costs need (data, models, runs, epochs, tape)
        self.expected = []  # one dict per distillation run (analysis/table.py matches them)
        self.trained = {}  # checkpoint path -> (data name, architecture, epochs)
        self.init_kinds = {}  # a --student-init checkpoint -> the analysis' name of it
        self.own_data = {}  # the study's data: name -> (data flags, the analysis' name of the dataset)

    def add(self, stage, argv, runs=1, cost=0, tape=None):
        cmd = " ".join(shlex.quote(str(a)) for a in [self.python] + argv + self.extra)
        self.stages[stage][cmd] = runs
        self.cost[cmd], self.tape_of[cmd] = cost, tape
        return cmd

    def data_args(self, name, synth=()):
        if name in self.own_data:
            return self.own_data[name][0]
        if name not in PAPER_DATASETS:  # a built-in synth-* view
            return ["--dataset", name] + (["--synth", *synth] if synth else [])
        if PAPER_DATASETS[name]["folder"]:
            return ["--dataset", "imagefolder", "--data-root", str(Path(self.root) / name)]
        return ["--dataset", name, "--data-root", self.root]

    def train(self, stage, name, arch, init, epochs, out, synth=(), extra=()):
        """A teacher or student-initialisation checkpoint; returns its path."""
        path = self.out / out
        self.trained[path] = (name, arch, epochs)
        argv = ["train_teacher.py", *self.data_args(name, synth), "--arch", arch, "--init", init, "--epochs", epochs]
        self.add(stage, [*argv, *extra, "--out", path])
        return path

    def distill(self, part, name, teacher, student, temps, *, seed, epochs, opt="adamw", bs=64, init="random",
                method="kd", signal="teacher", k=None, baseline=False, synth=(), extra=(), replicate=0):  # fmt: skip
        """One lockstep command: a student per temperature (+ one on labels alone with baseline=True), replaying
        the teacher from the tape of its teacher, seed, batch size (and views)."""
        tape = f"{self.out / 'tapes' / Path(teacher).stem}-s{seed}-bs{bs}"
        views = 2 if method in TWO_VIEW_METHODS else 1
        tape += "-2views" if views == 2 else ""  # its tape holds two views per batch
        argv = ["distill.py", *self.data_args(name, synth), "--teacher", teacher, "--student", student]
        argv += ["--student-init", init, "--method", method]
        argv += ["--signal", signal] + (["--k", k] if k is not None else []) if signal != "teacher" else []
        argv += ["--opt", opt, "--bs", bs, "--epochs", epochs, "--seed", seed, "--out", self.out / "runs"]
        argv += ["--teacher-tape", tape, *extra] + (["--baseline"] if baseline else []) + ["--T", *temps]
        runs = (1 if method == "ctkd" else len(temps)) + baseline
        known = len(self.stages["distill"])
        cmd = self.add("distill", argv, runs=runs, cost=runs * epochs, tape=tape)
        self.parts.setdefault(part, {})[cmd] = runs
        if len(self.stages["distill"]) == known:  # a command another study added already: its runs are listed
            return
        self.plan[cmd] = dict(name=name, teacher=teacher, student=student, runs=runs, epochs=epochs, bs=bs,
                              views=views, tape=tape)  # fmt: skip
        run = dict(dataset=self.own_data[name][1] if name in self.own_data else name, teacher=Path(str(teacher)).stem,
                   student=student, student_init=self.init_kinds.get(str(init), str(init)), method=method,
                   signal=signal, k=k, opt=opt, bs=bs, epochs=epochs, seed=seed,
                   synth=dict(s.split("=", 1) for s in synth) or None, replicate=replicate)  # fmt: skip
        self.expected += [dict(run, T=T) for T in ([None] if method == "ctkd" else [float(T) for T in temps])]
        if baseline:
            self.expected.append(dict(run, teacher=None, method="labels", signal=None, k=None, T=None))


def build(preset, python, out, data_root, extra, options=None, replicates=1):
    """A preset's Grid: every distillation setting it yields, added in order."""
    g = Grid(python, out, data_root, extra)
    if preset == "study":
        settings = study_settings(g, options)
    elif preset in BUILTIN:
        settings = lab_settings(g, BUILTIN[preset], replicates)
    else:
        settings = paper_settings(g, list(STUDIES) if preset == "paper" else [preset])
    for s in settings:
        g.distill(**s)
    return g


def paper_teacher(g, name, arch, epochs=None, scratch=False):
    """A teacher of the paper: timm's ImageNet-1k weights fine-tuned (the dataset's epochs unless given), or
    trained from random weights; returns its checkpoint."""
    if scratch:
        return g.train("teachers", name, arch, "random", SCRATCH_EPOCHS, f"teachers/{name}-{arch}-scratch.pt")
    epochs = epochs or PAPER_DATASETS[name]["ft"]
    return g.train("teachers", name, arch, "in1k", epochs, f"teachers/{name}-{arch}-ft{epochs}.pt")


def paper_units(g, study, name):
    """One paper study on one dataset as (teacher, student, [(part, settings)]) units in the grid's order, each
    run at every seed; trains the teachers (and the initialization study's students) they need."""
    d = PAPER_DATASETS[name]
    base = dict(epochs=d["baseline"])
    if study == "init":  # Table 2: each student from random weights, timm's (IN1K), TT and FT
        units = []
        for s in STUDENTS + EXTRA_STUDENTS:
            tt = g.train("teachers", name, s, "random", SCRATCH_EPOCHS, f"students/{name}-{s}-tt.pt")
            ft = g.train("teachers", name, s, "in1k", d["ft"], f"students/{name}-{s}-ft.pt")
            g.init_kinds.update({str(tt): "TT", str(ft): "FT"})
            inits = {"random": "random", "tt": tt, "in1k": "in1k", "ft": ft}
            settings = [("student initialization (Table 2)", dict(base, init=inits[i])) for i in INITS]
            units += [(paper_teacher(g, name, t), s, settings) for t in TEACHERS]
        return units
    if study == "origination":  # Table 1: 4 teachers x 4 fine-tuning durations, and 3 CNNs from scratch
        teachers = [paper_teacher(g, name, t, epochs=e) for t in TEACHERS + EXTRA_TEACHERS for e in d["durations"]]
        teachers += [paper_teacher(g, name, t, scratch=True) for t in SCRATCH_TEACHERS]
        settings = [("teacher origination (Table 1)", base)]
    elif study == "methods":  # Fig. 1
        teachers = [paper_teacher(g, name, t) for t in TEACHERS]
        settings = [("methods (Fig. 1)", dict(base, method=m)) for m in METHODS]
    elif not d["folder"]:  # Figs. 2-3 (and Fig. 6 on Cars and Tiny ImageNet): optimizer x batch size x budget
        teachers = [paper_teacher(g, name, t) for t in TEACHERS]
        fig6 = "granularity: Cars, Tiny ImageNet (Fig. 6)"
        part = "training configuration (Figs. 2-3)" if study == "config" else fig6
        settings = [(part, dict(opt=o, bs=b, epochs=e)) for o in OPTIMIZERS for b in BATCH_SIZES for e in d["budgets"]]
        if study == "config":
            settings += [("controls (Fig. 5)", dict(base, signal=s, k=k)) for s, k in CONTROLS]
    else:  # Fig. 7: the bird sets (image folders)
        teachers = [paper_teacher(g, name, t) for t in TEACHERS]
        settings = [("granularity: ImageNet-Birds vs Finer-Grained Birds (Fig. 7)", base)]
    return [(t, s, settings) for t in teachers for s in STUDENTS]


def paper_settings(g, studies):
    """The paper's distillation settings: per study, its datasets, (teacher, student) units, seeds and settings."""
    for study in studies:
        for name in STUDIES[study]:
            for teacher, student, settings in paper_units(g, study, name):
                for seed in SEEDS:
                    for part, s in settings:
                        yield dict(s, part=part, name=name, teacher=teacher, student=student, temps=T_GRID, seed=seed)


def eval_last_quarter(epochs):
    """Evaluate three times in the last quarter of the budget (where convergence is read) and at the end."""
    every = max(1, epochs // 8)
    return ["--eval-every", every, "--eval-from", max(0, epochs - 2 * every)]


def unit_settings(c, t, inits, seed, target="synth-fine", synth=(), replicate=0):
    """The distillation settings of one replicate unit (a seed) with its teachers t ({role: checkpoint}): each
    study of c["studies"] in the lab's order, on the `target` data."""
    T, budgets, longest, brief, studies = c["T"], c["budgets"], max(c["budgets"]), t["brief"], c["studies"]
    rows = []  # (part, data, teacher, temperatures, settings)
    if "config" in studies:  # Figs. 2-3: optimizer x budget x T, each with its labels-only student
        config = [dict(opt=o, epochs=e, baseline=True) for o in OPTIMIZERS for e in budgets]
        rows += [("training configuration (Figs. 2-3)", target, brief, T, s) for s in config]
    if "controls" in studies:  # Fig. 5: smoothing with matched entropy and bottom-k vs the teacher
        controls = [dict(epochs=longest, signal=signal, k=k) for signal, k in c["controls"]]
        rows += [("controls (Fig. 5)", target, brief, c["control_T"], s) for s in controls]
    if "origination" in studies:  # Table 1: long fine-tuned and from-scratch teachers
        rows += [("teacher origination (Table 1)", target, t[r], T, dict(epochs=longest)) for r in ("long", "scratch")]
    if "overlap" in studies:  # Fig. 7: fine classes absent from the pretraining labels
        rows.append(("overlapping vs novel classes (Fig. 7)", "synth-novel", t["novel"], T, dict(epochs=longest)))
    if "long" in studies:  # Fig. 3 at budgets long enough to see whether SGD's shrinking gap crosses
        halves = [T[: len(T) // 2], T[len(T) // 2 :]]  # two halves: a balanced pool
        rows += [("long SGD training (Fig. 3)", target, brief, h, dict(opt="sgd", epochs=e, baseline=i == 0))
                 for e in c["long_budgets"] for i, h in enumerate(halves)]  # fmt: skip
    if "methods" in studies:  # Fig. 1: the other KD methods, each at its own defaults, with both optimizers
        others = [dict(epochs=longest, method=m, opt=o) for o in OPTIMIZERS for m in METHODS if m != "kd"]
        rows += [("methods (Fig. 1)", target, brief, c["method_T"], s) for s in others]  # "consistently": > 1 setting
    if "batch" in studies:  # the batch-size shift of the SGD cross-over, with a smaller batch
        batch = [dict(opt="sgd", bs=c["small_bs"], epochs=e, baseline=True) for e in budgets]
        rows += [("batch size (Fig. 2)", target, brief, T, s) for s in batch]
    if "init" in studies:  # Table 2: student initialisations
        rows += [("student initialization (Table 2)", target, brief, T, dict(epochs=longest, init=i, baseline=True))
                 for i in inits]  # fmt: skip
    if "granularity" in studies:  # Fig. 6: coarse-grained target
        rows += [("dataset granularity (Fig. 6)", "synth-coarse", t["coarse"], T, dict(epochs=longest, baseline=True))]
    for part, name, teacher, temps, s in rows:
        extra = c["distill_args"] + eval_last_quarter(s["epochs"])
        yield dict(s, part=part, name=name, teacher=teacher, student=c["student"], temps=temps, seed=seed,
                   synth=synth, extra=extra, replicate=replicate)  # fmt: skip


def lab_settings(g, c, replicates=1):
    """Every study in c["studies"] on synth-* (teachers fine-tuned from one synth-src pretraining). Each seed is a
    replicate unit with its own teachers when c["teacher_per_seed"]; replicate r runs c["seeds"] shifted by r x n."""
    studies = c["studies"]

    def train(stage, view, init, epochs, out, extra, arch=c["teacher"]):
        return g.train(stage, view, arch, init, epochs, out, c["synth"], extra)

    src = train("pretrain", "synth-src", "random", c["pretrain_epochs"], "pretrained/synth-src-teacher.pt",
                c["pretrain_args"])  # fmt: skip

    def teachers(t):
        """The teachers of teacher seed t (the shared ones when t is None): {role: checkpoint path}."""
        tag, seed = ("", []) if t is None else (f"-t{t}", ["--seed", t])

        def fine_tune(view, epochs):  # the synth-src teacher fine-tuned on `view`
            return train("teachers", view, src, epochs, f"teachers/{view}-ft{epochs}{tag}.pt", c["ft_args"] + seed)

        out = {"brief": fine_tune("synth-fine", c["brief"])}
        if "origination" in studies:  # from random weights, so it trains beside the pretraining (stage 1)
            scratch = f"teachers/synth-fine-scratch{tag}.pt"
            out["scratch"] = train("pretrain", "synth-fine", "random", c["scratch"], scratch, c["scratch_args"] + seed)
        if "origination" in studies or "overlap" in studies:
            out["long"] = fine_tune("synth-fine", c["long"])
        if "overlap" in studies:
            # Fig. 7 compares teachers fine-tuned equally long; briefly fine-tuned, the novel teacher is worse than
            # a student trained on labels alone (its pretraining never told the sub-variants apart): both "long"
            out["novel"] = fine_tune("synth-novel", c["long"])
        if "granularity" in studies:
            out["coarse"] = fine_tune("synth-coarse", c["brief"])
        return out

    inits = {}
    if "init" in studies:  # Table 2: a student pretrained on synth-src ("IN1K"), then fine-tuned ("FT"); "TT"
        pretrained = train("pretrain", "synth-src", "random", c["pretrain_epochs"], "pretrained/synth-src-student.pt",
                           c["pretrain_args"], c["student"])  # fmt: skip
        tt = train("pretrain", "synth-fine", "random", max(c["budgets"]), "students/synth-fine-tt.pt",
                   c["scratch_args"], c["student"])  # fmt: skip
        ft = train("teachers", "synth-fine", pretrained, c["brief"], "students/synth-fine-ft.pt", c["ft_args"],
                   c["student"])  # fmt: skip
        inits = {"TT": tt, "IN1K": pretrained, "FT": ft}
        g.init_kinds.update({str(tt): "TT", str(pretrained): "pretrained", str(ft): "FT"})
    shared = None if c["teacher_per_seed"] else teachers(None)
    n = len(c["seeds"])
    for replicate in range(replicates):
        for seed in [s + replicate * n for s in c["seeds"]]:
            t = shared or teachers(seed)
            yield from unit_settings(c, t, inits.values(), seed, synth=c["synth"], replicate=replicate)


def study_config(o):
    """The study preset's values: STUDY with the options given (o: grid.py's parsed flags, or study_options())."""
    c = dict(STUDY, student=LAB["student"] if str(o.dataset).startswith("synth-") else STUDY["student"])
    c.update({k: getattr(o, k) for k in ("student", "teacher_arch", "budgets", "T") if getattr(o, k) is not None})
    return dict(c, seeds=list(range(o.seeds)) if o.seeds is not None else c["seeds"])


def own_data_flags(dataset, data_root, image_size=None, synth=()):
    """The data flags of the study's commands, and the name the analysis gives the data (a folder's name)."""
    flags = ["--dataset", dataset] + (["--data-root", data_root] if data_root else [])
    flags += (["--image-size", image_size] if image_size else []) + (["--synth", *synth] if synth else [])
    return flags, Path(data_root).resolve().name if dataset == "imagefolder" else dataset


def study_settings(g, o):
    """The lab's protocol on one dataset: a teacher (given, or made: from scratch, or pretrained on --source then
    fine-tuned briefly and long), the lab's temperatures, both optimizers, the budgets and seeds, a labels-only
    student in every setting, one tape per teacher and seed; with --source also the origination study."""
    c = study_config(o)
    g.own_data["target"] = own_data_flags(o.dataset, o.data_root, o.image_size, o.synth)
    name = g.own_data["target"][1]

    def train(stage, data, init, epochs, out, extra):
        return g.train(stage, data, c["teacher_arch"], init, epochs, out, extra=extra)

    t = {"brief": o.teacher}
    if o.teacher is None:
        t["brief"] = t["scratch"] = train("pretrain", "target", "random", c["scratch"], f"teachers/{name}-scratch.pt",
                                          c["scratch_args"])  # fmt: skip
    if o.teacher is None and o.source is not None:
        g.own_data["source"] = own_data_flags(o.source_dataset, o.source, o.image_size)
        src = train("pretrain", "source", "random", c["pretrain_epochs"], "pretrained/source.pt", c["pretrain_args"])
        for role in ("brief", "long"):
            t[role] = train("teachers", "target", src, c[role], f"teachers/{name}-ft{c[role]}.pt", c["ft_args"])
    c["studies"] = ["config", "origination"] if "long" in t else ["config"]
    for seed in c["seeds"]:
        yield from unit_settings(c, t, [], seed, target="target")


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
    for flag, values, low, high in (("--budgets", o.budgets, 1, None), ("--seeds", [o.seeds], 1, 100),
                                    ("--T", o.T, *kd.T_RANGE), ("--image-size", [o.image_size], 8, 4096),
                                    ("--max-hours", [o.max_hours], 0, None)):  # fmt: skip
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
        if single:
            notes.append(f"note: {len(single)} class(es) with a single training image ({', '.join(single[:5])})")
        untested = [c for c, n in zip(classes, counts["test"]) if n == 0]
        if untested:
            notes.append(f"note: class(es) without test images: {', '.join(untested[:5])}")
        if o.source is not None:
            data.imagefolder_counts(o.source)
    else:
        synth = cli.parse_key_values(o.synth, "--synth")
        data.check_synth_args(o.dataset, synth)
        train = data.load_split(o.dataset, "train", o.data_root, synth=synth)
        classes, n_train = train.classes, len(train)
        n_test = len(data.load_split(o.dataset, "test", o.data_root, synth=synth))
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


# ---------------------------------------------------------------------------------------------
# Scheduling: the order a stage's manifest runs in; the paper grid's cost for the dry-run (GPU-hours at
# ASSUMED_TRAIN_RATES, the disk of its tapes and checkpoints)


def ordered(g, stage):
    """The stage's commands, longest first (so the pool's last minutes are not one long command alone);
    among equally long ones, commands of different teacher tapes alternate (each tape is recorded once)."""
    seen, rank = {}, {}  # rank: its tape's commands before it (train commands, tape None: their place in the stage)
    for cmd in g.stages[stage]:
        rank[cmd] = seen[g.tape_of[cmd]] = seen.get(g.tape_of[cmd], -1) + 1
    return sorted(g.stages[stage], key=lambda c: (-g.cost[c], rank[c]))


def teacher_passes(g):
    """The teacher forward passes of the grid: one per tape (its longest command's epochs; shorter budgets replay a
    prefix), each with its data, teacher architecture, batch size and views."""
    passes = {}
    for p in g.plan.values():
        arch = g.trained[Path(p["teacher"])][1]
        t = passes.setdefault(p["tape"], dict(name=p["name"], arch=arch, bs=p["bs"], views=p["views"], epochs=0))
        t["epochs"] = max(t["epochs"], p["epochs"])
    return passes


def gpu_hours(g):
    """(distillation, teachers) GPU-hours: every student's and trained checkpoint's training images at its model's
    rate, and the teacher forward passes (teacher_passes) at TEACHER_FORWARD_SPEEDUP times the teacher's."""
    images = {name: d["train_images"] for name, d in PAPER_DATASETS.items()}
    rate = ASSUMED_TRAIN_RATES
    students = sum(p["runs"] * p["epochs"] * images[p["name"]] / rate[p["student"]] for p in g.plan.values())
    forward = sum(t["epochs"] * t["views"] * images[t["name"]] / (TEACHER_FORWARD_SPEEDUP * rate[t["arch"]])
                  for t in teacher_passes(g).values())  # fmt: skip
    teachers = sum(epochs * images[name] / rate[arch] for name, arch, epochs in g.trained.values())
    return (students + forward) / 3600, teachers / 3600


def disk_bytes(g):
    """(tapes, kept checkpoints, the largest distillation command's checkpoints while it runs) in bytes. A tape
    holds float32 logits of every full batch of every epoch and view, and the evaluation logits (train + test);
    checkpoints hold float32 weights, a run's ckpt.pt also AdamW's two moments (deleted when the run finishes)."""
    tapes = 0
    for t in teacher_passes(g).values():
        d = PAPER_DATASETS[t["name"]]
        full_batches = d["train_images"] // t["bs"] * t["bs"]
        tapes += (t["epochs"] * full_batches * t["views"] + d["train_images"] + d["test_images"]) * d["classes"] * 4
    kept = sum(PARAMS_M[arch] * 1e6 * 4 for _, arch, _ in g.trained.values())
    running = max(p["runs"] * PARAMS_M[p["student"]] * 1e6 * 12 for p in g.plan.values())
    return tapes, kept, running


def size_text(n):
    return f"{n / 1e12:,.1f} TB" if n >= 1e12 else f"{n / 1e9:,.1f} GB"


def cost_lines(g):
    distill, teachers = gpu_hours(g)
    tapes, kept, running = disk_bytes(g)
    return [
        f"GPU-hours: {distill + teachers:,.0f} ({distill:,.0f} distillation, {teachers:,.0f} teachers and student "
        f"initializations) on one H100-class GPU at grid.ASSUMED_TRAIN_RATES (assumed, unmeasured on a GPU; "
        f"data loading and evaluation not counted)",
        f"disk: {size_text(tapes)} of teacher tapes ({len(teacher_passes(g))}), {size_text(kept)} of teacher and "
        f"student checkpoints, and up to {size_text(running)} per running distillation command (its runs' ckpt.pt, "
        f"deleted as each ends)",
    ]


# ---------------------------------------------------------------------------------------------
# The command line


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("preset", help="lab, lab-long, lab-full, demo, demo-tiny (tests), study, paper, or one study: "
                   + ", ".join(STUDIES))  # fmt: skip
    p.add_argument("--out", default="results", help="results folder (manifests go to <out>/manifest/)")
    p.add_argument("--data-root", default="data", help="folder holding the real datasets (study: the image folder)")
    p.add_argument("--python", default="python", help="python interpreter written into the commands")
    p.add_argument("--extra", default="", help="flags appended to every training command, e.g. '--amp --workers 8'")
    p.add_argument("--dry-run", action="store_true", help="print runs per stage and the first commands; write nothing")
    p.add_argument("--jobs", type=int, default=None, help="study: workers the estimate assumes (default: run_all.sh's)")
    p.add_argument("--replicates", type=int, default=1, help="built-in presets: independent replicates of the seeds")
    g = p.add_argument_group("the study preset (your own lab): bash run_all.sh study --data-root DIR [--teacher CKPT]")
    g.add_argument("--dataset", default="imagefolder", help="the data: imagefolder (--data-root DIR) or a named "
                   "dataset")  # fmt: skip
    g.add_argument("--teacher", default=None, help="teacher checkpoint (train_teacher.py); without it, one is made")
    g.add_argument("--source", default=None, help="a larger related image folder: the made teacher is pretrained "
                   "there, then fine-tuned briefly and long (the origination study too)")  # fmt: skip
    g.add_argument("--source-dataset", default="imagefolder", help="the --source's dataset kind")
    g.add_argument("--student", default=None, help="student architecture (default resnet18; test_resnet on synth-*)")
    g.add_argument("--teacher-arch", default=None, help="architecture of a made teacher (default "
                   f"{STUDY['teacher_arch']})")  # fmt: skip
    g.add_argument("--image-size", type=int, default=None, help="resolution (default: the dataset's, 224 for folders)")
    g.add_argument("--synth", nargs="*", default=[], metavar="KEY=VALUE", help="sizes of a built-in synth-* dataset")
    g.add_argument("--budgets", type=int, nargs="+", default=None, help=f"epochs (default {STUDY['budgets']})")
    g.add_argument("--seeds", type=int, default=None, help=f"seeds per setting (default {len(STUDY['seeds'])})")
    g.add_argument("--T", type=float, nargs="+", default=None, help=f"temperatures (default {STUDY['T']})")
    g.add_argument("--max-hours", type=float, default=None, help="refuse a study estimated to take longer")
    return p


def study_options(**given):
    """The study's options (argparse.Namespace) as `grid.py study` parses them, with those given set."""
    return argparse.Namespace(**dict(vars(parser().parse_args(["study"])), **given))


def main(argv=None):
    args = parser().parse_args(argv)
    if args.replicates < 1 or (args.replicates > 1 and args.preset not in BUILTIN):
        print("grid.py: error: --replicates: expected a positive integer, with a built-in preset", file=sys.stderr)
        return 2
    if args.preset not in [*BUILTIN, "study", "paper", *STUDIES]:
        presets = ", ".join([*BUILTIN, "study", "paper", *STUDIES])
        print(f"grid.py: error: unknown preset '{args.preset}' (expected {presets})", file=sys.stderr)
        return 2
    study_only = ("teacher", "source", "student", "teacher_arch", "image_size", "budgets", "seeds", "T", "max_hours")
    given = [k for k in study_only if getattr(args, k) is not None]
    if args.preset != "study" and given:
        print(f"grid.py: error: --{given[0].replace('_', '-')}: only for the study preset", file=sys.stderr)
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

        import data
        import estimate

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        jobs = args.jobs or (torch.cuda.device_count() if device.type == "cuda" else os.cpu_count() or 1)
        c, size = study_config(args), args.image_size or data.aug_config_for(args.dataset).image_size
        seconds = estimate.estimate_seconds(
            g, classes, n_train, n_test, c["student"], c["teacher_arch"], size, device, jobs
        )
        runs = sum(g.stages["distill"].values())
        print(f"study: {runs} distillation runs, estimated {seconds / 3600:.1f} h on {jobs} {device.type} worker(s) "
              f"(step rates measured here; a rough figure)")  # fmt: skip
        if args.max_hours is not None and seconds > args.max_hours * 3600:
            print(f"grid.py: error: --budgets: the study is estimated at {seconds / 3600:.1f} h, over --max-hours "
                  f"{args.max_hours:g}; shorten --budgets or use fewer --seeds", file=sys.stderr)  # fmt: skip
            return 2
    for part, cmds in g.parts.items():
        print(f"{part}: {sum(cmds.values())} distillation runs in {len(cmds)} commands")
    for stage, cmds in g.stages.items():
        print(f"{stage}: {len(cmds)} commands, {sum(cmds.values())} runs")
        if stage == "distill" and args.dry_run and args.preset in ["paper", *STUDIES]:
            print("\n".join(cost_lines(g)))
        if args.dry_run:
            for cmd in list(cmds)[:3]:
                print(f"  {cmd}")
            continue
        atomic_write(g.out / "manifest" / f"{stage}.txt", "".join(c + "\n" for c in ordered(g, stage)))
    if not args.dry_run:
        atomic_write(g.out / "manifest" / "expected.json", json.dumps(g.expected, indent=0) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
