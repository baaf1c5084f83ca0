"""Temperature advisor: which of the paper's situations does this teacher resemble, and what did this repo's lab
measure there?

    python analysis/advise.py --teacher teachers/pets-resnet50-ft20.pt --dataset pets --data-root data
    python analysis/advise.py --teacher results/demo/teachers/synth-fine-ft4.pt --dataset synth-fine
    python analysis/advise.py --validate results/lab      # the advisor against the lab's measured best T

Runs the teacher over the train split (evaluation transform) and prints its relative entropies and sorted
softmax across the temperature grid. Then, for each situation of Frank & Davis (2026) that the teacher's
origination and entropies match: what the paper says (with its section) and what this repo's lab measured
for the findings that test it (label, estimate and Holm-adjusted interval, from a lab's findings.json:
--findings, default docs/lab-findings.json). The recommended T range per optimizer is the paper's where the
lab agrees or could not decide, and "measure" where the lab found the opposite or no effect of m = 1 point;
with --novel-classes, the novel-classes situation decides. It ends with the `study` command that measures T
for this teacher, with an estimated wall time. Guidance, not a guarantee.

Situations (thresholds are this project's reading of the paper's Table 1, not the paper's numbers):
  - trained from scratch                            -> T <= 2            the lab's finding 14
  - H_rel^-max(T=1) >= 0.9: the non-max classes are nearly uniform, like label smoothing (long fine-tuning)
                                                    -> T <= 5 does as well (small T catches up): 12, 13
  - pretrained, briefly fine-tuned, structured tail -> 5 < T <= 40 after long training: 3 (AdamW), 4 (SGD),
                                                       6 (the SGD cross-over), 5 (AdamW more robust)
  - --novel-classes (target classes absent from pretraining)
                                                    -> T <= 2: 17

--validate RESULTS: for each teacher in RESULTS/teachers/*.pt distilled in RESULTS, the advisor's logic on its
origination and on the statistics its runs recorded, beside the lab's best T and the temperatures within m of
it at the longest budget (analysis/which_t.py), per optimizer: "agrees" when the recommended range holds one
of those temperatures, "misses" when it holds none.
"""

import json
import math
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repo root, also when run as a script
import cli  # noqa: E402
import data  # noqa: E402
import distill  # noqa: E402
import grid  # noqa: E402
import kd  # noqa: E402
import models  # noqa: E402
from analysis import aggregate, cells, stats, which_t  # noqa: E402

T_GRID = [1, 2, 3, 4, 5, 10, 20, 30, 40]
UNIFORM_TAIL = 0.9  # H_rel^-max at T=1 above this: the tail looks like label smoothing
DEFAULT_FINDINGS = ROOT / "docs" / "lab-findings.json"
OPTIMIZERS = {"adamw": "AdamW", "sgd": "SGD"}
# T ranges (low, high]: low < T <= high
SMALL = (0.0, cells.SMALL_T)
USUAL = (0.0, cells.USUAL_T)
LARGE = (cells.USUAL_T, 40.0)
NOT_MEASURED = "not measured by this repo's lab"


# ---------------------------------------------------------------------------------------------
# The situations and what the lab measured


@dataclass(frozen=True)
class Situation:
    """One of the paper's situations: what the paper says there, the lab's findings that test it (in the order
    printed) and, per optimizer, the finding whose label decides the paper's T range."""

    name: str
    paper: str
    findings: tuple
    decides: dict


