"""Which T: per setting of KD runs, the best temperature and every temperature as good within the margin.

A setting is the KD runs (method kd, the teacher's signal) of one data key, teacher, student, student
initialisation, optimizer, batch size and budget (cells.SETTING), with two temperatures or more. In it:

- the best T has the highest mean top-1 over the seeds every temperature of the setting ran;
- a T is "within m of the best" unless its gap to the best (best mean minus its mean, a paired contrast over
  those seeds, with the seed noise of the setting's own cells: stats.bootstrap) has a raw 95% interval lying
  entirely at or above m. The best is chosen after looking, so its gaps are biased upward a little; the set is
  generous on purpose: a T is dropped only when the data show it at least m worse;
- what KD adds: the best T's mean minus the labels-only student of the same data, student, initialisation,
  optimizer, batch size and budget (its 95% interval, the noise of the setting's cells and that student's,
  as finding 1 has it), when one ran.
"""

from analysis import aggregate, stats
from analysis.cells import KD, SETTING, finished, line, settings, values_of, where

SAME_STUDENT = ["dataset", "data_id", "data_key", "student", "student_init", "opt", "bs", "epochs"]


def gap_to(best, other):
    """The statistic 'the best cell's mean minus the other cell's mean'."""
    return lambda m: m[best] - m[other]


def interval_of(values, statistic, draws):
    """{estimate, low, high} of a statistic of cell means: its raw 95% bootstrap interval (None without one)."""
    boot = stats.bootstrap(values, statistic, draws)
    low, high = stats.interval_at(boot)
    return {"estimate": boot.estimate, "low": low, "high": high}


def gap_of(values, best, cell, estimate, seeds, draws):
    """{estimate, low, high} of the best cell's mean minus a cell's: 0 for the best itself, no interval
    without a seed that every temperature ran."""
    if cell == best:
        return {"estimate": 0.0, "low": 0.0, "high": 0.0}
    if not seeds:
        return {"estimate": estimate, "low": None, "high": None}
    return interval_of(values, gap_to(best, cell), draws)


def within_margin(gaps, margin=stats.MARGIN):
    """The temperatures whose gap to the best is not shown to be at least `margin`: no interval, or its lower
    end below the margin. `gaps`: {T: {estimate, low, high}} (the best itself has a gap of 0)."""
    return sorted(T for T, g in gaps.items() if g["low"] is None or g["low"] < margin)


def common_seeds(values):
    """The seeds every cell ran (the paired contrasts use these)."""
    return sorted(set.intersection(*(set(v) for v in values.values()))) if values else []


def seed_mean_std(values, seeds):
    """(mean, std) of one cell's top-1 over `seeds`."""
    mean, std, _ = aggregate.mean_std_n([values[s] for s in seeds])
    return mean, std


def labels_only_of(key, labels):
    """The finished labels-only rows of the same data, student, initialisation and recipe as a setting."""
    return [r for r in labels if all(r.get(c) == key[c] for c in SAME_STUDENT)]


def steps_of(members, epochs):
    """epochs x steps per epoch when the runs record one value of it, else None."""
    found = {r.get("steps_per_epoch") for r in members} - {None}
    return epochs * found.pop() if len(found) == 1 else None


def kd_gain_of(key, labels, kd_values, best_cell, draws):
    """(kd_gain, labels_only) of a setting: the best T's mean minus the labels-only student's, with the interval
    from the noise of the setting's cells and that student's (None, None without a labels-only student)."""
    reference = labels_only_of(key, labels)
    if not reference:
        return None, None
    ref_cell = line(reference)[None]
    ref_values = values_of(reference)
    mean, std, n = aggregate.mean_std_n(list(ref_values[ref_cell].values()))
    gain = interval_of({**kd_values, **ref_values}, gap_to(best_cell, ref_cell), draws)
    return gain, {"mean": mean, "std": std, "n": n}


