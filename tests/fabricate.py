"""Rows of the analysis' table fabricated for a preset's expected runs (grid.py), with planted top-1 values: the
calibration simulation and the grid-to-findings tests use them instead of an hour of training."""

import re

import grid
from analysis import table

FLAT = [0.1] * 24  # a flat sorted softmax (24 classes)


def teacher_role(name):
    """'synth-fine-ft4' -> ('ft', 4); 'synth-fine-scratch' -> ('scratch', 100); a user's teacher -> ('ft', 20)."""
    if name is None:
        return None, None
    found = re.search(r"-ft(\d+)$", name)
    return ("ft", int(found.group(1))) if found else ("scratch", 100) if name.endswith("-scratch") else ("ft", 20)


def expected_runs(preset, replicates=1, options=None):
    """The expected runs of a preset (grid.build without writing anything)."""
    return grid.build(preset, "python", "results", "data", [], options, replicates).expected


def rows_for(expected, top1):
    """One finished row per expected run; top1(run) gives its top-1 (run: the expected dict, teacher unsuffixed)."""
    rows = []
    for e in expected:
        teacher = re.sub(r"-t\d+$", "", e["teacher"]) if e["teacher"] else None
        kind, epochs = teacher_role(teacher)
        run = dict(e, teacher=teacher, init=e["student_init"], T=e["T"], data="d0", teacher_kind=kind)
        config = {k: run[k] for k in ("dataset", "student", "method", "signal", "k", "opt", "bs", "epochs", "T")}
        config.update(teacher=teacher, init=run["init"], synth=e.get("synth"))
        weights = f"{teacher}-t{e['seed']}" if teacher else None
        rows.append(
            dict(
                run,
                teacher_epochs=epochs,
                top1=top1(run),
                cell=table.short_hash(config),
                config=dict(config, seed=e["seed"]),
                teacher_weights=weights,
                teacher_top1=80.0,
                H_rel=0.5 if kind == "ft" and epochs == 4 else 0.4,
                H_rel_without_max=0.8 if kind == "ft" and epochs == 4 else 0.9,
                stats_T=e["T"],
                sorted_softmax=FLAT if teacher else None,
                run_dir=f"runs/{len(rows)}",
                code_version="c0",
                status="ok",
            )
        )
    return rows
