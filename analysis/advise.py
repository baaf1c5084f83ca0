"""Temperature advisor: which of the paper's situations does this teacher resemble, and what did this repo's lab
measure there?

    python -m analysis.advise --teacher teachers/pets-resnet50-ft20.pt --dataset pets --data-root data
    python -m analysis.advise --teacher results/demo/teachers/synth-fine-ft4.pt

Runs the teacher over its train split (evaluation transform) and prints its relative entropies and sorted softmax
over the temperature grid. Then, for the situation its origination and entropies match, what the paper says and
the lab's labels for the findings that test it (from a lab's findings.json: --findings, default
docs/lab-findings.json), with their scope. The recommended T range per optimizer is the paper's where the lab
agrees or could not decide, and "measure" where it found the opposite or no effect of m = 1 point. It ends with
the `study` command that measures T for this teacher (`--dry-run` on it prints its estimated wall time).

Situations (thresholds are this project's reading of the paper's Table 1, not the paper's numbers):
  trained from scratch                                -> T <= 5 (finding 14)
  H_rel^-max(T=1) >= 0.9, a nearly uniform tail        -> T <= 5 does as well (findings 12, 13)
  pretrained, briefly fine-tuned, structured tail     -> 5 < T <= 40 after long training (findings 3, 4, 6)
  --novel-classes (target classes absent from pretraining) -> T <= 5 (finding 17)
"""

import json
import math
import shlex
import sys
from pathlib import Path

import torch

import cli
import data
import kd
import models
from analysis import stats

DEFAULT_FINDINGS = Path(__file__).resolve().parent.parent / "docs" / "lab-findings.json"
T_GRID = [1, 2, 4, 8, 40]
UNIFORM_TAIL = 0.9
USUAL, LARGE = "T <= 5", "5 < T <= 40"
OPTIMIZERS = {"adamw": "AdamW", "sgd": "SGD"}
# name, the paper, the lab's findings that test it, the finding that decides each optimizer's range, the range
SITUATIONS = {
    "scratch": ("trained from random weights", "from-scratch teachers did best at small T (Table 1, §4.3)",
                (14,), {"adamw": 14, "sgd": 14}, USUAL),
    "uniform": ("a nearly uniform tail, as after long fine-tuning", "such teachers resemble label smoothing, lose "
                "student accuracy and let small T catch up with large T (§4.3, Table 1)", (12, 13),
                {"adamw": 13, "sgd": 13}, USUAL),
    "brief": ("generally pretrained, briefly fine-tuned, with a structured tail", "large T (10-40) did best after "
              "long distillation; with SGD and a short budget small T wins first (§4.2, Figs. 2-3)", (3, 4, 6),
              {"adamw": 3, "sgd": 4}, LARGE),
    "novel": ("target classes absent from the pretraining", "accuracy fell with T there: prefer small T (§4.5, "
              "Figs. 6-7)", (17,), {"adamw": 17, "sgd": 17}, USUAL),
}  # fmt: skip
WORDS = {stats.PRESENT: "the lab agrees", stats.OPPOSITE: "the lab found the opposite",
         stats.ABSENT: "the lab found no effect of 1 point", stats.UNDECIDED: "the lab could not decide"}  # fmt: skip


def statistics_by_T(logits, temps):
    """Per T: train-set means of H_rel and H_rel^-max, and the first, second and last mean sorted probability."""
    rows = []
    for T in temps:
        h, h_rest = kd.relative_entropies(logits, T)
        p = kd.mean_sorted_softmax(logits, T)
        rows.append(dict(T=T, H_rel=h.mean().item(), H_rel_without_max=h_rest.mean().item(), p=p.tolist()))
    return rows


def situation_of(origination, at1, novel_classes):
    """The key of SITUATIONS this teacher matches (--novel-classes decides when given)."""
    if novel_classes:
        return "novel"
    if origination.get("from_scratch"):
        return "scratch"
    return "uniform" if at1["H_rel_without_max"] >= UNIFORM_TAIL else "brief"


