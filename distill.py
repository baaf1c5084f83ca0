"""Distil a teacher checkpoint into a student: one run per temperature, trained in lockstep.

    python distill.py --T 40 --opt sgd                        # the study's baseline KD at T=40
    python distill.py --T 1 2 4 40 --teacher teachers/fine-ft2.pt --student resnet10t
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

import data
import engine
import kd
import models
import tape

METHODS = ("kd", "dkd", "eakd", "ctkd", "lskd", "mlkd", "rld", "dist")
SIGNALS = ("teacher", "smooth-global", "smooth-instance", "bottomk")
# Distillation epochs per dataset: Pets 100, CIFAR-100 40 (defaults; the paper's values were lost).
EPOCHS = {"pets": 100, "cifar100": 40, "cars": 100, "tiny-imagenet": 40, "imagefolder": 100,
          "synth-src": 10, "synth-fine": 10, "synth-coarse": 10, "synth-novel": 10}
# Baseline optimiser settings (defaults): AdamW lr 1e-3 wd 0.05; SGD momentum 0.9 lr 0.05 wd 5e-4.
OPT_DEFAULTS = {"adamw": (1e-3, 0.05), "sgd": (0.05, 5e-4)}


def get_args(argv=None):
    p = engine.ArgumentParser(description=__doc__.split("\n\n")[0])
    engine.add_data_args(p)
    g = p.add_argument_group("teacher and student")
    g.add_argument("--teacher", default="teachers/synth-fine.pt", help="teacher checkpoint made by train_teacher.py")
    g.add_argument("--student", default="resnet10t", help="timm architecture of the student, e.g. resnet18, mobilenetv4_conv_medium")
    g.add_argument("--student-init", default="random", help="random, in1k (timm weights, pinned tag), or a checkpoint (TT/FT student)")
    g.add_argument("--pretrained-file", default=None, help="local timm weights file for --student-init in1k (offline clusters)")
    g.add_argument("--allow-weak-teacher", action="store_true", help="distil even if the teacher's test accuracy is near chance")
    g = p.add_argument_group("distillation")
    g.add_argument("--T", type=float, nargs="+", default=[4.0], help="temperature(s); several train in lockstep, one run each")
    g.add_argument("--method", default="kd", help=f"KD method: {', '.join(METHODS)}")
    g.add_argument("--signal", default="teacher", help=f"soft target for --method kd: {', '.join(SIGNALS)}")
    g.add_argument("--k", type=int, default=None, help="top-k kept in place by --signal bottomk")
    g.add_argument("--smooth-entropy", default="dataset", choices=["dataset", "batch"],
                   help="smooth-global matches the teacher's mean entropy over the train set or over each batch")
    g.add_argument("--ce-weight", type=float, default=None, help="weight of cross-entropy to labels (default: the method's own; 0 for kd)")
    g.add_argument("--hp", nargs="*", action="extend", default=[], metavar="KEY=VALUE", help="other method hyperparameters, e.g. --hp beta=2 warmup=1")
    g = p.add_argument_group("optimisation")
    g.add_argument("--opt", default="adamw", help="adamw or sgd (momentum 0.9)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default: adamw 1e-3, sgd 0.05)")
    g.add_argument("--wd", type=float, default=None, help="weight decay (default: adamw 0.05, sgd 5e-4)")
    g.add_argument("--bs", type=int, default=64, help="batch size")
    g.add_argument("--epochs", type=int, default=None, help="epochs (default per dataset: Pets 100, CIFAR-100 40, synth 10)")
    g.add_argument("--warmup-epochs", type=float, default=0, help="linear learning-rate warmup before the cosine decay")
    g.add_argument("--clip", type=float, default=1.0, help="per-layer gradient-norm clip (0: off)")
    g.add_argument("--seed", type=int, default=0, help="seed of the student's initialisation and of the batch stream")
    g.add_argument("--out", default="runs", help="folder that holds one run folder per run")
    g.add_argument("--teacher-tape", default=None, help="folder of recorded teacher logits: record on first use, replay after")
    engine.add_runtime_args(p)
    return p.parse_args(argv)


def validate(args):
    """Check every flag and file before any work starts; raise ValueError with a one-line message."""
    if args.dataset not in data.DATASETS:
        raise ValueError(f"--dataset: unknown dataset '{args.dataset}' (expected one of {', '.join(data.DATASETS)})")
    if args.method not in METHODS:
        raise ValueError(f"--method: unknown method '{args.method}' (expected one of {', '.join(METHODS)})")
    if args.signal not in SIGNALS:
        raise ValueError(f"--signal: unknown signal '{args.signal}' (expected one of {', '.join(SIGNALS)})")
    if args.signal != "teacher" and args.method != "kd":
        raise ValueError(f"--signal {args.signal}: control signals replace the target of --method kd only")
    if args.opt not in OPT_DEFAULTS:
        raise ValueError(f"--opt: unknown optimizer '{args.opt}' (expected adamw or sgd)")
    if not models.is_known_arch(args.student):
        raise ValueError(f"--student: unknown timm architecture '{args.student}'")
    bad_T = [t for t in args.T if not (math.isfinite(t) and t > 0)]
    if bad_T:
        raise ValueError(f"--T: temperatures must be finite and > 0, got {bad_T[0]}")
    if len(set(args.T)) != len(args.T):
        raise ValueError(f"--T: repeated temperature in {args.T}")
    args.epochs = EPOCHS.get(args.dataset, 100) if args.epochs is None else args.epochs
    lr, wd = OPT_DEFAULTS[args.opt]
    args.lr = lr if args.lr is None else args.lr
    args.wd = wd if args.wd is None else args.wd
    if args.epochs < 1:
        raise ValueError(f"--epochs: must be >= 1, got {args.epochs}")
    for flag in ("lr", "wd", "clip", "warmup_epochs"):
        if not getattr(args, flag) >= 0:
            raise ValueError(f"--{flag.replace('_', '-')}: must be >= 0, got {getattr(args, flag)}")
    if args.parallel < 1:
        raise ValueError(f"--parallel: must be >= 1, got {args.parallel}")
    if args.ce_weight is not None and not args.ce_weight >= 0:
        raise ValueError(f"--ce-weight: must be >= 0, got {args.ce_weight}")
    args.hp = engine.parse_key_values(args.hp, "--hp")
    args.synth = engine.parse_key_values(args.synth, "--synth")
    probe = build_objective_module(args, args.T[0])   # unknown hyperparameters fail here
    args.views = 2 if probe.needs_two_views else 1      # MLKD distils a second augmented view
    if args.bs < 2:
        raise ValueError(f"--bs: must be >= 2 (MixUp/CutMix pair examples{', and ' + args.method + ' is batch-coupled' if probe.batch_coupled else ''}), got {args.bs}")
    teacher = models.load_checkpoint(args.teacher)   # CheckpointError names the file and the reason
    if args.signal == "bottomk":
        if args.k is None:
            raise ValueError("--signal bottomk needs --k (how many of the teacher's top classes stay in place)")
        if not 0 <= args.k < teacher["num_classes"]:
            raise ValueError(f"--k: must be in [0, {teacher['num_classes']}) for a {teacher['num_classes']}-class teacher, got {args.k}")
    if args.student_init not in ("random", "in1k"):
        init = models.load_checkpoint(args.student_init)
        if init["arch"] != args.student:
            raise ValueError(f"--student-init: checkpoint '{args.student_init}' holds a '{init['arch']}', not --student {args.student}")
    args.device = engine.resolve_device(args.device)
    engine.check_writable(args.out)
    return teacher


def build_objective_module(args, T):
    """kd.build_loss for one temperature with the method's own defaults and the user's overrides."""
    hp = dict(args.hp)
    if args.ce_weight is not None:
        hp["ce_weight"] = args.ce_weight
    if args.method != "ctkd":   # CTKD learns its temperature
        hp["T"] = T
    try:
        return kd.build_loss(args.method, **hp)
    except TypeError as e:
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
        target = kd.soft_targets(t_logits, T, signal=args.signal, k=args.k, generator=gen,
                                 mean_entropy=mean_entropy if args.smooth_entropy == "dataset" else None)
        return kd.soft_target_loss(logits, target, T)
    return control


def teacher_forward(model, norm, channels_last):
    """teacher(batch, xs, epoch, step) -> logits float32 (a tuple with two views); eval mode, no autograd."""
    model.eval()

    def forward(batch, xs, epoch, step):
        with torch.inference_mode():
            out = [model(models.model_input(x, *norm, channels_last)).float() for x in xs]
        out = [o.clone() for o in out]   # leave inference mode: the loss saves them for backward
        return tuple(out) if len(out) > 1 else out[0]
    return forward


def teacher_statistics(train_logits, T):
    """Train-set means of the teacher's relative entropies at T, and its mean sorted T-softmax (Fig. 4)."""
    h_rel, h_rest = kd.relative_entropies(train_logits, T)
    return {"T": T, "H_rel": h_rel.mean().item(), "H_rel_without_max": h_rest.mean().item(),
            "mean_entropy_nats": (h_rel.mean() * math.log(train_logits.shape[1])).item(),
            "mean_sorted_softmax": kd.mean_sorted_softmax(train_logits, T).tolist()}


