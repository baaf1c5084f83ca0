"""Run folders -> one flat row per run -> mean, std and n over seeds (results.csv).

    python analysis/aggregate.py RESULTS [--out RESULTS/results.csv]

Every result.json below RESULTS is read; files that are empty, truncated, not JSON objects or not
run results are reported (path + reason) and skipped. Two finished runs of one configuration and seed
are an error (one line; nothing written). Standard library only.
"""

import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, also when run as a script
from runs import atomic_write  # noqa: E402

# What makes two runs the same experiment (seeds of one configuration are averaged).
CONFIG_COLUMNS = ["dataset", "data_id", "data_key", "teacher", "teacher_arch", "teacher_from_scratch",
                  "teacher_target_epochs", "student", "student_init", "method", "signal", "k", "opt", "bs", "epochs",
                  "T"]  # fmt: skip
# One row per distillation run (the CSV written by --runs-out).
RUN_COLUMNS = CONFIG_COLUMNS + ["seed", "status", "teacher_top1", "top1", "top5", "agreement", "best_top1", "H_rel",
                                "H_rel_without_max", "run_id", "code_version", "run_dir"]  # fmt: skip
# Properties of the teacher (the same for every seed); averaged, not grouped on.
TEACHER_COLUMNS = ["teacher_top1", "H_rel", "H_rel_without_max"]
METRICS = ["top1", "top5", "agreement", "best_top1"]
AGGREGATE_COLUMNS = (
    CONFIG_COLUMNS + TEACHER_COLUMNS + [f"{m}_{s}" for m in METRICS for s in ("mean", "std", "n")] + ["n_failed"]
)
REQUIRED_KEYS = {"train": ("status", "kind", "config"), "distill": ("status", "kind", "config", "teacher")}


class AnalysisError(Exception):
    """Results the analysis refuses to merge (one line saying what and how to fix it)."""


# ---------------------------------------------------------------------------------------------
# Reading


def read_result(path):
    """(result dict, None) for a usable result.json, else (None, one-line reason)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        return None, f"unreadable ({e.__class__.__name__}: {e})"
    if not text.strip():
        return None, "empty file"
    try:
        result = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"not valid JSON, truncated? ({e.msg}: line {e.lineno}, column {e.colno})"
    if not isinstance(result, dict):
        return None, f"not a run result (a JSON {type(result).__name__}, expected an object)"
    required = REQUIRED_KEYS.get(result.get("kind"), REQUIRED_KEYS["distill"])
    missing = [k for k in required if k not in result]
    if missing:
        return None, f"not a run result (missing keys: {', '.join(missing)})"
    if result["kind"] == "distill":
        try:
            flatten(result)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            return None, f"malformed distillation result ({e.__class__.__name__}: {e})"
    return result, None


def load_results(root):
    """Every result.json below `root` -> (records, problems).

    A record is the parsed result plus "run_dir" (its folder, relative to root); a problem is
    (path, reason) for a file that was skipped. Symbolic links to folders are not followed."""
    root = Path(root)
    if not root.is_dir():
        return [], [(str(root), "not a folder")]
    records, problems = [], []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if "result.json" not in files:
            continue
        path = Path(folder) / "result.json"
        result, reason = read_result(path)
        if reason:
            problems.append((str(path), reason))
            continue
        result["run_dir"] = Path(folder).relative_to(root).as_posix()
        records.append(result)
    return records, problems


# ---------------------------------------------------------------------------------------------
# One flat row per run


def teacher_name(path):
    """'teachers/synth-fine-ft2.pt' -> 'synth-fine-ft2' (the teacher's identity in tables)."""
    return Path(str(path)).stem if path else None


def student_init_kind(result):
    """'random', 'in1k', 'pretrained' (a checkpoint never trained on the target: the role of ImageNet weights),
    'TT' (trained on the target from random) or 'FT' (pretrained, then fine-tuned on the target)."""
    origination = result.get("student_origination") or {}
    init = origination.get("init", result["config"].get("student_init"))
    if init in (None, "random", "in1k"):
        return init
    if not origination.get("target_epochs"):
        return "pretrained"
    return "TT" if origination.get("from_scratch") else "FT"


def _number(value, kind=float):
    return None if value is None else kind(value)


def data_key(config):
    """8 hex digits naming the data and augmentation of a run, whatever the dataset: the built-in data's sizes
    (config["synth"]), the augmentation and the image folder. synth-fine and synth-novel runs with the same
    --synth sizes share it; results without those keys get the key of what is there."""
    part = {k: config.get(k) for k in ("synth", "aug", "data_id")}
    return hashlib.sha1(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()[:8]


def steps_per_epoch(result):
    """Optimizer steps per epoch (floor(train images / batch)) as the result records it, else None."""
    if result.get("steps_per_epoch") is not None:
        return int(result["steps_per_epoch"])
    found = [c["steps_per_epoch"] for c in result.get("curve") or [] if isinstance(c, dict) and "steps_per_epoch" in c]
    return int(found[0]) if found else None


def flatten(result):
    """One distillation result.json -> one flat row (RUN_COLUMNS, plus the teacher's sorted softmax).

    The extra keys "stats_T", "sorted_softmax" (teacher statistics, Fig. 4), "curve" ([(epoch, top1)] of the
    evaluated epochs), "wrong_class_mass", "steps_per_epoch" and "config" (the run's whole configuration) are
    not CSV columns."""
    cfg = result["config"]
    teacher = result.get("teacher") or {}
    t_origin = teacher.get("origination") or {}
    stats = teacher.get("statistics") or {}
    ok = result["status"] == "ok"
    final = (result.get("final") or {}) if ok else {}
    best = (result.get("best") or {}) if ok else {}
    return {
        "dataset": cfg.get("dataset"),
        "data_id": cfg.get("data_id"),
        "data_key": data_key(cfg),
        "teacher": teacher_name(teacher.get("path")),
        "teacher_arch": cfg.get("teacher_arch") or teacher.get("arch"),
        "teacher_from_scratch": t_origin.get("from_scratch"),
        "teacher_target_epochs": _number(t_origin.get("target_epochs"), int),
        "teacher_top1": _number(teacher.get("top1")),
        "student": cfg.get("student"),
        "student_init": student_init_kind(result),
        "method": cfg.get("method"),
        "signal": cfg.get("signal"),
        "k": _number(cfg.get("k"), int),
        "opt": cfg.get("opt"),
        "bs": _number(cfg.get("bs"), int),
        "epochs": _number(cfg.get("epochs"), int),
        "T": _number(result.get("T", cfg.get("T"))),
        "seed": _number(cfg.get("seed", result.get("seed")), int),
        "status": result["status"],
        "top1": _number(final.get("top1")),
        "top5": _number(final.get("top5")),
        "agreement": _number(final.get("agreement")),
        "best_top1": _number(best.get("top1")),
        "H_rel": _number(stats.get("H_rel")),
        "H_rel_without_max": _number(stats.get("H_rel_without_max")),
        "run_id": result.get("run_id"),
        "code_version": result.get("code_version"),
        "run_dir": result.get("run_dir", ""),
        "stats_T": _number(stats.get("T")),
        "sorted_softmax": stats.get("mean_sorted_softmax"),
        "curve": [(c["epoch"], c["top1"]) for c in result.get("curve") or [] if isinstance(c, dict) and "top1" in c],
        "wrong_class_mass": teacher.get("wrong_class_mass"),
        "steps_per_epoch": steps_per_epoch(result),
        "config": cfg,
    }


def distill_rows(records):
    """Flat rows of the distillation runs among `records` (teacher-training runs are left out)."""
    return [flatten(r) for r in records if r.get("kind") == "distill"]


def check_duplicates(rows):
    """Raise AnalysisError when two finished runs share every configuration column and the seed: one of them
    is stale or foreign, and averaging either silently would be wrong."""
    seen = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        key = (*(r.get(c) for c in CONFIG_COLUMNS), r.get("seed"))
        if key in seen:
            a, b = seen[key], r
            ca, cb = a.get("config") or {}, b.get("config") or {}
            differ = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k))
            raise AnalysisError(
                f"two runs of one configuration and seed: {a['run_dir']} and {b['run_dir']} (their configs differ "
                f"in: {', '.join(differ) or 'nothing'}); move one out of the results folder"
            )
        seen[key] = r


