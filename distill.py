"""Distil a teacher checkpoint into a student: one run per temperature, trained in lockstep.

    python distill.py --T 40 --opt sgd                        # the study's baseline KD at T=40
    python distill.py --T 1 2 4 8 16 40 --baseline            # a sweep, plus a student trained on labels alone
    python distill.py --method dkd --T 4                      # another KD method at its paper's defaults
    python distill.py --signal bottomk --k 2 --T 20           # a control signal instead of the teacher's softmax

With several temperatures every student sees the identical batch stream and the teacher runs once
per batch; each temperature writes its own run folder under --out, exactly as a single run would:
<out>/<readable name>-<id>/{config.json, log.jsonl, ckpt.pt, result.json}. The id is a hash of
everything that changes the result, so re-running a command skips finished runs and resumes
interrupted ones.
"""

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

import cli
import data
import engine
import kd
import models
import runs
import tape

# Distillation epochs per dataset: Pets 100, CIFAR-100 40 (defaults; the paper's values were lost).
EPOCHS = {
    "pets": 100,
    "cifar100": 40,
    "cars": 100,
    "tiny-imagenet": 40,
    "imagefolder": 100,
    "synth-src": 10,
    "synth-fine": 10,
    "synth-coarse": 10,
    "synth-novel": 10,
}
# Baseline optimiser settings (defaults): AdamW lr 1e-3 wd 0.05; SGD momentum 0.9 lr 0.05 wd 5e-4.
OPT_DEFAULTS = {"adamw": (1e-3, 0.05), "sgd": (0.05, 5e-4)}
PROG = "distill.py"
BASELINE_LABEL_SMOOTHING = 0.1  # the --baseline student's objective: the teachers' (docs/STUDY.md)


def temperature(text):
    """argparse type of --T: a number in kd.T_RANGE, where every loss is finite and meaningful."""
    try:
        T = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (math.isfinite(T) and kd.T_RANGE[0] <= T <= kd.T_RANGE[1]):
        raise argparse.ArgumentTypeError(
            f"temperatures must be in [{kd.T_RANGE[0]:g}, {kd.T_RANGE[1]:g}] (where every loss is finite and "
            f"meaningful), got {text}"
        )
    return T


def get_args(argv=None):
    p = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    cli.add_data_args(p)
    g = p.add_argument_group("teacher and student")
    g.add_argument("--teacher", default="teachers/synth-fine.pt", help="teacher checkpoint made by train_teacher.py")
    g.add_argument(
        "--student",
        default="resnet10t",
        help="timm architecture of the student, e.g. resnet18, mobilenetv4_conv_medium",
    )
    g.add_argument(
        "--student-init",
        default="random",
        help="random, in1k (timm weights, pinned tag), or a checkpoint (TT/FT student)",
    )
    g.add_argument(
        "--pretrained-file", default=None, help="local timm weights file for --student-init in1k (offline clusters)"
    )
    g.add_argument(
        "--allow-weak-teacher", action="store_true", help="distil even if the teacher's test accuracy is near chance"
    )
    g = p.add_argument_group("distillation")
    g.add_argument(
        "--T",
        type=temperature,
        nargs="+",
        default=[4.0],
        help=f"temperature(s) in [{kd.T_RANGE[0]:g}, {kd.T_RANGE[1]:g}]; several train in lockstep, one run each",
    )
    g.add_argument("--method", default="kd", help=f"KD method: {', '.join(kd.METHODS)}")
    g.add_argument("--signal", default="teacher", help=f"soft target for --method kd: {', '.join(kd.SIGNALS)}")
    g.add_argument("--k", type=int, default=None, help="top-k kept in place by --signal bottomk")
    g.add_argument(
        "--smooth-entropy",
        default="dataset",
        choices=["dataset", "batch"],
        help="smooth-global matches the teacher's mean entropy over the train set or over each batch",
    )
    g.add_argument(
        "--ce-weight",
        type=float,
        default=None,
        help="weight of cross-entropy to labels (default: the method's own; 0 for kd)",
    )
    cli.add_key_values(g, "--hp", "other method hyperparameters, e.g. --hp beta=2 warmup=1 (docs/METHODS.md)")
    g.add_argument(
        "--baseline",
        action="store_true",
        help="also train, in lockstep, a student on labels alone (no teacher): the no-KD reference",
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--opt", default="adamw", help="adamw or sgd (momentum 0.9)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default: adamw 1e-3, sgd 0.05)")
    g.add_argument("--wd", type=float, default=None, help="weight decay (default: adamw 0.05, sgd 5e-4)")
    g.add_argument("--bs", type=int, default=64, help="batch size")
    g.add_argument(
        "--epochs", type=int, default=None, help="epochs (default per dataset: Pets 100, CIFAR-100 40, synth 10)"
    )
    g.add_argument("--warmup-epochs", type=float, default=0, help="linear learning-rate warmup before the cosine decay")
    g.add_argument("--clip", type=float, default=1.0, help="per-layer gradient-norm clip (0: off)")
    g.add_argument("--seed", type=int, default=0, help="seed of the student's initialisation and of the batch stream")
    g.add_argument("--out", default="runs", help="folder that holds one run folder per run")
    g.add_argument(
        "--teacher-tape", default=None, help="folder of recorded teacher logits: record on first use, replay after"
    )
    cli.add_runtime_args(p)
    return p.parse_args(argv)


