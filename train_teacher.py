"""Train a teacher (or a student's initial weights) with label-smoothed cross-entropy.

Fine-tunes from timm's ImageNet-1k weights (`--init in1k`), from any checkpoint of this project
(e.g. one "generally pretrained" on synth-src), or trains from random weights, with the study's
augmentation (RandAugment, flip, MixUp|CutMix). The same script makes the target-trained (TT)
and fine-tuned (FT) student initialisations: pass a student architecture.

    python train_teacher.py --dataset synth-src --arch resnet18d --epochs 4 --out teachers/src.pt
    python train_teacher.py --dataset synth-fine --arch resnet18d --init teachers/src.pt --epochs 4 \
        --out teachers/synth-fine.pt

Writes the model checkpoint to --out and its run folder (config.json, log.jsonl, result.json)
next to it as <out without .pt>.run/. Re-running a finished command does nothing; re-running an
interrupted one resumes it.
"""

import argparse
import sys
from pathlib import Path

import torch

import cli
import data
import engine
import models
import runs

PROG = "train_teacher.py"
# Teacher fine-tuning epochs per dataset: Pets 20, CIFAR-100 40 (paper); the others are defaults.
EPOCHS = {
    "pets": 20,
    "cifar100": 40,
    "cars": 20,
    "tiny-imagenet": 40,
    "imagefolder": 20,
    "synth-src": 4,
    "synth-fine": 2,
    "synth-coarse": 2,
    "synth-novel": 2,
}


def default_lr(arch):
    """The paper's teacher recipe: CNN 5e-4, ViT 5e-5."""
    return 5e-5 if arch.startswith(("vit", "deit", "eva")) else 5e-4


def get_args(argv=None):
    p = cli.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    cli.add_data_args(p)
    g = p.add_argument_group("model and training")
    g.add_argument(
        "--arch", default="resnet18d", help="timm architecture, e.g. resnet50, vit_small_patch16_224, resnet18"
    )
    g.add_argument(
        "--init", default="random", help="random, in1k (timm weights, pinned tag), or a checkpoint of this project"
    )
    g.add_argument("--pretrained-file", default=None, help="local timm weights file for --init in1k (offline clusters)")
    g.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs (default per dataset: Pets 20, CIFAR-100 40, synth-src 4, other synth 2)",
    )
    g.add_argument("--opt", default="adamw", choices=["adamw", "sgd"], help="optimizer")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default: CNN 5e-4, ViT 5e-5)")
    g.add_argument("--wd", type=float, default=0.05, help="weight decay (the paper's value was lost: a project choice)")
    g.add_argument("--bs", type=int, default=64, help="batch size (the paper's value was lost: a project choice)")
    g.add_argument("--label-smoothing", type=float, default=0.1, help="label smoothing of the cross-entropy")
    g.add_argument("--warmup-epochs", type=float, default=0, help="linear learning-rate warmup before the cosine decay")
    g.add_argument("--clip", type=float, default=0.0, help="per-layer gradient-norm clip (0: off)")
    g.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the augmentation stream")
    g.add_argument("--out", required=True, help="output checkpoint path, e.g. teachers/pets-resnet50.pt")
    cli.add_runtime_args(p)
    return p.parse_args(argv)


def resolve(args):
    """Check every input before any work starts (ValueError, one line); a copy of the flags with the defaults
    that depend on other flags filled in (epochs, lr, --synth parsed, device)."""
    if args.dataset not in data.DATASETS:
        raise ValueError(f"--dataset: unknown dataset '{args.dataset}' (expected one of {', '.join(data.DATASETS)})")
    if not models.is_known_arch(args.arch):
        raise ValueError(f"--arch: unknown timm architecture '{args.arch}'")
    flags = argparse.Namespace(**vars(args))
    flags.epochs = EPOCHS.get(args.dataset, 20) if args.epochs is None else args.epochs
    flags.lr = default_lr(args.arch) if args.lr is None else args.lr
    cli.check_range("--epochs", flags.epochs, 1, None, integer=True)
    cli.check_range("--seed", flags.seed, 0, 2**31 - 1, integer=True)
    for flag in ("lr", "wd", "clip", "warmup_epochs"):
        cli.check_range(f"--{flag.replace('_', '-')}", getattr(flags, flag), 0)
    cli.check_runtime_args(flags)
    if flags.bs < 2:
        raise ValueError(f"--bs: must be >= 2 (MixUp/CutMix pair examples within a batch), got {flags.bs}")
    if not 0 <= flags.label_smoothing < 1:
        raise ValueError(f"--label-smoothing: must be in [0, 1), got {flags.label_smoothing}")
    if flags.init not in ("random", "in1k"):
        if Path(flags.init).resolve() == Path(flags.out).resolve():  # it would overwrite its own initialisation
            raise ValueError(f"--init: '{flags.init}' is also --out; write the fine-tuned model to another file")
        ckpt = models.load_checkpoint(flags.init)  # raises CheckpointError with the reason
        if ckpt["arch"] != flags.arch:
            raise ValueError(f"--init: checkpoint '{flags.init}' holds a '{ckpt['arch']}', not --arch {flags.arch}")
    if not str(flags.out).endswith(".pt"):
        raise ValueError(f"--out: expected a checkpoint path ending in .pt, got '{flags.out}'")
    if Path(flags.out).is_dir():
        raise ValueError(f"--out: '{flags.out}' is a folder, expected a checkpoint path ending in .pt")
    flags.synth = cli.parse_key_values(flags.synth, "--synth")
    data.check_synth_args(flags.dataset, flags.synth)
    flags.device = cli.resolve_device(flags.device)
    size = flags.image_size or data.aug_config_for(flags.dataset).image_size
    flags.amp = engine.amp_for(cli.resolve_amp(flags.amp, flags.device), flags.device, flags.arch, size, say)
    cli.check_writable(Path(flags.out).parent)
    return flags