SCRATCH = Situation(
    "trained from random weights",
    "from-scratch teachers did best at T = 1 (Table 1, §4.3: 'a temperature of 1 often performs best')",
    (14,),
    {"adamw": (14, SMALL), "sgd": (14, SMALL)},
)
UNIFORM = Situation(
    "a nearly uniform tail, as after long fine-tuning",
    "such teachers resemble label smoothing, lose student accuracy, and let small T catch up with large T: "
    "little gain above T ≈ 4; a teacher fine-tuned for fewer epochs may distil better (§4.3, Table 1, Fig. 5)",
    (12, 13),
    {"adamw": (13, USUAL), "sgd": (13, USUAL)},
)
BRIEF = Situation(
    "generally pretrained, briefly fine-tuned, with a structured tail",
    "unexpectedly large T (10-40) did best after long distillation (§4.2-4.3, Fig. 3); with SGD and a short budget "
    "smaller T wins first (the cross-over, Fig. 3); AdamW is the more T-robust choice (Fig. 2)",
    (3, 4, 6, 5),
    {"adamw": (3, LARGE), "sgd": (4, LARGE)},
)
NOVEL = Situation(
    "target classes absent from the pretraining (like Cars or Finer-Grained Birds)",
    "accuracy fell with T there: prefer small T (§4.5, Figs. 6-7)",
    (17,),
    {"adamw": (17, SMALL), "sgd": (17, SMALL)},
)
# What a finding's estimate says when it is > 0 (the paper's claim) and when it is < 0
DIRECTIONS = {
    3: ("T above 5 ahead of T <= 5 (AdamW)", "T <= 5 ahead of T above 5 (AdamW)"),
    4: ("T above 5 ahead of T <= 5 (SGD)", "T <= 5 ahead of T above 5 (SGD)"),
    5: ("SGD's range over T wider than AdamW's", "AdamW's range over T wider than SGD's"),
    6: ("small T ahead at the shortest budget and large T at the longest (SGD)", "no cross-over (SGD)"),
    12: ("the long fine-tuned teacher's students worse", "the long fine-tuned teacher's students better"),
    13: (
        "large T's lead smaller with the long fine-tuned teacher",
        "large T's lead larger with the long fine-tuned teacher",
    ),
    14: ("small T ahead of large T (from-scratch teacher)", "large T ahead of small T (from-scratch teacher)"),
    17: ("the novel target prefers smaller T than the overlapping one", "the novel target does not prefer smaller T"),
}


def situations_of(origination, stats_rows, novel_classes):
    """The situations a teacher matches: one from its origination and tail (H_rel^-max at its smallest T), then
    the novel-classes one when asked."""
    at1 = min(stats_rows, key=lambda r: r["T"])
    if origination.get("from_scratch"):
        first = SCRATCH
    elif at1["H_rel_without_max"] >= UNIFORM_TAIL:
        first = UNIFORM
    else:
        first = BRIEF
    return [first] + ([NOVEL] if novel_classes else [])


def lab_words(f):
    """How the advisor phrases a finding's label."""
    if f is None:
        return NOT_MEASURED
    return {
        stats.PRESENT: "the lab agrees",
        stats.OPPOSITE: "the lab found the opposite",
        stats.ABSENT: f"the lab found no effect of {f.get('margin', stats.MARGIN):g} point",
        stats.UNDECIDED: "the lab could not decide",
    }.get(f["label"], f"the lab did not test it ({NOT_MEASURED})")


def label_text(f):
    return f["label"] + (f", {f['size']}" if f.get("size") else "")


def measured_text(f):
    """'T <= 5 ahead of T above 5 (SGD): best top-1 ... = -1.09 points (Holm-adjusted -1.84 to -0.36)'."""
    if f.get("estimate") is None:
        return f.get("missing") or f.get("summary") or "no estimate"
    positive, negative = DIRECTIONS.get(f["id"], ("", ""))
    direction = {stats.PRESENT: positive, stats.OPPOSITE: negative}.get(f["label"], "")
    interval = "no interval"
    if f.get("low_adj") is not None:
        interval = f"Holm-adjusted {f['low_adj']:+.2f} to {f['high_adj']:+.2f}"
    text = f"{f['statistic']} = {f['estimate']:+.2f} points ({interval})"
    return f"{direction}: {text}" if direction else text


def budgets_text(f):
    """Finding 6's trend per budget: 'large minus small T at 16 epochs = 112 steps: -5.80, ...' ('' without)."""
    parts = [
        f"{b['epochs']} epochs" + ("" if b.get("steps") is None else f" = {b['steps']} steps") + f": {b['trend']:+.2f}"
        for b in f.get("budgets") or []
        if b.get("trend") is not None
    ]
    return "large minus small T at " + ", ".join(parts) if parts else ""