@dataclass
class Plan:
    """Everything one command will do, decided before any training (make_plan): the resolved flags, the
    teacher, one loss per temperature, the data and each run's identity."""

    flags: argparse.Namespace  # the command's flags with every default resolved (epochs, lr, wd, image size, ...)
    teacher: dict  # the teacher checkpoint (models.load_checkpoint)
    losses: dict  # {T: kd.py loss module}, built once per temperature
    aug: data.AugConfig
    train: data.Split
    test: data.Split
    stream: data.TrainStream
    identities: dict  # {T (None: the --baseline student): what makes the run's result}


def make_plan(args):
    """Check every flag and file, then build the plan; ValueError (one line naming the flag or file) on bad input."""
    check_flags(args)
    teacher = models.load_checkpoint(args.teacher)  # CheckpointError names the file and the reason
    flags = resolve_defaults(args, teacher)
    losses = {T: build_objective_module(flags, T) for T in loss_temperatures(flags)}  # checks every hyperparameter
    two_views = next(iter(losses.values())).needs_two_views  # MLKD distils a second augmented view
    check_batch_size(flags, losses)
    check_teacher_use(flags, teacher)
    if flags.student_init not in ("random", "in1k"):
        init = models.load_checkpoint(flags.student_init)
        if init["arch"] != flags.student:
            raise ValueError(
                f"--student-init: checkpoint '{flags.student_init}' holds a '{init['arch']}', "
                f"not --student {flags.student}"
            )
    cli.check_writable(flags.out)
    if flags.teacher_tape is not None:
        cli.check_writable(flags.teacher_tape, "--teacher-tape")
    aug = cli.aug_config(flags)
    train, test, stream = cli.load_data(flags, aug, views=2 if two_views else 1, results=flags.out)
    if teacher["num_classes"] != len(train.classes):
        raise ValueError(
            f"--teacher: '{flags.teacher}' was trained on {teacher['num_classes']} classes "
            f"({teacher['dataset']}), but {flags.dataset} has {len(train.classes)}"
        )
    check_same_classes(flags, teacher["classes"], train.classes)
    plan = Plan(flags, teacher, losses, aug, train, test, stream, identities={})
    plan.identities = identities(plan)
    return plan


def check_flags(args):
    """The checks that need no file: names, combinations and ranges of the flags."""
    if args.dataset not in data.DATASETS:
        raise ValueError(f"--dataset: unknown dataset '{args.dataset}' (expected one of {', '.join(data.DATASETS)})")
    if args.method not in kd.METHODS:
        raise ValueError(f"--method: unknown method '{args.method}' (expected one of {', '.join(kd.METHODS)})")
    if args.signal not in kd.SIGNALS:
        raise ValueError(f"--signal: unknown signal '{args.signal}' (expected one of {', '.join(kd.SIGNALS)})")
    if args.signal != "teacher" and args.method != "kd":
        raise ValueError(f"--signal {args.signal}: control signals replace the target of --method kd only")
    if args.signal != "teacher" and (args.ce_weight is not None or args.hp):
        raise ValueError(f"--signal {args.signal}: a control is T^2 KL to its target alone; drop --ce-weight/--hp")
    if args.signal == "bottomk" and args.k is None:
        raise ValueError("--signal bottomk needs --k (how many of the teacher's top classes stay in place)")
    if args.opt not in OPT_DEFAULTS:
        raise ValueError(f"--opt: unknown optimizer '{args.opt}' (expected adamw or sgd)")
    if not models.is_known_arch(args.student):
        raise ValueError(f"--student: unknown timm architecture '{args.student}'")
    if len(set(args.T)) != len(args.T):
        raise ValueError(f"--T: repeated temperature in {args.T}")
    if args.method == "ctkd" and len(args.T) > 1:
        say(
            f"note: --method ctkd learns its temperature (--hp T_start, T_range): --T {' '.join(map(fmt_T, args.T))} "
            "trains one run"
        )
    for flag in ("epochs", "seed"):
        if getattr(args, flag) is not None:
            cli.check_range(f"--{flag}", getattr(args, flag), 0 if flag == "seed" else 1, 2**31 - 1, integer=True)
    for flag in ("lr", "wd", "clip", "warmup_epochs", "ce_weight"):
        if getattr(args, flag) is not None:
            cli.check_range(f"--{flag.replace('_', '-')}", getattr(args, flag), 0)
    if args.image_size is not None:
        cli.check_range("--image-size", args.image_size, 8, 4096, integer=True)
    cli.check_runtime_args(args)