def read_findings(path):
    """{id: finding} of a lab's findings.json; ValueError (one line) when it is not one."""
    try:
        found = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--findings: cannot read '{path}' as JSON ({e.__class__.__name__})") from None
    if not isinstance(found, list) or not all(isinstance(f, dict) and {"id", "label"} <= set(f) for f in found):
        raise ValueError(f"--findings: '{path}' is not a findings.json (a list of findings with id and label)")
    return {f["id"]: f for f in found}


def finding_line(f):
    """'finding 3 (claim): the lab could not decide (undecided): +0.43 (-0.26 to +1.05); rests on ...'."""
    if f is None:
        return "not in the lab's findings"
    numbers = "" if f.get("estimate") is None else f": {f['estimate']:+.2f}"
    if f.get("low") is not None:
        numbers += f" ({f['low']:+.2f} to {f['high']:+.2f}, simultaneous)"
    scope = f"; rests on {f['scope']}" if f.get("scope") else ""
    words = WORDS.get(f["label"], "the lab did not test it")
    return f"finding {f['id']} ({f['claim'].rstrip('.')}): {words} ({f['label']}){numbers}{scope}"


def recommendation(situation, opt, lab):
    """The situation's T range for one optimizer, or 'measure' where the lab found the opposite or no effect."""
    _, _, _, decides, paper_range = SITUATIONS[situation]
    f = (lab or {}).get(decides[opt])
    if f is not None and f["label"] in (stats.OPPOSITE, stats.ABSENT):
        return f"measure: {WORDS[f['label']]} (finding {f['id']})"
    why = "not measured by the lab" if f is None else f"{WORDS.get(f['label'], 'untested')} (finding {f['id']})"
    return f"{paper_range}, the paper's range; {why}"


def advice_lines(situation, lab, why):
    name, paper, ids, _, _ = SITUATIONS[situation]
    out = [f"Situation: {name} ({why})", f"- the paper: {paper}"]
    out += [f"- the lab: {finding_line((lab or {}).get(i))}" for i in ids] if lab else ["- the lab: no findings"]
    out.append("Recommended T (after long training; guidance, not a guarantee):")
    return out + [f"- {OPTIMIZERS[o]}: {recommendation(situation, o, lab)}" for o in OPTIMIZERS]


def measure(args, ckpt):
    """(dataset, synth, image size, train split, logits) of the teacher on its train split."""
    dataset = args.dataset or ckpt["dataset"]
    if dataset not in data.DATASETS:
        raise ValueError(f"--dataset: unknown dataset '{dataset}' (expected one of {', '.join(data.DATASETS)})")
    for T in args.T:
        cli.check_range("--T", T, kd.T_RANGE[0], kd.T_RANGE[1])
    synth = cli.parse_key_values(args.synth, "--synth")
    data.check_synth_args(dataset, synth)
    if not synth and dataset == ckpt["dataset"]:  # the built-in data the teacher learned
        synth = (ckpt.get("args") or {}).get("synth") or {}
    image_size, trained_at = args.image_size, models.trained_image_size(ckpt)
    default = data.aug_config_for(dataset).image_size
    if image_size is None and dataset == ckpt["dataset"]:
        image_size = trained_at
    elif image_size is not None and trained_at is not None and image_size != trained_at:
        print(
            f"advise.py: note: --image-size {image_size}: the teacher was trained at {trained_at} px", file=sys.stderr
        )
    elif trained_at is not None and default != trained_at:
        print(f"advise.py: note: {dataset} runs at its default {default} px; the teacher was trained at {trained_at} "
              f"px on {ckpt['dataset']} (--image-size chooses)", file=sys.stderr)  # fmt: skip
    aug = data.aug_config_for(dataset, image_size)
    split = data.load_split(dataset, "train", args.data_root, image_size=image_size, synth=synth)
    if len(split.classes) != ckpt["num_classes"]:
        raise ValueError(f"--dataset: {dataset} has {len(split.classes)} classes, the teacher {ckpt['num_classes']}")
    device = cli.resolve_device(args.device)
    model = models.model_from_checkpoint(ckpt, args.teacher).to(device)
    logits = models.predict(model, data.eval_images(split, aug), models.checkpoint_normalization(ckpt), device)
    if not torch.isfinite(logits).all():  # entropies of NaN would read as a "structured tail"
        raise ValueError(f"--teacher: '{args.teacher}' outputs non-finite logits (NaN/inf weights?)")
    return dataset, synth, aug.image_size, split, logits