def finding_line(finding_id, lab):
    """One line: the lab's finding, its label as the advisor phrases it, and its numbers."""
    f = lab.get(finding_id)
    if f is None:
        return f"finding {finding_id}: not in the lab's findings ({NOT_MEASURED})"
    line = f"finding {finding_id} ({f['claim'].rstrip('.')}, {f['source']}): {lab_words(f)} ({label_text(f)}): "
    line += measured_text(f) + (f" at {f['primary']}" if f.get("primary") else "")
    extra = budgets_text(f)
    return line + (f"; {extra}" if extra else "")


def range_text(r):
    low, high = r
    return f"T <= {high:g}" if low <= 0 else f"{low:g} < T <= {high:g}"


def in_range(T, r):
    return r[0] < T <= r[1]


@dataclass(frozen=True)
class Recommendation:
    """Per optimizer: the T range (None: measure), the finding that decided it and its label (None: no lab)."""

    opt: str
    T_range: tuple | None
    finding: int
    label: str | None
    text: str


def recommend(situation, opt, lab):
    """The situation's T range for one optimizer, kept where the lab agrees, could not decide or did not test it,
    and 'measure' (None) where it found the opposite or no effect of m. lab: {id: finding}, None without one."""
    finding_id, paper_range = situation.decides[opt]
    f = None if lab is None else lab.get(finding_id)
    label = None if f is None else f["label"]
    words = f"{lab_words(f)} (finding {finding_id})" if lab is not None else NOT_MEASURED
    if label in (stats.OPPOSITE, stats.ABSENT):
        text = f"measure: {words}: {measured_text(f)}"
        return Recommendation(opt, None, finding_id, label, text)
    if label == stats.UNDECIDED:
        words += ": measure to be sure"
    text = f"{range_text(paper_range)}, the paper's range; {words}"
    return Recommendation(opt, paper_range, finding_id, label, text)


def recommendations(situations, lab):
    """{optimizer: Recommendation}: the last situation decides (with --novel-classes, the novel one)."""
    return {opt: recommend(situations[-1], opt, lab) for opt in OPTIMIZERS}


def read_findings(path):
    """{id: finding} of a lab's findings.json; ValueError (one line) when it is not one."""
    try:
        decided = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--findings: cannot read '{path}' ({e.__class__.__name__})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--findings: '{path}' is not valid JSON ({e.msg}, line {e.lineno})") from None
    keys = ("id", "claim", "label", "estimate")
    if not isinstance(decided, list) or not all(isinstance(f, dict) and all(k in f for k in keys) for f in decided):
        raise ValueError(f"--findings: '{path}' is not a findings.json (a list of findings with {', '.join(keys)})")
    return {f["id"]: f for f in decided}


def lab_findings(path):
    """(findings {id: finding} or None, a note or ''): the default file may be missing (paper only, said in one
    line); a path given explicitly must be a findings.json."""
    if path is None and not DEFAULT_FINDINGS.is_file():
        return None, f"no lab findings at {DEFAULT_FINDINGS}: the paper's statements only, each {NOT_MEASURED}"
    return read_findings(path or DEFAULT_FINDINGS), ""


def advice_lines(situations, lab, why):
    """The advice as lines: per situation the paper and the lab's findings, then the recommendation per
    optimizer. `why`: {situation name: what in the teacher matches it}."""
    out = []
    for s in situations:
        out.append(f"Situation: {s.name} ({why[s.name]})" if why.get(s.name) else f"Situation: {s.name}")
        out.append(f"- the paper: {s.paper}")
        if lab is None:
            out.append(f"- the lab: {NOT_MEASURED}")
        else:
            out += [f"- the lab: {finding_line(i, lab)}" for i in s.findings]
    out.append("Recommended T (after long training; guidance, not a guarantee):")
    out += [f"- {OPTIMIZERS[o]}: {r.text}" for o, r in recommendations(situations, lab).items()]
    return out


