"""Temperature advisor: which of the paper's situations does this teacher resemble?

    python analysis/advise.py --teacher teachers/pets-resnet50-ft20.pt --dataset pets --data-root data
    python analysis/advise.py --teacher results/demo/teachers/synth-fine-ft4.pt --dataset synth-fine

Runs the teacher over the train split (evaluation transform), prints its relative entropies and
sorted softmax across the temperature grid, and states which finding of Frank & Davis (2026) the
teacher's origination and entropies point to. Guidance from one paper's observations, not a
guarantee: confirm with a short sweep (`python distill.py --T 1 4 20 ...`).

Rules (thresholds are this project's reading of the paper's Table 1, not the paper's numbers):
  - trained from scratch                         -> T = 1 (Table 1, §4.3)
  - H_rel^-max(T=1) >= 0.9: the non-max classes are nearly uniform, like label smoothing
                                                 -> small T catches up, no gain from large T (§4.3, Fig. 5)
  - pretrained, briefly fine-tuned, structured tail (H_rel^-max(T=1) < 0.9)
                                                 -> large T (10-40) after long training (§4.2-4.3)
  - --novel-classes (target classes absent from pretraining, like Cars)
                                                 -> smaller T (§4.5, Figs. 6-7)
"""

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, also when run as a script
import cli  # noqa: E402
import data  # noqa: E402
import distill  # noqa: E402
import kd  # noqa: E402
import models  # noqa: E402

T_GRID = [1, 2, 3, 4, 5, 10, 20, 30, 40]
UNIFORM_TAIL = 0.9  # H_rel^-max at T=1 above this: the tail looks like label smoothing


def teacher_statistics(logits, temps):
    """Per T: train-set means of H_rel and H_rel^-max, and the top of the mean sorted softmax."""
    rows = []
    for T in temps:
        h, h_rest = kd.relative_entropies(logits, T)
        sorted_p = kd.mean_sorted_softmax(logits, T)
        rows.append(
            {
                "T": T,
                "H_rel": h.mean().item(),
                "H_rel_without_max": h_rest.mean().item(),
                "p1": sorted_p[0].item(),
                "p2": sorted_p[1].item(),
                "p_last": sorted_p[-1].item(),
            }
        )
    return rows


def advice(origination, stats, novel_classes):
    """Sentences, each naming the finding it uses."""
    at1 = next(r for r in stats if r["T"] == min(r["T"] for r in stats))
    out = []
    if origination.get("from_scratch"):
        out.append(
            "Trained from random weights: the paper's from-scratch teachers did best at T = 1 "
            "(Table 1, §4.3: 'a temperature of 1 often performs best'). Start with T in {1, 2}."
        )
    elif at1["H_rel_without_max"] >= UNIFORM_TAIL:
        out.append(
            f"H_rel^-max = {at1['H_rel_without_max']:.2f} at T = {at1['T']:g}: the non-max classes are nearly "
            "uniform, as after long fine-tuning. The paper found such teachers resemble label smoothing, lose "
            "student accuracy, and let small T catch up with large T (§4.3, Fig. 5). Expect little gain above "
            "T ≈ 4; a teacher fine-tuned for fewer epochs may distil better."
        )
    else:
        epochs = origination.get("target_epochs")
        out.append(
            f"Generally pretrained ({origination.get('pretrained') or 'unknown source'}) and fine-tuned for "
            f"{epochs if epochs is not None else 'an unknown number of'} epochs, with a structured tail "
            f"(H_rel^-max = {at1['H_rel_without_max']:.2f} at T = {at1['T']:g}): the paper's favourable case. "
            "Unexpectedly large T (10-40) did best after long distillation (§4.2-4.3, Fig. 3); with SGD and a "
            "short budget, smaller T wins first (the cross-over, Fig. 2). AdamW is the more T-robust choice."
        )
    if novel_classes:
        out.append(
            "Target classes absent from the pretraining data (like Cars or Finer-Grained Birds): the paper saw "
            "accuracy fall with T there; prefer small T (§4.5, Figs. 6-7)."
        )
    out.append("This is guidance from one study's observations, not a guarantee: confirm with a short sweep.")
    return out