def resolve_defaults(args, teacher):
    """A copy of the flags with the defaults that depend on other flags or on the teacher filled in: epochs,
    lr, wd, --hp and --synth parsed, the built-in data sizes and the resolution the teacher learned, device."""
    hp = cli.parse_key_values(args.hp, "--hp")
    for key, flag in (("T", "--T"), ("ce_weight", "--ce-weight")):
        if key in hp:
            raise ValueError(f"--hp {key}: set it with {flag} (a dedicated flag), not --hp")
    synth = cli.parse_key_values(args.synth, "--synth")
    data.check_synth_args(args.dataset, synth)
    recorded = teacher.get("args") or {}
    same_data = teacher["dataset"] == args.dataset
    if not synth and same_data and isinstance(recorded.get("synth"), dict):
        synth = recorded["synth"]  # the built-in data the teacher learned, unless --synth says otherwise
    trained_at, image_size = models.trained_image_size(teacher), args.image_size
    default_size = data.aug_config_for(args.dataset).image_size
    if image_size is None and trained_at is not None and same_data:
        image_size = trained_at  # the resolution the teacher learned
    elif image_size is not None and trained_at is not None and image_size != trained_at:
        say(f"note: --image-size {image_size}: the teacher was trained at {trained_at} px")
    elif image_size is None and trained_at is not None and default_size != trained_at:
        say(
            f"note: {args.dataset} runs at its default {default_size} px; the teacher was trained at {trained_at} px "
            f"on {teacher['dataset']} (--image-size chooses)"
        )
    lr, wd = OPT_DEFAULTS[args.opt]
    device = cli.resolve_device(args.device)
    size = image_size or default_size
    return argparse.Namespace(
        **{
            **vars(args),
            "epochs": EPOCHS.get(args.dataset, 100) if args.epochs is None else args.epochs,
            "lr": lr if args.lr is None else args.lr,
            "wd": wd if args.wd is None else args.wd,
            "hp": hp,
            "synth": synth,
            "image_size": image_size,
            "device": device,
            "amp": engine.amp_for(cli.resolve_amp(args.amp, device), device, args.student, size, say),
        }
    )


def loss_temperatures(flags):
    """The temperatures that get a student (CTKD learns its own: one run)."""
    return flags.T[:1] if flags.method == "ctkd" else flags.T


def check_batch_size(flags, losses):
    if flags.bs < 2:
        coupled = f", and {flags.method} is batch-coupled" if next(iter(losses.values())).batch_coupled else ""
        raise ValueError(f"--bs: must be >= 2 (MixUp/CutMix pair examples{coupled}), got {flags.bs}")


def check_teacher_use(flags, teacher):
    """--k must name a class of the teacher's."""
    if flags.signal == "bottomk" and not 0 <= flags.k < teacher["num_classes"]:
        raise ValueError(
            f"--k: must be in [0, {teacher['num_classes']}) for a {teacher['num_classes']}-class teacher, got {flags.k}"
        )


def build_objective_module(flags, T):
    """kd.build_loss for one temperature with the method's own defaults (CE included) and the user's overrides."""
    hp = dict(flags.hp)
    if flags.ce_weight is not None:
        hp["ce_weight"] = flags.ce_weight
    if flags.method != "ctkd":  # CTKD learns its temperature
        hp["T"] = T
    try:
        return kd.build_loss(flags.method, **hp)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--hp: {e}") from None