def why_matched(origination, stats_rows):
    """{situation name: what in the teacher matches it}."""
    at1 = min(stats_rows, key=lambda r: r["T"])
    tail = f"H_rel^-max = {at1['H_rel_without_max']:.2f} at T = {at1['T']:g}"
    epochs = origination.get("target_epochs")
    source = origination.get("pretrained") or "unknown source"
    brief = f"pretrained on {source}, fine-tuned {epochs if epochs is not None else 'an unknown number of'} epochs"
    matches = [(SCRATCH, "its origination"), (UNIFORM, tail), (BRIEF, f"{brief}; {tail}"), (NOVEL, "novel classes")]
    return {s.name: text for s, text in matches}


# ---------------------------------------------------------------------------------------------
# The study command


def study_options(args, dataset, synth, image_size, device):
    """The keyword arguments of grid.estimate_study_seconds for this teacher: the study's own student (unless
    --student), budgets and seeds (None: the preset's); one worker per GPU, else per CPU core, as run_all.sh."""
    device = torch.device(device)
    jobs = torch.cuda.device_count() if device.type == "cuda" else os.cpu_count() or 1
    return dict(
        dataset=dataset,
        data_root=args.data_root,
        teacher=args.teacher,
        student=args.student or grid.study_student(dataset),
        image_size=image_size,
        synth=[f"{k}={v}" for k, v in synth.items()],
        budgets=None,
        seeds=None,
        device=device,
        jobs=jobs,
    )


def study_command(options):
    """The one `run_all.sh study` command that measures T for this teacher."""
    cmd = ["bash", "run_all.sh", "study", "--dataset", options["dataset"]]
    if options["dataset"].startswith("synth-"):
        cmd += ["--synth", *options["synth"]] if options["synth"] else []
    else:
        cmd += ["--data-root", options["data_root"]]
    cmd += ["--teacher", str(options["teacher"]), "--student", options["student"]]
    cmd += ["--image-size", str(options["image_size"])] if options["image_size"] else []
    return shlex.join(cmd)


def study_estimate(options):
    """(runs, seconds) of the study, from step rates measured here (grid.estimate_study_seconds)."""
    return grid.estimate_study_seconds(**options)


def duration_text(seconds):
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def study_lines(options):
    """The study command with its estimated wall time (or why there is none)."""
    try:
        runs, seconds = study_estimate(options)
    except ValueError as e:  # the study would refuse this data or teacher: say why
        return [f"Measure T for this teacher ({e}):", "  " + study_command(options)]
    where = f"{options['jobs']} {torch.device(options['device']).type} worker{'s' * (options['jobs'] != 1)}"
    head = f"Measure T for this teacher: {runs} runs, about {duration_text(seconds)} on {where}:"
    return [head, "  " + study_command(options)]


# ---------------------------------------------------------------------------------------------
# Measuring the teacher


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


def measure(args, ckpt):
    """(train split, augmentation, logits, dataset, synth, image size) of the teacher on its train split."""
    dataset = args.dataset or ckpt["dataset"]
    if dataset not in data.DATASETS:
        raise ValueError(f"--dataset: unknown dataset '{dataset}' (expected one of {', '.join(data.DATASETS)})")
    for T in args.T:
        cli.check_range("--T", T, kd.T_RANGE[0], kd.T_RANGE[1])
    synth = cli.parse_key_values(args.synth, "--synth")
    data.check_synth_args(dataset, synth)
    if not synth and dataset == ckpt["dataset"]:  # the built-in data the teacher learned
        synth = (ckpt.get("args") or {}).get("synth") or {}
    image_size = args.image_size
    if image_size is not None:
        cli.check_range("--image-size", image_size, 8, 4096, integer=True)
    trained_at = models.trained_image_size(ckpt)
    if image_size is None and dataset == ckpt["dataset"]:
        image_size = trained_at
    elif image_size is not None and trained_at is not None and image_size != trained_at:
        print(
            f"advise.py: note: --image-size {image_size}: the teacher was trained at {trained_at} px", file=sys.stderr
        )
    elif trained_at is not None and data.aug_config_for(dataset).image_size != trained_at:
        print(
            f"advise.py: note: {dataset} runs at its default {data.aug_config_for(dataset).image_size} px; "
            f"the teacher was trained at {trained_at} px on {ckpt['dataset']} (--image-size chooses)",
            file=sys.stderr,
        )
    aug = data.aug_config_for(dataset, image_size)
    split = data.load_split(dataset, "train", args.data_root, image_size=image_size, synth=synth)
    if len(split.classes) != ckpt["num_classes"]:
        raise ValueError(f"--dataset: {dataset} has {len(split.classes)} classes, the teacher {ckpt['num_classes']}")
    device = cli.resolve_device(args.device)
    model = models.model_from_checkpoint(ckpt, args.teacher)
    logits = models.predict(
        model.to(device), data.eval_images(split, aug), models.checkpoint_normalization(ckpt), device
    )
    if not torch.isfinite(logits).all():  # entropies of NaN would read as a "structured tail"
        raise ValueError(f"--teacher: '{args.teacher}' outputs non-finite logits (NaN/inf weights?)")
    return split, aug, logits, dataset, synth, aug.image_size, device


