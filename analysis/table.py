"""Run folders -> one table of runs, loaded once: one flat dict per distillation run.

A cell is one whole configuration: everything a run's identity holds (data and augmentation, teacher recipe,
student, initialisation, method, signal, recipe, T) except its seed and its teacher's weights. The seed is the
replicate unit: in the lab each seed has its own teachers (trained with that seed) and its own students, so a
statistic computed per seed and compared over seeds holds the variation of both. A teacher is named by its
recipe (how train_teacher.py made it, seed aside), or by its weights when the checkpoint has no recipe.
Standard library only.
"""

import csv
import hashlib
import io
import json
import os
import re
from pathlib import Path

from analysis import stats
from runs import atomic_write

# The columns a finding selects on (readable); `cell` is the hash of the whole configuration.
CONFIG = ["dataset", "data", "teacher", "teacher_kind", "teacher_epochs", "student", "init", "method", "signal", "k",
          "opt", "bs", "epochs", "T"]  # fmt: skip
COLUMNS = CONFIG + ["seed", "top1", "top5", "agreement", "teacher_seed", "teacher_top1", "H_rel", "H_rel_without_max",
                    "cell", "run_id", "code_version", "run_dir"]  # fmt: skip


class AnalysisError(Exception):
    """Results the analysis refuses to merge (one line saying what and how to fix it)."""


def short_hash(value):
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]


def read_result(path):
    """(result dict, None) for a usable result.json, else (None, one-line reason)."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as e:
        return None, f"unreadable ({e.__class__.__name__})"
    except json.JSONDecodeError as e:
        return None, f"not valid JSON, truncated? ({e.msg}: line {e.lineno})"
    if not isinstance(result, dict) or not {"status", "kind", "config"} <= set(result):
        return None, "not a run result (expected an object with status, kind and config)"
    return result, None


def load_results(root):
    """Every result.json below `root` -> (records, problems: [(path, reason)]); record["run_dir"] is relative."""
    records, problems = [], []
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        if "result.json" in files:
            result, reason = read_result(Path(folder) / "result.json")
            if reason:
                problems.append((str(Path(folder) / "result.json"), reason))
                continue
            result["run_dir"] = Path(folder).relative_to(root).as_posix()
            records.append(result)
    return records, problems


def teacher_name(teacher):
    """'teachers/synth-fine-ft4-t2.pt' -> 'synth-fine-ft4' (its seed tag dropped: one name per recipe)."""
    return re.sub(r"-t\d+$", "", Path(str(teacher["path"])).stem) if teacher else None


def teacher_key(teacher, config):
    """The teacher's part of the cell: its recipe without the seed, or its weights when it has no recipe."""
    if not teacher:
        return None
    recipe = teacher.get("recipe")
    if recipe:
        return {k: v for k, v in recipe.items() if k != "seed"}
    return config.get("teacher_weights_sha1")


def init_kind(result):
    """'random', 'in1k', 'pretrained' (never trained on the target), 'TT' (target, from random) or 'FT'."""
    origination = result.get("student_origination") or {}
    init = origination.get("init", result["config"].get("student_init"))
    if init in (None, "random", "in1k"):
        return init
    if not origination.get("target_epochs"):
        return "pretrained"
    return "TT" if origination.get("from_scratch") else "FT"


def row_of(result):
    """One distillation result.json -> one flat row (COLUMNS, plus curve, stats and steps_per_epoch)."""
    cfg, teacher = result["config"], result.get("teacher") or {}
    origin, stats = teacher.get("origination") or {}, teacher.get("statistics") or {}
    final = (result.get("final") or {}) if result["status"] == "ok" else {}
    data = {k: cfg.get(k) for k in ("dataset", "data_id", "synth", "aug", "data_sha1")}
    cell = {k: v for k, v in cfg.items() if k not in ("seed", "teacher_weights_sha1")}
    T = result.get("T", cfg.get("T"))
    return {
        "dataset": cfg.get("data_id") or cfg.get("dataset"),
        "data": short_hash(data),
        "synth": cfg.get("synth") if str(cfg.get("dataset")).startswith("synth") else None,
        "teacher": teacher_name(teacher),
        "teacher_kind": None if not teacher else ("scratch" if origin.get("from_scratch") else "ft"),
        "teacher_epochs": origin.get("target_epochs") if teacher else None,
        "student": cfg.get("student"),
        "init": init_kind(result),
        "method": cfg.get("method"),
        "signal": cfg.get("signal"),
        "k": cfg.get("k"),
        "opt": cfg.get("opt"),
        "bs": cfg.get("bs"),
        "epochs": cfg.get("epochs"),
        "T": None if T is None else float(T),
        "seed": cfg.get("seed"),
        "status": result["status"],
        "top1": final.get("top1"),
        "top5": final.get("top5"),
        "agreement": final.get("agreement"),
        "teacher_seed": (teacher.get("recipe") or {}).get("seed"),
        "teacher_weights": cfg.get("teacher_weights_sha1"),
        "teacher_top1": teacher.get("top1"),
        "H_rel": stats.get("H_rel"),
        "H_rel_without_max": stats.get("H_rel_without_max"),
        "stats_T": stats.get("T"),
        "sorted_softmax": stats.get("mean_sorted_softmax"),
        "cell": short_hash([cell, teacher_key(teacher, cfg)]),
        "config": cfg,
        "curve": [(c["epoch"], c["top1"]) for c in result.get("curve") or [] if "top1" in c],
        "steps_per_epoch": result.get("steps_per_epoch"),
        "run_id": result.get("run_id"),
        "code_version": result.get("code_version"),
        "device": result.get("device"),
        "versions": result.get("versions"),
        "run_dir": result.get("run_dir", ""),
    }


