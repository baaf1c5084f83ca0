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

import math
import sys
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


def get_args(argv=None):
    p = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        type=float,
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


def validate(args):
    """Check every flag and file before any work starts; ValueError with a one-line message. Returns the
    teacher checkpoint; sets the defaults that depend on other flags (epochs, lr, wd, image size)."""
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
    if args.opt not in OPT_DEFAULTS:
        raise ValueError(f"--opt: unknown optimizer '{args.opt}' (expected adamw or sgd)")
    if not models.is_known_arch(args.student):
        raise ValueError(f"--student: unknown timm architecture '{args.student}'")
    if args.method == "ctkd" and len(args.T) > 1:
        print(
            f"{PROG}: note: --method ctkd learns its temperature (--hp T_start, T_range): --T "
            f"{' '.join(f'{T:g}' for T in args.T)} trains one run",
            file=sys.stderr,
        )
    for T in args.T:
        if not (math.isfinite(T) and kd.T_RANGE[0] <= T <= kd.T_RANGE[1]):
            raise ValueError(
                f"--T: temperatures must be in [{kd.T_RANGE[0]:g}, {kd.T_RANGE[1]:g}] (where every "
                f"loss is finite and meaningful), got {T:g}"
            )
    if len(set(args.T)) != len(args.T):
        raise ValueError(f"--T: repeated temperature in {args.T}")
    args.epochs = EPOCHS.get(args.dataset, 100) if args.epochs is None else args.epochs
    lr, wd = OPT_DEFAULTS[args.opt]
    args.lr = lr if args.lr is None else args.lr
    args.wd = wd if args.wd is None else args.wd
    cli.check_range("--epochs", args.epochs, 1, None, integer=True)
    cli.check_range("--seed", args.seed, 0, 2**31 - 1, integer=True)
    for flag in ("lr", "wd", "clip", "warmup_epochs"):
        cli.check_range(f"--{flag.replace('_', '-')}", getattr(args, flag), 0)
    if args.ce_weight is not None:
        cli.check_range("--ce-weight", args.ce_weight, 0)
    cli.check_runtime_args(args)
    args.hp = cli.parse_key_values(args.hp, "--hp")
    for key, flag in (("T", "--T"), ("ce_weight", "--ce-weight")):
        if key in args.hp:
            raise ValueError(f"--hp {key}: set it with {flag} (a dedicated flag), not --hp")
    args.synth = cli.parse_key_values(args.synth, "--synth")
    data.check_synth_args(args.dataset, args.synth)
    losses = {T: build_objective_module(args, T) for T in args.T}  # every hyperparameter is checked here
    first = losses[args.T[0]]
    args.views = 2 if first.needs_two_views else 1  # MLKD distils a second augmented view
    if args.bs < 2:
        coupled = f", and {args.method} is batch-coupled" if first.batch_coupled else ""
        raise ValueError(f"--bs: must be >= 2 (MixUp/CutMix pair examples{coupled}), got {args.bs}")
    teacher = models.load_checkpoint(args.teacher)  # CheckpointError names the file and the reason
    recorded = teacher.get("args") or {}
    if not args.synth and teacher["dataset"] == args.dataset and isinstance(recorded.get("synth"), dict):
        args.synth = recorded["synth"]  # the built-in data the teacher learned, unless --synth says otherwise
    if args.image_size is not None:  # before the note below, which would talk about a bad value
        cli.check_range("--image-size", args.image_size, 8, 4096, integer=True)
    trained_at = models.trained_image_size(teacher)
    if args.image_size is None and trained_at is not None and teacher["dataset"] == args.dataset:
        args.image_size = trained_at  # the resolution the teacher learned
    elif args.image_size is not None and trained_at is not None and args.image_size != trained_at:
        print(
            f"{PROG}: note: --image-size {args.image_size}: the teacher was trained at {trained_at} px", file=sys.stderr
        )
    elif trained_at is not None and data.aug_config_for(args.dataset).image_size != trained_at:
        print(
            f"{PROG}: note: {args.dataset} runs at its default {data.aug_config_for(args.dataset).image_size} px; "
            f"the teacher was trained at {trained_at} px on {teacher['dataset']} (--image-size chooses)",
            file=sys.stderr,
        )
    if args.signal == "bottomk":
        if args.k is None:
            raise ValueError("--signal bottomk needs --k (how many of the teacher's top classes stay in place)")
        if not 0 <= args.k < teacher["num_classes"]:
            raise ValueError(
                f"--k: must be in [0, {teacher['num_classes']}) for a {teacher['num_classes']}-class "
                f"teacher, got {args.k}"
            )
    if args.student_init not in ("random", "in1k"):
        init = models.load_checkpoint(args.student_init)
        if init["arch"] != args.student:
            raise ValueError(
                f"--student-init: checkpoint '{args.student_init}' holds a '{init['arch']}', "
                f"not --student {args.student}"
            )
    args.device = cli.resolve_device(args.device)
    cli.check_writable(args.out)
    if args.teacher_tape is not None:
        cli.check_writable(args.teacher_tape, "--teacher-tape")
    return teacher