def make_objective(flags, loss_module, T, mean_entropy):
    """objective(logits, batch, teacher_logits, epoch, step) -> loss, for the engine."""
    if flags.signal == "teacher":

        def objective(logits, batch, t_logits, epoch, step):
            labels = batch["y_soft"] if loss_module.needs_labels else None
            return loss_module(logits, t_logits, labels=labels, epoch=epoch)

        return objective

    def control(logits, batch, t_logits, epoch, step):
        gen = torch.Generator(device=t_logits.device).manual_seed(engine.step_seed(flags.seed + 1, epoch, step))
        entropy = mean_entropy if flags.smooth_entropy == "dataset" else None
        target = kd.soft_targets(t_logits, T, signal=flags.signal, k=flags.k, generator=gen, mean_entropy=entropy)
        return kd.soft_target_loss(logits, target, T)

    return control


def labels_objective(logits, batch, t_logits, epoch, step):
    """The --baseline student's objective: the teachers' label-smoothed cross-entropy, no teacher."""
    return engine.label_smoothed_cross_entropy(logits, batch["y_soft"], BASELINE_LABEL_SMOOTHING)


def teacher_forward(model, norm, channels_last):
    """teacher(batch, xs, epoch, step) -> logits float32 (a tuple with two views); eval mode, no autograd."""
    model.eval()

    def forward(batch, xs, epoch, step):
        with torch.inference_mode():
            out = [model(models.model_input(x, *norm, channels_last)).float() for x in xs]
        out = [o.clone() for o in out]  # leave inference mode: the loss saves them for backward
        return tuple(out) if len(out) > 1 else out[0]

    return forward


def teacher_statistics(train_logits, T):
    """Train-set means of the teacher's relative entropies at T, and its mean sorted T-softmax (Fig. 4)."""
    h_rel, h_rest = kd.relative_entropies(train_logits, T)
    return {
        "T": T,
        "H_rel": h_rel.mean().item(),
        "H_rel_without_max": h_rest.mean().item(),
        "mean_entropy_nats": (h_rel.mean() * math.log(train_logits.shape[1])).item(),
        "mean_sorted_softmax": kd.mean_sorted_softmax(train_logits, T).tolist(),
    }


def wrong_class_mass(train_logits, split):
    """For data with a class hierarchy (synth-*): per relation (same coarse group, sibling), the train-set
    mean share of the teacher's wrong-class probability (T = 1) on related classes, and its chance level
    (a uniform tail). The dark knowledge a student can get: well above chance means structured."""
    out = {}
    for name, related in data.class_relations(split).items():
        share = kd.related_mass_share(train_logits, split.labels, related)
        chance = related[split.labels].sum(1).float() / (related.shape[0] - 1)
        out[name] = {"share": share.mean().item(), "chance": chance.mean().item()}
    return out


def fmt_T(T):
    return f"{T:g}"


def run_name(flags, T):
    if T is None:
        return f"{flags.student}-labels-{flags.opt}-bs{flags.bs}-e{flags.epochs}-s{flags.seed}"
    sig = "" if flags.signal == "teacher" else f"-{flags.signal}" + (f"{flags.k}" if flags.signal == "bottomk" else "")
    temp = "Tlearned" if flags.method == "ctkd" else f"T{T:g}"
    return f"{flags.student}-{flags.method}{sig}-{temp}-{flags.opt}-bs{flags.bs}-e{flags.epochs}-s{flags.seed}"


def identities(plan):
    """{T (None: the --baseline student): the run's identity}: everything that changes its result, never paths or
    worker counts. Hyperparameters enter only where they differ from the method's defaults (restating a default
    keeps the run id); T enters on its own."""
    f = plan.flags
    module = next(iter(plan.losses.values()))
    hp = {k: v for k, v in module.hparams.items() if k != "T" and v != module.HPARAMS[k][0]}
    common = {
        "kind": "distill",
        **cli.data_identity(f, plan.aug, plan.train),
        "student": f.student,
        "student_init": models.init_identity(f.student_init),
    }
    recipe = {
        "opt": f.opt,
        "lr": f.lr,
        "wd": f.wd,
        "bs": f.bs,
        "epochs": f.epochs,
        "warmup_epochs": f.warmup_epochs,
        "clip": f.clip,
        "seed": f.seed,
        "amp": f.amp,
    }
    kd_identity = {
        **common,
        "teacher_weights_sha1": models.weights_fingerprint(plan.teacher),
        "teacher_arch": plan.teacher["arch"],
        "method": f.method,
        "signal": f.signal,
        "k": f.k,
        "smooth_entropy": f.smooth_entropy if f.signal == "smooth-global" else None,
        "ce_weight": hp.pop("ce_weight", None),
        "hp": hp,
        **recipe,
    }
    out = {T: dict(kd_identity, T=None if f.method == "ctkd" else T) for T in plan.losses}
    if f.baseline:
        out[None] = {**common, "method": "labels", "label_smoothing": BASELINE_LABEL_SMOOTHING, **recipe}
    return out