# ---------------------------------------------------------------------------------------------
# Mean over seeds


def mean_std_n(values):
    """(mean, sample std, n) of the finite values; std is 0 for n = 1, and (None, None, 0) for none."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return None, None, 0
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, std, len(xs)


def sort_key(values):
    """Orders tuples that mix numbers, strings and None (numbers first, None last)."""

    def one(v):
        if v is None:
            return (2, 0, "")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return (0, v, "")
        return (1, 0, str(v))

    return tuple(one(v) for v in values)


def aggregate(rows):
    """Flat run rows -> one row per configuration (CONFIG_COLUMNS): mean/std/n of each metric over
    the runs that finished, the teacher's properties, and n_failed (runs whose status is not ok)."""
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row.get(c) for c in CONFIG_COLUMNS), []).append(row)
    out = []
    for key in sorted(groups, key=sort_key):
        members = groups[key]
        ok = [r for r in members if r.get("status") == "ok"]
        agg = dict(zip(CONFIG_COLUMNS, key))
        for column in TEACHER_COLUMNS:
            agg[column] = mean_std_n([r.get(column) for r in members])[0]
        for metric in METRICS:
            agg[f"{metric}_mean"], agg[f"{metric}_std"], agg[f"{metric}_n"] = mean_std_n([r.get(metric) for r in ok])
        agg["n_failed"] = len(members) - len(ok)
        out.append(agg)
    return out


# ---------------------------------------------------------------------------------------------
# Writing


def write_csv(rows, path, columns):
    """Write `rows` (dicts) as CSV with `columns`, atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return atomic_write(path, text.getvalue())


def print_problems(problems, prog):
    for path, reason in problems:
        print(f"{prog}: skipped {path}: {reason}", file=sys.stderr)


def main(argv=None):
    p = argparse.ArgumentParser(description="Aggregate result.json files (mean/std/n over seeds) into a CSV.")
    p.add_argument("results", help="folder holding run folders (at any depth)")
    p.add_argument("--out", default=None, help="CSV of configurations (default: RESULTS/results.csv)")
    p.add_argument("--runs-out", default=None, help="also write one CSV row per run here")
    args = p.parse_args(argv)
    prog = "aggregate.py"
    if not Path(args.results).is_dir():
        print(f"{prog}: error: RESULTS '{args.results}' is not a folder", file=sys.stderr)
        return 2
    records, problems = load_results(args.results)
    print_problems(problems, prog)
    rows = distill_rows(records)
    try:
        check_duplicates(rows)
    except AnalysisError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    table = aggregate(rows)
    out = write_csv(table, args.out or Path(args.results) / "results.csv", AGGREGATE_COLUMNS)
    if args.runs_out:
        write_csv(rows, args.runs_out, RUN_COLUMNS)
    n_failed = sum(r["status"] != "ok" for r in rows)
    print(f"{prog}: {len(rows)} distillation runs ({n_failed} failed) -> {len(table)} configurations -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