def build_objective_module(args, T):
    """kd.build_loss for one temperature with the method's own defaults and the user's overrides."""
    hp = dict(args.hp)
    if args.ce_weight is not None:
        hp["ce_weight"] = args.ce_weight
    if args.method != "ctkd":  # CTKD learns its temperature
        hp["T"] = T
    try:
        return kd.build_loss(args.method, **hp)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--hp: {e}") from None


def make_objective(args, loss_module, T, mean_entropy):
    """objective(logits, batch, teacher_logits, epoch, step) -> loss, for the engine."""
    if args.signal == "teacher":

        def objective(logits, batch, t_logits, epoch, step):
            labels = batch["y_soft"] if loss_module.needs_labels else None
            return loss_module(logits, t_logits, labels=labels, epoch=epoch)

        return objective

    def control(logits, batch, t_logits, epoch, step):
        gen = torch.Generator(device=t_logits.device).manual_seed(engine.step_seed(args.seed + 1, epoch, step))
        target = kd.soft_targets(
            t_logits,
            T,
            signal=args.signal,
            k=args.k,
            generator=gen,
            mean_entropy=mean_entropy if args.smooth_entropy == "dataset" else None,
        )
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


def run_name(args, T):
    if T is None:
        return f"{args.student}-labels-{args.opt}-bs{args.bs}-e{args.epochs}-s{args.seed}"
    sig = "" if args.signal == "teacher" else f"-{args.signal}" + (f"{args.k}" if args.signal == "bottomk" else "")
    temp = "Tlearned" if args.method == "ctkd" else f"T{T:g}"
    return f"{args.student}-{args.method}{sig}-{temp}-{args.opt}-bs{args.bs}-e{args.epochs}-s{args.seed}"


def overridden_hparams(args):
    """{key: value} of the method's hyperparameters (ce_weight included, T excluded) that --hp/--ce-weight set
    to something other than the default: restating a default keeps the run id."""
    module = build_objective_module(args, args.T[0])
    return {k: v for k, v in module.hparams.items() if k != "T" and v != module.HPARAMS[k][0]}


def identities(args, aug, teacher_ckpt):
    """{T (None: the --baseline student): the run's identity}: everything that changes its result."""
    hp = overridden_hparams(args)
    common = {
        "kind": "distill",
        **cli.data_identity(args, aug),
        "student": args.student,
        "student_init": models.init_identity(args.student_init),
    }
    recipe = {
        "opt": args.opt,
        "lr": args.lr,
        "wd": args.wd,
        "bs": args.bs,
        "epochs": args.epochs,
        "warmup_epochs": args.warmup_epochs,
        "clip": args.clip,
        "seed": args.seed,
        "amp": args.amp,
    }
    kd_identity = {
        **common,
        "teacher_weights_sha1": models.weights_fingerprint(teacher_ckpt),
        "teacher_arch": teacher_ckpt["arch"],
        "method": args.method,
        "signal": args.signal,
        "k": args.k,
        "smooth_entropy": args.smooth_entropy if args.signal == "smooth-global" else None,
        "ce_weight": hp.pop("ce_weight", None),
        "hp": hp,
        **recipe,
    }
    out = {
        T: dict(kd_identity, T=None if args.method == "ctkd" else T)
        for T in (args.T[:1] if args.method == "ctkd" else args.T)
    }
    if args.baseline:
        out[None] = {**common, "method": "labels", "label_smoothing": BASELINE_LABEL_SMOOTHING, **recipe}
    return out