def print_measurements(args, ckpt, split, aug, logits, dataset, stats_rows):
    o = ckpt["origination"]
    print(
        f"teacher {args.teacher}: {ckpt['arch']} on {ckpt['dataset']}, origination: "
        f"{'from scratch' if o.get('from_scratch') else 'pretrained ' + str(o.get('pretrained'))}, "
        f"{o.get('target_epochs')} target epochs; measured on {len(split)} {dataset} train images "
        f"(K = {len(split.classes)}, {aug.image_size} px)"
    )
    print(f"{'T':>5} {'H_rel':>7} {'H_rel^-max':>11} {'p(1st)':>8} {'p(2nd)':>8} {'p(last)':>9}")
    for r in stats_rows:
        print(
            f"{r['T']:>5g} {r['H_rel']:>7.3f} {r['H_rel_without_max']:>11.3f} {r['p1']:>8.4f} {r['p2']:>8.4f} "
            f"{r['p_last']:>9.2e}"
        )
    print(
        f"(relative entropies are H / log K with log K = {math.log(len(split.classes)):.2f}; 1 = uniform, 0 = one-hot)"
    )
    for name, m in distill.wrong_class_mass(logits, split).items():
        print(f"wrong-class probability on the true class's {name}: {m['share']:.1%} (chance {m['chance']:.1%})")


# ---------------------------------------------------------------------------------------------
# Validation: the advisor against a lab's measured best T


def recorded_statistics(rows):
    """The teacher's statistics as its runs recorded them: [{T, H_rel, H_rel_without_max}], one per T."""
    out = {}
    for r in rows:
        if r.get("stats_T") is not None and r.get("H_rel_without_max") is not None:
            out.setdefault(
                r["stats_T"], {"T": r["stats_T"], "H_rel": r["H_rel"], "H_rel_without_max": r["H_rel_without_max"]}
            )
    return [out[T] for T in sorted(out)]


def lab_pick(entries):
    """The which-T entry of one teacher and optimizer at its longest budget (preferring a random-init student at
    batch 64, then the most runs); None without one."""
    if not entries:
        return None
    top = max(e["epochs"] for e in entries)
    return min(
        (e for e in entries if e["epochs"] == top),
        key=lambda e: (e["setting"]["student_init"] != "random", e["bs"] != cells.BASELINE_BS, -len(e["runs"])),
    )


def verdict(rec, entry):
    """'agrees' when the recommended range holds a T within m of the lab's best, 'misses' when it holds none;
    '–' when the advisor says measure or the lab did not run this optimizer."""
    if entry is None or rec.T_range is None:
        return "–"
    return "agrees" if any(in_range(T, rec.T_range) for T in entry["within_m"]) else "misses"


def validation_row(name, ckpt, rows, entries, lab):
    """{teacher, situations, per_opt: {optimizer: (Recommendation, lab entry, verdict)}} of one teacher; None when
    its runs recorded no statistics."""
    stats_rows = recorded_statistics(rows)
    if not stats_rows:
        return None
    novel = any(cells.is_novel(r) for r in rows)
    situations = situations_of(ckpt["origination"], stats_rows, novel)
    why = why_matched(ckpt["origination"], stats_rows)
    recs = recommendations(situations, lab)
    per_opt = {}
    for opt, rec in recs.items():
        entry = lab_pick([e for e in entries if e["teacher"] == name and e["opt"] == opt])
        per_opt[opt] = (rec, entry, verdict(rec, entry))
    return {"teacher": name, "situations": [f"{s.name} ({why[s.name]})" for s in situations], "per_opt": per_opt}