def claim_runs(plan, claimed, failed):
    """{T: RunDir} of the runs with work left, each claimed (locked) by this process and added to `claimed`.
    Runs that failed before (unless --retry-failed) are said and added to `failed`: the others still train."""
    f, pending = plan.flags, {}
    for T, identity in plan.identities.items():
        run = runs.RunDir(Path(f.out) / f"{run_name(f, T)}-{runs.run_id(identity)}", identity)
        state, reason = run.state()
        if state == "failed" and not f.retry_failed:
            say(f"run '{run.path}' failed ({reason}); pass --retry-failed to start it again from scratch")
            failed.append(run)
        elif run.claim(f.retry_failed, log=say):
            claimed.append(run)
            pending[T] = run
        else:
            say(f"already done: {run.path}")
    return pending


@dataclass
class Lockstep:
    """What engine.train needs: the members (one per pending run), the teacher and the test set."""

    members: list
    teacher: object  # teacher(batch, xs, epoch, step) -> logits: the live teacher, or its tape
    test: tuple  # (uint8 images, labels, the teacher's test predictions)
    recipe: engine.Recipe
    common: dict  # written into every result.json


def build_lockstep(plan, pending):
    """The teacher measured once (test accuracy, train-set statistics), then one member per pending run."""
    f, ckpt = plan.flags, plan.teacher
    teacher = models.model_from_checkpoint(ckpt, f.teacher).to(f.device)
    t_channels_last = engine.channels_last_for(f.channels_last, teacher, f.device)
    if t_channels_last:
        teacher.to(memory_format=torch.channels_last)
    t_norm = models.checkpoint_normalization(ckpt)
    forward = teacher_forward(teacher, t_norm, t_channels_last)
    test_images = data.EvalImages(plan.test, plan.aug)

    def measure_teacher():  # its logits on the test and the train images, under the evaluation transform
        images = (test_images, data.EvalImages(plan.train, plan.aug))  # a batch at a time: bounded memory
        return [models.predict(teacher, x, t_norm, f.device, amp=f.amp, channels_last=t_channels_last) for x in images]

    if f.teacher_tape and any(T is not None for T in pending):  # the tape records the teacher once for every run
        identity = next(identity for T, identity in plan.identities.items() if T is not None)
        forward = tape.TeacherTape(f.teacher_tape, forward, key=tape.tape_key(identity, plan.stream), log=say)
        t_test, t_train = forward.eval_logits(measure_teacher)
    else:
        t_test, t_train = measure_teacher()
    if not torch.isfinite(t_test).all():  # else every student would "diverge" and be recorded as failed
        raise ValueError(
            f"--teacher: '{f.teacher}' outputs non-finite logits (NaN/inf weights?) on {f.dataset} test images"
        )
    t_acc = engine.accuracy(t_test, plan.test.labels)
    chance = 100.0 / ckpt["num_classes"]
    say(f"teacher {f.teacher} ({ckpt['arch']}): test top-1 {t_acc['top1']:.2f}% (chance {chance:.1f}%)")
    if t_acc["top1"] < 2 * chance and not f.allow_weak_teacher:
        raise ValueError(
            f"--teacher: '{f.teacher}' is near chance on {f.dataset} test ({t_acc['top1']:.1f}% "
            f"vs chance {chance:.1f}%); pass --allow-weak-teacher to distil anyway"
        )
    t_related = wrong_class_mass(t_train, plan.train)

    members = []
    for T, run in pending.items():
        torch.manual_seed(f.seed)  # every temperature's student starts from the same weights
        student, origination = models.create_model(
            f.student, len(plan.train.classes), f.student_init, f.pretrained_file, data=plan.identities[T]
        )
        run.start(runtime={k: str(v) for k, v in vars(f).items()})
        extra = {"T": None if f.method == "ctkd" else T, "student_origination": origination}
        loss_module = plan.losses.get(T)
        if T is None:
            objective, extra["teacher"] = labels_objective, None
        else:
            stats = teacher_statistics(t_train, T if f.method != "ctkd" else 1.0)
            objective = make_objective(f, loss_module, T, stats["mean_entropy_nats"])
            extra["teacher"] = {
                "path": str(f.teacher),
                "arch": ckpt["arch"],
                **t_acc,
                "dataset": ckpt["dataset"],
                "origination": ckpt["origination"],
                "recipe": ckpt.get("args"),  # how it was trained (train_teacher.py's identity): its seed included
                "statistics": stats,
                "wrong_class_mass": t_related,
            }
        learns = loss_module is not None and any(True for _ in loss_module.parameters())
        members.append(
            engine.Member(
                name=run_name(f, T),
                run=run,
                model=student,
                objective=objective,
                norm=models.normalization(student),
                result_extra=extra,
                objective_module=loss_module if learns else None,
                measure_agreement=T is not None,
            )
        )
    temps = ", ".join("labels only" if T is None else f"T={T:g}" for T in pending)
    ce = next(iter(plan.losses.values())).ce_weight
    say(
        f"{len(members)} student(s) {f.student} ({f.method}, CE weight {ce:g}: {temps}) on {f.dataset}: "
        f"{len(plan.train)} train images, {f.epochs} epochs, {plan.stream.steps_per_epoch} steps/epoch, {f.device}"
    )
    common = {
        "kind": "distill",
        **runs.provenance(f.device),
        "seed": f.seed,
        "num_classes": len(plan.train.classes),
        "train_images": len(plan.train),
        "steps_per_epoch": plan.stream.steps_per_epoch,
    }
    recipe = engine.recipe_from_args(f, members[0].model)
    return Lockstep(members, forward, (test_images, plan.test.labels, t_test.argmax(1)), recipe, common)