def claim_runs(args, ids, claimed, failed):
    """{T: RunDir} of the runs with work left, each claimed (locked) by this process and added to `claimed`.
    Runs that failed before (unless --retry-failed) are said and added to `failed`: the others still train."""
    pending = {}
    for T, identity in ids.items():
        run = runs.RunDir(Path(args.out) / f"{run_name(args, T)}-{runs.run_id(identity)}", identity)
        state, reason = run.state()
        if state == "failed" and not args.retry_failed:
            print(
                f"{PROG}: run '{run.path}' failed ({reason}); pass --retry-failed to start it again from scratch",
                file=sys.stderr,
            )
            failed.append(run)
        elif run.claim(args.retry_failed, log=lambda line: print(f"{PROG}: {line}", file=sys.stderr)):
            claimed.append(run)
            pending[T] = run
        else:
            print(f"{PROG}: already done: {run.path}", file=sys.stderr)
    return pending


def prepare(args, claimed, failed):
    """Everything before training: checks, data, the runs still to do (claimed), the teacher and its
    statistics, the tape, one member per run. None when every run is done (or `failed`) already."""
    teacher_ckpt = validate(args)
    aug = cli.aug_config(args)
    train_split, test_split, stream = cli.load_data(args, aug, views=args.views)
    if teacher_ckpt["num_classes"] != len(train_split.classes):
        raise ValueError(
            f"--teacher: '{args.teacher}' was trained on {teacher_ckpt['num_classes']} classes "
            f"({teacher_ckpt['dataset']}), but {args.dataset} has {len(train_split.classes)}"
        )
    check_same_classes(args, teacher_ckpt["classes"], train_split.classes)
    ids = identities(args, aug, teacher_ckpt)
    pending = claim_runs(args, ids, claimed, failed)
    if not pending:
        return None

    # The teacher: its test accuracy and its statistics over the train set (eval transform), once.
    device = args.device
    teacher = models.model_from_checkpoint(teacher_ckpt, args.teacher).to(device)
    t_channels_last = engine.channels_last_for(args.channels_last, teacher, device)
    if t_channels_last:
        teacher.to(memory_format=torch.channels_last)
    t_norm = models.checkpoint_normalization(teacher_ckpt)
    test_images = data.eval_images(test_split, aug)
    t_test = models.predict(teacher, test_images, t_norm, device, amp=args.amp, channels_last=t_channels_last)
    if not torch.isfinite(t_test).all():  # else every student would "diverge" and be recorded as failed
        raise ValueError(
            f"--teacher: '{args.teacher}' outputs non-finite logits (NaN/inf weights?) on {args.dataset} test images"
        )
    t_acc = engine.accuracy(t_test, test_split.labels)
    chance = 100.0 / teacher_ckpt["num_classes"]
    print(
        f"{PROG}: teacher {args.teacher} ({teacher_ckpt['arch']}): test top-1 {t_acc['top1']:.2f}% "
        f"(chance {chance:.1f}%)",
        file=sys.stderr,
    )
    if t_acc["top1"] < 2 * chance and not args.allow_weak_teacher:
        raise ValueError(
            f"--teacher: '{args.teacher}' is near chance on {args.dataset} test ({t_acc['top1']:.1f}% "
            f"vs chance {chance:.1f}%); pass --allow-weak-teacher to distil anyway"
        )
    t_train = models.predict(
        teacher, data.eval_images(train_split, aug), t_norm, device, amp=args.amp, channels_last=t_channels_last
    )
    t_related = wrong_class_mass(t_train, train_split)
    forward = teacher_forward(teacher, t_norm, t_channels_last)
    if args.teacher_tape and any(T is not None for T in pending):
        key = tape.tape_key(next(identity for T, identity in ids.items() if T is not None), stream, args.views)
        forward = tape.TeacherTape(args.teacher_tape, forward, key=key, log=print_err)

    members = []
    for T, run in pending.items():
        torch.manual_seed(args.seed)  # every temperature's student starts from the same weights
        student, origination = models.create_model(
            args.student, len(train_split.classes), args.student_init, args.pretrained_file, dataset=args.dataset
        )
        run.start(runtime={k: str(v) for k, v in vars(args).items()})
        extra = {"T": None if args.method == "ctkd" else T, "student_origination": origination}
        if T is None:
            objective, loss_module = labels_objective, None
            extra["teacher"] = None
        else:
            loss_module = build_objective_module(args, T)
            stats = teacher_statistics(t_train, T if args.method != "ctkd" else 1.0)
            objective = make_objective(args, loss_module, T, stats["mean_entropy_nats"])
            extra["teacher"] = {
                "path": str(args.teacher),
                "arch": teacher_ckpt["arch"],
                **t_acc,
                "dataset": teacher_ckpt["dataset"],
                "origination": teacher_ckpt["origination"],
                "statistics": stats,
                "wrong_class_mass": t_related,
            }
        learns = loss_module is not None and any(True for _ in loss_module.parameters())
        members.append(
            engine.Member(
                name=run_name(args, T),
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
    print(
        f"{PROG}: {len(members)} student(s) {args.student} ({args.method}: {temps}) on {args.dataset}: "
        f"{len(train_split)} train images, {args.epochs} epochs, {stream.steps_per_epoch} steps/epoch, {device}",
        file=sys.stderr,
    )
    recipe = engine.recipe_from_args(args, members[0].model)
    common = {"kind": "distill", **runs.provenance(device), "seed": args.seed, "num_classes": len(train_split.classes)}
    return members, stream, (test_images, test_split.labels, t_test.argmax(1)), recipe, forward, common


def check_same_classes(args, teacher_classes, classes):
    """A note unless the teacher's class names (in order) are the dataset's: a teacher of other classes with
    the same count is distilled by class index, which is only right if the names merely differ."""
    differ = next((i for i, (a, b) in enumerate(zip(teacher_classes, classes)) if a != b), None)
    if differ is not None:
        print(
            f"{PROG}: note: --teacher: '{args.teacher}' names other classes than {args.dataset} (class {differ}: "
            f"'{teacher_classes[differ]}' vs '{classes[differ]}'); its outputs are matched to the labels by index",
            file=sys.stderr,
        )


def main(argv=None):
    args = get_args(argv)
    claimed, failed = [], []
    try:
        job = prepare(args, claimed, failed)
    except (ValueError, OSError, KeyboardInterrupt) as e:
        for run in claimed:  # leave nothing behind
            run.abandon()
        if isinstance(e, KeyboardInterrupt):  # Ctrl-C before training: nothing to save
            print(
                f"{PROG}: SIGINT before training started: nothing was trained; run the same command again",
                file=sys.stderr,
            )
            sys.exit(cli.EXIT_PREEMPTED)
        cli.fail(PROG, e)
    if job is None:
        return cli.EXIT_FAILED if failed else 0
    members, stream, test, recipe, forward, common = job
    try:
        results = engine.train(members, stream, test, recipe, teacher=forward, common_result=common, log=print_err)
    except runs.RunError as e:  # a run folder that cannot be resumed
        cli.fail(PROG, e)
    except OSError as e:  # e.g. a full disk while saving a checkpoint
        cli.stop_on_os_error(PROG, e)
    if isinstance(forward, tape.TeacherTape):
        print(
            f"{PROG}: teacher tape {args.teacher_tape}: {forward.replayed_steps} steps replayed, "
            f"{forward.recorded_steps} computed",
            file=sys.stderr,
        )
    for r in results:
        print(
            f"{PROG}: {r['run_id']}: final top-1 {r['final']['top1']:.2f}% (best {r['best']['top1']:.2f}%)",
            file=sys.stderr,
        )
    return 0 if len(results) == len(members) and not failed else cli.EXIT_FAILED


def print_err(line):
    print(line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