def study_command(args, dataset, synth, image_size):
    """The one `run_all.sh study` command that measures T for this teacher."""
    cmd = ["bash", "run_all.sh", "study", "--dataset", dataset, "--teacher", str(args.teacher)]
    if dataset.startswith("synth-"):
        cmd += ["--synth", *(f"{k}={v}" for k, v in synth.items())] if synth else []
    else:
        cmd += ["--data-root", args.data_root, "--image-size", str(image_size)]
    return shlex.join(cmd + (["--student", args.student] if args.student else []))


def main(argv=None):
    p = cli.ArgumentParser(prog="advise.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="teacher checkpoint made by train_teacher.py")
    p.add_argument("--dataset", default=None, help="dataset to measure on (default: the teacher's own)")
    p.add_argument("--data-root", default="data", help="folder holding the dataset")
    cli.add_key_values(p, "--synth", "built-in dataset sizes, as in distill.py (default: the teacher's own)")
    p.add_argument("--image-size", type=int, default=None, help="resolution (default: the teacher's own)")
    p.add_argument("--T", type=float, nargs="+", default=T_GRID, help="temperatures to report")
    p.add_argument("--novel-classes", action="store_true", help="the target's classes are absent from pretraining")
    p.add_argument("--student", default=None, help="student of the study command (default: the study's)")
    p.add_argument("--findings", default=None, help="a lab's findings.json (default: docs/lab-findings.json)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    try:
        if args.image_size is not None:
            cli.check_range("--image-size", args.image_size, 8, 4096, integer=True)
        lab = read_findings(args.findings or DEFAULT_FINDINGS) if args.findings or DEFAULT_FINDINGS.is_file() else None
        ckpt = models.load_checkpoint(args.teacher)
        dataset, synth, image_size, split, logits = measure(args, ckpt)
    except ValueError as e:
        cli.fail("advise.py", e)
    rows, o = statistics_by_T(logits, sorted(args.T)), ckpt["origination"]
    where = f"{len(split)} {dataset} train images (K = {len(split.classes)}, {image_size} px)"
    print(f"teacher {args.teacher}: {ckpt['arch']} on {ckpt['dataset']}; measured on {where}")
    print(f"{'T':>5} {'H_rel':>7} {'H_rel^-max':>11} {'p(1st)':>8} {'p(2nd)':>8} {'p(last)':>9}")
    for r in rows:
        p1, p2, pk = r["p"][0], r["p"][1], r["p"][-1]
        print(f"{r['T']:>5g} {r['H_rel']:>7.3f} {r['H_rel_without_max']:>11.3f} {p1:>8.4f} {p2:>8.4f} {pk:>9.2e}")
    print(f"(relative entropies are H / log K, log K = {math.log(len(split.classes)):.2f}: 1 uniform, 0 one-hot)\n")
    situation = situation_of(o, rows[0], args.novel_classes)
    origin = "from scratch" if o.get("from_scratch") else "pretrained"
    why = f"{origin}; H_rel^-max = {rows[0]['H_rel_without_max']:.2f} at T = {rows[0]['T']:g}"
    print("\n".join(advice_lines(situation, lab, why)))
    print(
        "\nMeasure T for this teacher (add --dry-run for the runs and an estimated wall time):\n  "
        + study_command(args, dataset, synth, image_size)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