def check_same_classes(flags, teacher_classes, classes):
    """A note unless the teacher's class names (in order) are the dataset's: a teacher of other classes with
    the same count is distilled by class index, which is only right if the names merely differ."""
    differ = next((i for i, (a, b) in enumerate(zip(teacher_classes, classes)) if a != b), None)
    if differ is not None:
        say(
            f"note: --teacher: '{flags.teacher}' names other classes than {flags.dataset} (class {differ}: "
            f"'{teacher_classes[differ]}' vs '{classes[differ]}'); its outputs are matched to the labels by index"
        )


def main(argv=None):
    args = get_args(argv)
    claimed, failed = [], []
    try:
        plan = make_plan(args)
        pending = claim_runs(plan, claimed, failed)
        job = build_lockstep(plan, pending) if pending else None
    except (ValueError, OSError, KeyboardInterrupt) as e:
        for run in claimed:  # leave nothing behind
            run.abandon()
        if isinstance(e, KeyboardInterrupt):  # Ctrl-C before training: nothing to save
            say("SIGINT before training started: nothing was trained; run the same command again")
            sys.exit(cli.EXIT_PREEMPTED)
        cli.fail(PROG, e)
    if job is None:
        return cli.EXIT_FAILED if failed else 0
    try:
        results = engine.train(
            job.members, plan.stream, job.test, job.recipe, teacher=job.teacher, common_result=job.common, log=print_err
        )
    except runs.RunError as e:  # a run folder that cannot be resumed
        cli.fail(PROG, e)
    except OSError as e:  # e.g. a full disk while saving a checkpoint
        cli.stop_on_os_error(PROG, e)
    if isinstance(job.teacher, tape.TeacherTape):
        say(
            f"teacher tape {args.teacher_tape}: {job.teacher.replayed_steps} steps replayed, "
            f"{job.teacher.recorded_steps} computed"
        )
    for r in results:
        say(f"{r['run_id']}: final top-1 {r['final']['top1']:.2f}% (best {r['best']['top1']:.2f}%)")
    return 0 if len(results) == len(job.members) and not failed else cli.EXIT_FAILED


def say(line):
    """A line on stderr, prefixed with the script's name."""
    print(f"{PROG}: {line}", file=sys.stderr)


def print_err(line):
    print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