def say(line):
    print(f"{PROG}: {line}", file=sys.stderr)


def main(argv=None):
    args = get_args(argv)
    prog = PROG
    try:
        args = resolve(args)  # from here on: the resolved flags
        aug = cli.aug_config(args)
        train_split, test_split, stream = cli.load_data(args, aug, results=Path(args.out).parent)
        out = Path(args.out)
        identity = {
            "kind": "train",
            **cli.data_identity(args, aug, train_split),
            "arch": args.arch,
            "init": models.init_identity(args.init),
            "epochs": args.epochs,
            "opt": args.opt,
            "lr": args.lr,
            "wd": args.wd,
            "bs": args.bs,
            "label_smoothing": args.label_smoothing,
            "warmup_epochs": args.warmup_epochs,
            "clip": args.clip,
            "seed": args.seed,
            "amp": args.amp,
        }
        run = runs.RunDir(out.with_suffix(".run"), identity)
        if run.state()[0] == "done" and out.is_file():
            print(f"{prog}: already done: {out}", file=sys.stderr)
            return 0
        torch.manual_seed(args.seed)  # the model first: a failure (in1k weights out of reach) leaves nothing behind
        classes = train_split.classes
        model, origination = models.create_model(
            args.arch, len(classes), args.init, args.pretrained_file, data=identity
        )
        state, reason = run.state()
        if state == "done":
            print(f"{prog}: {out} is missing: training it again", file=sys.stderr)
            run.set_aside_result()
        elif state == "failed" and not args.retry_failed:
            print(
                f"{prog}: run '{run.path}' failed ({reason}); pass --retry-failed to start it again from scratch",
                file=sys.stderr,
            )
            return cli.EXIT_FAILED
        if not run.claim(args.retry_failed, log=say):
            print(f"{prog}: already done: {out}", file=sys.stderr)
            return 0
        try:
            run.start(runtime={k: str(v) for k, v in vars(args).items()})
        except ValueError:
            run.abandon()
            raise
    except (ValueError, OSError) as e:
        cli.fail(prog, e)
    except KeyboardInterrupt:  # Ctrl-C before training: nothing to save (the lock dies with the process)
        print(
            f"{prog}: SIGINT before training started: nothing was trained; run the same command again", file=sys.stderr
        )
        sys.exit(cli.EXIT_PREEMPTED)
    origination["epochs_trained"] += args.epochs
    origination["target_epochs"] += args.epochs
    label_smoothing = args.label_smoothing

    def objective(logits, batch, teacher_logits, epoch, step):
        return engine.label_smoothed_cross_entropy(logits, batch["y_soft"], label_smoothing)

    def save_model(member):
        models.save_checkpoint(
            out,
            member.model,
            arch=args.arch,
            classes=classes,
            dataset=args.dataset,
            origination=origination,
            args=identity,
            code_version=runs.code_version(),
        )

    member = engine.Member(name=out.stem, run=run, model=model, objective=objective, norm=models.normalization(model))
    test_images = data.EvalImages(test_split, aug)  # a batch at a time: bounded memory
    common = {
        "kind": "train",
        "checkpoint": str(out),
        "origination": origination,
        "num_classes": len(classes),
        **runs.provenance(args.device),
        "seed": args.seed,
    }
    print(
        f"{prog}: {args.arch} ({origination['init']}) on {args.dataset}: {len(train_split)} train / "
        f"{len(test_split)} test images, {len(classes)} classes, {args.epochs} epochs on {args.device}",
        file=sys.stderr,
    )
    recipe = engine.recipe_from_args(args, model)
    try:
        results = engine.train(
            [member],
            stream,
            (test_images, test_split.labels, None),
            recipe,
            common_result=common,
            on_finish=save_model,
            log=lambda line: print(line, file=sys.stderr),
        )
    except runs.RunError as e:  # a run folder that cannot be resumed
        cli.fail(prog, e)
    except OSError as e:  # e.g. a full disk while saving a checkpoint
        cli.stop_on_os_error(prog, e)
    if not results:
        return cli.EXIT_FAILED
    print(f"{prog}: {out}: test top-1 {results[0]['final']['top1']:.2f}%", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