def main(argv=None):
    p = cli.ArgumentParser(prog="advise.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="teacher checkpoint made by train_teacher.py")
    p.add_argument("--dataset", default=None, help="dataset to measure on (default: the teacher's own)")
    p.add_argument("--data-root", default="data", help="folder holding the dataset")
    cli.add_key_values(p, "--synth", "built-in dataset sizes, as in distill.py (default: the teacher's own)")
    p.add_argument(
        "--image-size", type=int, default=None, help="resolution (default: the one the teacher was trained at)"
    )
    p.add_argument("--T", type=float, nargs="+", default=T_GRID, help="temperatures to report")
    p.add_argument(
        "--novel-classes", action="store_true", help="the target's classes are absent from the pretraining data"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    try:
        ckpt = models.load_checkpoint(args.teacher)
        dataset = args.dataset or ckpt["dataset"]
        if dataset not in data.DATASETS:
            raise ValueError(f"--dataset: unknown dataset '{dataset}' (expected one of {', '.join(data.DATASETS)})")
        for T in args.T:
            cli.check_range("--T", T, kd.T_RANGE[0], kd.T_RANGE[1])
        synth = cli.parse_key_values(args.synth, "--synth")
        data.check_synth_args(dataset, synth)
        if not synth and dataset == ckpt["dataset"]:  # the built-in data the teacher learned
            synth = (ckpt.get("args") or {}).get("synth") or {}
        if args.image_size is not None:
            cli.check_range("--image-size", args.image_size, 8, 4096, integer=True)
        trained_at = models.trained_image_size(ckpt)
        if args.image_size is None and dataset == ckpt["dataset"]:
            args.image_size = trained_at
        elif args.image_size is not None and trained_at is not None and args.image_size != trained_at:
            print(
                f"advise.py: note: --image-size {args.image_size}: the teacher was trained at {trained_at} px",
                file=sys.stderr,
            )
        elif trained_at is not None and data.aug_config_for(dataset).image_size != trained_at:
            print(
                f"advise.py: note: {dataset} runs at its default {data.aug_config_for(dataset).image_size} px; "
                f"the teacher was trained at {trained_at} px on {ckpt['dataset']} (--image-size chooses)",
                file=sys.stderr,
            )
        aug = data.aug_config_for(dataset, args.image_size)
        split = data.load_split(dataset, "train", args.data_root, image_size=args.image_size, synth=synth)
        if len(split.classes) != ckpt["num_classes"]:
            raise ValueError(
                f"--dataset: {dataset} has {len(split.classes)} classes, the teacher {ckpt['num_classes']}"
            )
        device = cli.resolve_device(args.device)
        model = models.model_from_checkpoint(ckpt, args.teacher)
        logits = models.predict(
            model.to(device), data.eval_images(split, aug), models.checkpoint_normalization(ckpt), device
        )
        if not torch.isfinite(logits).all():  # entropies of NaN would read as a "structured tail"
            raise ValueError(f"--teacher: '{args.teacher}' outputs non-finite logits (NaN/inf weights?)")
    except ValueError as e:
        cli.fail("advise.py", e)
    stats = teacher_statistics(logits, args.T)
    o = ckpt["origination"]
    print(
        f"teacher {args.teacher}: {ckpt['arch']} on {ckpt['dataset']}, origination: "
        f"{'from scratch' if o.get('from_scratch') else 'pretrained ' + str(o.get('pretrained'))}, "
        f"{o.get('target_epochs')} target epochs; measured on {len(split)} {dataset} train images "
        f"(K = {len(split.classes)}, {aug.image_size} px)"
    )
    print(f"{'T':>5} {'H_rel':>7} {'H_rel^-max':>11} {'p(1st)':>8} {'p(2nd)':>8} {'p(last)':>9}")
    for r in stats:
        print(
            f"{r['T']:>5g} {r['H_rel']:>7.3f} {r['H_rel_without_max']:>11.3f} {r['p1']:>8.4f} {r['p2']:>8.4f} "
            f"{r['p_last']:>9.2e}"
        )
    print(
        f"(relative entropies are H / log K with log K = {math.log(len(split.classes)):.2f}; 1 = uniform, 0 = one-hot)"
    )
    for name, m in distill.wrong_class_mass(logits, split).items():
        print(f"wrong-class probability on the true class's {name}: {m['share']:.1%} (chance {m['chance']:.1%})")
    print()
    for sentence in advice(o, stats, args.novel_classes):
        print("- " + sentence)
    return 0


if __name__ == "__main__":
    sys.exit(main())