def advisor_cell(rec):
    if rec.T_range is None:
        return f"measure (finding {rec.finding}: {rec.label})"
    return range_text(rec.T_range) + (f" (finding {rec.finding}: {rec.label})" if rec.label else f" ({NOT_MEASURED})")


def lab_cell(entry):
    if entry is None:
        return "not run"
    within = ", ".join(f"{T:g}" for T in entry["within_m"])
    return f"{entry['best_T']:g} ({within}) at {which_t.budget_text(entry)}"


def validation_table(results_dir, lab):
    """Markdown lines: one row per teacher of RESULTS/teachers/*.pt that was distilled in RESULTS."""
    records, _ = aggregate.load_results(results_dir)
    rows = aggregate.distill_rows(records)
    aggregate.check_duplicates(rows)
    rows = cells.finished(rows)
    entries = which_t.which_t(rows)
    header = "| teacher | the advisor reads |"
    rule = "|---|---|"
    for name in OPTIMIZERS.values():
        header += f" {name}: the advisor | {name}: the lab's best T (within m), budget | {name} |"
        rule += "---|---|---|"
    lines = [header, rule]
    for path in sorted((Path(results_dir) / "teachers").glob("*.pt")):
        mine = [r for r in rows if r.get("teacher") == path.stem]
        row = validation_row(path.stem, models.load_checkpoint(path), mine, entries, lab) if mine else None
        if row is None:
            continue
        cells_ = [row["teacher"], "; ".join(row["situations"])]
        for rec, entry, agree in row["per_opt"].values():
            cells_ += [advisor_cell(rec), lab_cell(entry), agree]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells_) + " |")
    return lines


def validate(results_dir, findings_path):
    """Print the validation table; the lab's findings: --findings, else RESULTS/findings.json, else the default."""
    if not Path(results_dir).is_dir():
        raise ValueError(f"--validate: '{results_dir}' is not a folder")
    own = Path(results_dir) / "findings.json"
    path = findings_path or (own if own.is_file() else None)
    lab, note = lab_findings(path)
    if note:
        print(f"advise.py: note: {note}", file=sys.stderr)
    lines = validation_table(results_dir, lab)
    source = "none" if lab is None else path or DEFAULT_FINDINGS
    print(f"The advisor against the lab's measured best T ({results_dir}; the lab's findings: {source}):")
    print()
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------------------------


def main(argv=None):
    p = cli.ArgumentParser(prog="advise.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default=None, help="teacher checkpoint made by train_teacher.py")
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
    p.add_argument("--student", default=None, help="student of the study command (default: the study's)")
    p.add_argument(
        "--findings", default=None, help="a lab's findings.json (default: docs/lab-findings.json in the repo)"
    )
    p.add_argument("--validate", default=None, metavar="RESULTS", help="the advisor against a lab's results folder")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    try:
        if args.validate is not None:
            return validate(args.validate, args.findings)
        if args.teacher is None:
            raise ValueError("--teacher: required (or --validate RESULTS)")
        lab, note = lab_findings(args.findings)
        ckpt = models.load_checkpoint(args.teacher)
        split, aug, logits, dataset, synth, image_size, device = measure(args, ckpt)
    except (ValueError, aggregate.AnalysisError) as e:
        cli.fail("advise.py", e)
    if note:
        print(f"advise.py: note: {note}", file=sys.stderr)
    stats_rows = teacher_statistics(logits, args.T)
    print_measurements(args, ckpt, split, aug, logits, dataset, stats_rows)
    o = ckpt["origination"]
    print()
    print("\n".join(advice_lines(situations_of(o, stats_rows, args.novel_classes), lab, why_matched(o, stats_rows))))
    print()
    print("\n".join(study_lines(study_options(args, dataset, synth, image_size, device))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