def run_name(args, T):
    sig = "" if args.signal == "teacher" else f"-{args.signal}" + (f"{args.k}" if args.signal == "bottomk" else "")
    temp = "Tlearned" if args.method == "ctkd" else f"T{T:g}"
    return f"{args.student}-{args.method}{sig}-{temp}-{args.opt}-bs{args.bs}-e{args.epochs}-s{args.seed}"


def main(argv=None):
    args = get_args(argv)
    prog = "distill.py"
    try:
        teacher_ckpt = validate(args)
        aug = engine.aug_config(args)
        train_split = data.load_split(args.dataset, "train", args.data_root, download=args.download,
                                      image_size=args.image_size, synth=args.synth)
        test_split = data.load_split(args.dataset, "test", args.data_root, download=args.download,
                                     image_size=args.image_size, synth=args.synth)
        stream = data.TrainStream(train_split, aug, batch_size=args.bs, seed=args.seed, views=args.views,
                                  workers=args.workers,
                                  device=engine.augment_device(args.augment_on, args.device, args.workers))
        if teacher_ckpt["num_classes"] != len(train_split.classes):
            raise ValueError(f"--teacher: '{args.teacher}' was trained on {teacher_ckpt['num_classes']} classes "
                             f"({teacher_ckpt['dataset']}), but {args.dataset} has {len(train_split.classes)}")
    except (ValueError, OSError) as e:
        engine.fail(prog, e)

    temperatures = args.T[:1] if args.method == "ctkd" else args.T
    base = {"kind": "distill", "dataset": args.dataset, "data_id": engine.data_id(args), "synth": args.synth, "aug": aug.to_dict(),
            "teacher_weights_sha1": models.weights_fingerprint(teacher_ckpt), "teacher_arch": teacher_ckpt["arch"],
            "student": args.student,
            "student_init": args.student_init if args.student_init in ("random", "in1k") else
            models.weights_fingerprint(models.load_checkpoint(args.student_init)),
            "method": args.method, "signal": args.signal, "k": args.k,
            "smooth_entropy": args.smooth_entropy if args.signal == "smooth-global" else None,
            "ce_weight": args.ce_weight, "hp": args.hp, "opt": args.opt, "lr": args.lr, "wd": args.wd, "bs": args.bs,
            "epochs": args.epochs, "warmup_epochs": args.warmup_epochs, "clip": args.clip, "seed": args.seed,
            "amp": args.amp}
    runs = {}
    for T in temperatures:
        identity = dict(base, T=None if args.method == "ctkd" else T)
        run = engine.RunDir(Path(args.out) / f"{run_name(args, T)}-{engine.run_id(identity)}", identity)
        if run.done():
            print(f"{prog}: already done: {run.path}", file=sys.stderr)
            continue
        runs[T] = run
    if not runs:
        return 0

    # The teacher: its test accuracy and its statistics over the train set (eval transform), once.
    device = args.device
    teacher = models.create_model(teacher_ckpt["arch"], teacher_ckpt["num_classes"], args.teacher,
                                  dataset=teacher_ckpt["dataset"])[0].to(device)
    t_channels_last = engine.channels_last_for(args.channels_last, teacher, device)
    if t_channels_last:
        teacher.to(memory_format=torch.channels_last)
    t_norm = (tuple(teacher_ckpt["normalization"]["mean"]), tuple(teacher_ckpt["normalization"]["std"]))
    test_images = data.eval_images(test_split, aug)
    t_test = models.predict(teacher, test_images, t_norm, device, amp=args.amp, channels_last=t_channels_last)
    t_acc = engine.accuracy(t_test, test_split.labels)
    chance = 100.0 / teacher_ckpt["num_classes"]
    print(f"{prog}: teacher {args.teacher} ({teacher_ckpt['arch']}): test top-1 {t_acc['top1']:.2f}% "
          f"(chance {chance:.1f}%)", file=sys.stderr)
    if t_acc["top1"] < 2 * chance and not args.allow_weak_teacher:
        engine.fail(prog, f"--teacher: '{args.teacher}' is near chance on {args.dataset} test "
                          f"({t_acc['top1']:.1f}% vs chance {chance:.1f}%); pass --allow-weak-teacher to distil anyway")
    t_train = models.predict(teacher, data.eval_images(train_split, aug), t_norm, device, amp=args.amp,
                             channels_last=t_channels_last)

    forward = teacher_forward(teacher, t_norm, t_channels_last)
    if args.teacher_tape:
        try:
            forward = tape.TeacherTape(args.teacher_tape, forward, key=tape.tape_key(base, stream, args.views))
        except ValueError as e:
            engine.fail(prog, e)

    members = []
    for T, run in runs.items():
        torch.manual_seed(args.seed)   # every temperature's student starts from the same weights
        try:
            student, origination = models.create_model(args.student, len(train_split.classes), args.student_init,
                                                       args.pretrained_file, dataset=args.dataset)
            run.start(runtime={k: str(v) for k, v in vars(args).items()})
        except ValueError as e:   # in1k weights out of reach, or a run folder holding another run
            engine.fail(prog, e)
        loss_module = build_objective_module(args, T)
        stats = teacher_statistics(t_train, T if args.method != "ctkd" else 1.0)
        objective = make_objective(args, loss_module, T, stats["mean_entropy_nats"])
        members.append(engine.Member(
            name=run_name(args, T), run=run, model=student, objective=objective, norm=models.normalization(student),
            objective_module=loss_module if any(True for _ in loss_module.parameters()) else None,
            result_extra={"T": None if args.method == "ctkd" else T, "student_origination": origination,
                          "teacher": {"path": str(args.teacher), "arch": teacher_ckpt["arch"], **t_acc,
                                      "dataset": teacher_ckpt["dataset"], "origination": teacher_ckpt["origination"],
                                      "statistics": stats}}))

    common = {"kind": "distill", "device": engine.device_name(device), "code_version": engine.code_version(),
              "versions": engine.library_versions(), "seed": args.seed, "num_classes": len(train_split.classes)}
    print(f"{prog}: {len(members)} student(s) {args.student} ({args.method}, T={', '.join(f'{t:g}' for t in runs)}) on "
          f"{args.dataset}: {len(train_split)} train images, {args.epochs} epochs, {stream.steps_per_epoch} steps/epoch, "
          f"{device}", file=sys.stderr)
    try:
        results = engine.train(members, stream, test_images, test_split.labels, epochs=args.epochs, opt=args.opt,
                               lr=args.lr, wd=args.wd, warmup_epochs=args.warmup_epochs, clip=args.clip, seed=args.seed,
                               device=device, amp=args.amp, compile=args.compile,
                               channels_last=engine.channels_last_for(args.channels_last, members[0].model, device),
                               parallel=args.parallel,
                               eval_every=args.eval_every, teacher=forward, teacher_test_pred=t_test.argmax(1),
                               keep_ckpt=args.keep_ckpt, common_result=common, log=lambda s: print(s, file=sys.stderr))
    except engine.RunError as e:   # a run folder that cannot be resumed
        engine.fail(prog, e)
    if args.teacher_tape:
        print(f"{prog}: teacher tape {args.teacher_tape}: {forward.replayed_steps} steps replayed, "
              f"{forward.recorded_steps} computed", file=sys.stderr)
    for r in results:
        print(f"{prog}: {r['run_id']}: final top-1 {r['final']['top1']:.2f}% (best {r['best']['top1']:.2f}%)", file=sys.stderr)
    return 0 if len(results) == len(members) else engine.EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