def load_table(root):
    """(rows of the finished distillation runs, every distillation row, train records, problems) below `root`.
    Two finished runs of one cell and seed are an AnalysisError: one of them is stale or foreign."""
    records, problems = load_results(root)
    rows = []
    for r in records:
        if r.get("kind") != "distill":
            continue
        try:
            rows.append(row_of(r))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            problems.append((r["run_dir"], f"malformed distillation result ({e.__class__.__name__}: {e})"))
    done = [r for r in rows if r["status"] == "ok" and r["top1"] is not None and r["seed"] is not None]
    seen = {}
    for r in done:
        other = seen.setdefault((r["cell"], r["seed"]), r)
        if other is not r:
            differ = sorted(
                k for k in set(r["config"]) | set(other["config"]) if r["config"].get(k) != other["config"].get(k)
            )
            raise AnalysisError(
                f"two runs of one configuration and seed: {other['run_dir']} and {r['run_dir']} (they differ in: "
                f"{', '.join(differ) or 'the teacher'}); move one out of the results folder"
            )
    trained = [r for r in records if r.get("kind") == "train"]
    return done, rows, trained, problems


def config_differences(rows):
    """The identity keys in which the runs' configurations differ (what split one selection into cells)."""
    configs = [r["config"] for r in rows]
    keys = sorted({k for c in configs for k in c} - {"seed", "teacher_weights_sha1"})
    out = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    return out or ["the teacher's recipe"]


# ---------------------------------------------------------------------------------------------
# Expected runs (manifest/expected.json, written by grid.py)


def expected_key(run):
    """The fields an expected run is matched on, as strings (a synth size of 200 is '200' in either)."""
    synth = {k: str(v) for k, v in (run.get("synth") or {}).items()}
    T, teacher = run.get("T"), re.sub(r"-t\d+$", "", str(run.get("teacher")))
    fields = ("dataset", "student", "method", "signal", "k", "opt", "bs", "epochs")
    init = run.get("init", run.get("student_init"))  # a row's name for it, an expected run's
    settings = (teacher, str(init), *(str(run.get(f)) for f in fields), json.dumps(synth, sort_keys=True))
    return (*settings, str(run.get("seed")), str(T and float(T)))


def missing_runs(expected, rows):
    """The expected runs no finished row matches (its data sizes included)."""
    have = {expected_key(r) for r in rows}
    return [e for e in expected if expected_key(e) not in have]


def describe_run(run):
    T = "labels only" if run.get("method") == "labels" else f"T={run.get('T')}"
    where = f"{run.get('dataset')} {run.get('teacher')} -> {run.get('student')} {run.get('opt')} {run.get('epochs')} ep"
    return f"{where} {T} seed {run.get('seed')}"


# ---------------------------------------------------------------------------------------------
# results.csv: mean, std and n over seeds per cell


def write_results_csv(rows, path):
    """One line per cell: its CONFIG columns, top-1 mean/std/n over seeds, and the seeds."""
    cells = {}
    for r in rows:
        cells.setdefault(r["cell"], []).append(r)
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(CONFIG + ["cell", "top1_mean", "top1_std", "n", "seeds"])
    for cell, members in sorted(cells.items(), key=lambda kv: [str(kv[1][0][c]) for c in CONFIG]):
        mean, std, n = stats.summary([r["top1"] for r in members])
        std = std if n > 1 else None
        seeds = " ".join(str(s) for s in sorted(r["seed"] for r in members))
        w.writerow(
            [members[0][c] for c in CONFIG]
            + [cell, round(mean, 4), "" if std is None else round(std, 4), len(members), seeds]
        )
    return atomic_write(path, text.getvalue())