def setting_entry(key, members, labels, margin, draws):
    """The which_t.json object of one setting (None with fewer than two temperatures)."""
    ln = {T: c for T, c in line(members).items() if T is not None}
    if len(ln) < 2:
        return None
    values = values_of(members)
    kd_values = {c: values[c] for c in ln.values()}
    seeds = common_seeds(kd_values)  # without one, each T's own seeds and no interval
    means = {T: seed_mean_std(values[c], seeds or sorted(values[c])) for T, c in ln.items()}
    best = max(ln, key=lambda T: means[T][0])
    gaps = {T: gap_of(kd_values, ln[best], ln[T], means[best][0] - means[T][0], seeds, draws) for T in ln}
    kd_gain, labels_only = kd_gain_of(key, labels, kd_values, ln[best], draws)
    return {
        "setting": {c: key[c] for c in SETTING},
        "teacher": key["teacher"],
        "teacher_top1": aggregate.mean_std_n([r.get("teacher_top1") for r in members])[0],
        "opt": key["opt"],
        "bs": key["bs"],
        "epochs": key["epochs"],
        "steps": steps_of(members, key["epochs"]),
        "best_T": best,
        "best_mean": means[best][0],
        "best_std": means[best][1],
        "within_m": within_margin(gaps, margin),
        "gaps": {f"{T:g}": gaps[T] for T in ln},
        "kd_gain": kd_gain,
        "labels_only": labels_only,
        "seeds": seeds,
        "runs": sorted(r["run_id"] or r["run_dir"] for r in members if r["T"] in ln),
    }


def which_t(rows, margin=stats.MARGIN, draws=stats.DRAWS):
    """One object per setting of KD runs with two temperatures or more (which_t.json), ordered by teacher,
    optimizer and budget."""
    ok = finished(rows)
    kd = where(ok, **KD)
    labels = where(ok, method="labels")
    entries = [setting_entry(key, members, labels, margin, draws) for key, members in settings(kd)]
    entries = [e for e in entries if e is not None]
    order = ["teacher", "opt", "epochs", "steps"]
    return sorted(entries, key=lambda e: aggregate.sort_key([e[c] for c in order] + list(e["setting"].values())))


# ---------------------------------------------------------------------------------------------
# The table at the top of REPORT.md


def t_list(temps):
    return ", ".join(f"{T:g}" for T in temps)


def interval_text(d):
    """'+6.41 (+5.86 to +6.97)', '+6.41 (no interval)' or '–'."""
    if d is None or d["estimate"] is None:
        return "–"
    if d["low"] is None:
        return f"{d['estimate']:+.2f} (no interval)"
    return f"{d['estimate']:+.2f} ({d['low']:+.2f} to {d['high']:+.2f})"


def budget_text(e):
    return f"{e['epochs']} ep" + ("" if e["steps"] is None else f" = {e['steps']} steps")


def varying(entries, columns=("dataset", "data_key", "student", "student_init", "bs")):
    """The setting columns besides teacher, optimizer and budget whose values differ between the entries."""
    return [c for c in columns if len({str(e["setting"][c]) for e in entries}) > 1]


def teacher_text(e, extra):
    top1 = "" if e["teacher_top1"] is None else f" ({e['teacher_top1']:.2f})"
    words = {"bs": "bs{}", "student_init": "init {}", "data_key": "data {}", "student": "→ {}", "dataset": "{}"}
    return f"{e['teacher']}{top1}" + "".join(f" · {words[c].format(e['setting'][c])}" for c in extra)


def table_row(e, extra=()):
    """One Markdown row of the which-T table."""
    labels = e["labels_only"]
    reference = "–" if labels is None else f"{labels['mean']:.2f} ± {labels['std']:.2f}"
    return (
        f"| {teacher_text(e, extra)} | {e['opt']} | {budget_text(e)} | "
        f"{e['best_T']:g} ({e['best_mean']:.2f} ± {e['best_std']:.2f}) | {t_list(e['within_m'])} | "
        f"{interval_text(e['kd_gain'])} | {reference} |"
    )


def section(entries, margin=stats.MARGIN):
    """Markdown lines: the which-T table with two sentences on its columns."""
    lines = [
        "## Which T",
        "",
        f"Per setting of KD runs (one teacher, student, initialisation, optimizer, batch size and budget): the T with "
        f"the best mean top-1 over seeds (± its seed std), and every T not shown to be at least m = {margin:g} point "
        "worse than it (the raw 95% interval of its paired gap to the best has its lower end below m); KD minus labels "
        "only is the best T's mean minus a student trained on labels alone in the same setting (95% interval), beside "
        "the teacher's own test top-1 and that student's mean ± std. The best T is chosen after looking at the "
        "results, so its gaps to the others (and what KD adds) are biased upward a little, and the set is generous "
        "on purpose: a T is dropped only when the data show it at least m worse.",
        "",
    ]
    if not entries:
        return lines + ["No setting of KD runs with two temperatures or more.", ""]
    extra = varying(entries)
    lines += [
        "| teacher (top-1) | optimizer | budget | best T (mean ± seed std) | T within m of the best "
        "| KD minus labels only (interval) | labels only (mean ± std) |",
        "|---|---|---|---|---|---|---|",
    ]
    return lines + [table_row(e, extra) for e in entries] + [""]
