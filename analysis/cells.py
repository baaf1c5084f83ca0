"""Which runs a finding compares: cells, lines over T, settings, teacher roles, the baseline setting.

A cell is one configuration (aggregate.CONFIG_COLUMNS: data, teacher, student, method, recipe, T), keyed by
those values, so a cell used as the reference of several teachers is still one cell. A line is {T: cell} of
one setting (SETTING: the same data, teacher, student and recipe). Statistics of cell means work on floats
and on arrays of bootstrap draws alike (numpy, elementwise). One definition of the temperature ranges:
small T <= SMALL_T, the usual T <= USUAL_T (the 1-5 most KD work uses), large T > USUAL_T.
"""

from dataclasses import dataclass, field

import numpy as np

from analysis import aggregate, selection

SMALL_T, USUAL_T = 2.0, 5.0
BASELINE_BS = 64
KD = {"method": "kd", "signal": "teacher"}
SETTING = ["dataset", "data_id", "data_key", "teacher", "teacher_arch", "student", "student_init", "opt", "bs",
           "epochs"]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Rows, cells and lines


def finished(rows):
    return [r for r in rows if r.get("status") == "ok" and r.get("top1") is not None and r.get("seed") is not None]


def where(rows, **conditions):
    return [r for r in rows if all(r.get(k) == v for k, v in conditions.items())]


def settings(rows, columns=SETTING):
    """[(key: {column: value}, rows)] of the rows grouped by `columns`, in a stable order."""
    out = {}
    for r in rows:
        out.setdefault(tuple(r.get(c) for c in columns), []).append(r)
    return [(dict(zip(columns, k)), out[k]) for k in sorted(out, key=aggregate.sort_key)]


def but(*drop):
    """The SETTING columns without `drop`."""
    return [c for c in SETTING if c not in drop]


def cell_of(row):
    return tuple(row.get(c) for c in aggregate.CONFIG_COLUMNS)


def values_of(rows):
    """{cell: {seed: top1}} of the rows; a second finished run of one cell and seed is an error."""
    out = {}
    for r in rows:
        seeds = out.setdefault(cell_of(r), {})
        if r["seed"] in seeds:
            raise aggregate.AnalysisError(f"two runs of one configuration and seed {r['seed']}: {r['run_dir']}")
        seeds[r["seed"]] = r["top1"]
    return out


def values_at(rows, cells):
    """values_of the rows whose cell is among `cells` (a statistic passes only the cells it uses)."""
    cells = set(cells)
    return values_of([r for r in rows if cell_of(r) in cells])


def line(rows):
    """{T: cell} of the rows of one setting, sorted by T (T None, labels only or a learned T, last)."""
    out, where_from = {}, {}
    for r in rows:
        if out.setdefault(r["T"], cell_of(r)) != cell_of(r):
            differ = [c for c, a, b in zip(aggregate.CONFIG_COLUMNS, out[r["T"]], cell_of(r)) if a != b]
            raise aggregate.AnalysisError(
                f"two configurations at T={r['T']} in one setting: {where_from[r['T']]} and {r['run_dir']} (they "
                f"differ in: {', '.join(differ)}); move one out of the results folder"
            )
        where_from.setdefault(r["T"], r["run_dir"])
    return dict(sorted(out.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def large(ln):
    return [c for T, c in ln.items() if T is not None and T > USUAL_T]


def small(ln):
    return [c for T, c in ln.items() if T is not None and T <= SMALL_T]


def usual(ln):
    return [c for T, c in ln.items() if T is not None and T <= USUAL_T]


def has_trend(ln):
    return bool(large(ln)) and bool(small(ln))


def trend_cells(ln):
    return large(ln) + small(ln)


# ---------------------------------------------------------------------------------------------
# Statistics: functions of the cell means m ({cell: float}, or {cell: array of draws}); > 0 is the claim


def _stack(arrays):
    return np.stack([np.asarray(a, dtype=float) for a in arrays])


def mean_over(cells):
    return lambda m: _stack(m[c] for c in cells).mean(0)


def best_over(cells):
    return lambda m: _stack(m[c] for c in cells).max(0)


def range_over(cells):
    """Max minus min top-1 over the cells."""
    return lambda m: _stack(m[c] for c in cells).max(0) - _stack(m[c] for c in cells).min(0)


def difference(f, g):
    return lambda m: f(m) - g(m)


def minus(f):
    return lambda m: -f(m)


def smallest(fs):
    return lambda m: _stack(f(m) for f in fs).min(0)


def largest(fs):
    return lambda m: _stack(f(m) for f in fs).max(0)


def mean(fs):
    return lambda m: _stack(f(m) for f in fs).mean(0)


def trend_of(ln):
    """Mean top-1 over large T minus mean over small T."""
    return difference(mean_over(large(ln)), mean_over(small(ln)))


def best_gain_of(ln):
    """Best top-1 over large T minus best over the usual T (T = 4 included)."""
    return difference(best_over(large(ln)), best_over(usual(ln)))


# ---------------------------------------------------------------------------------------------
# Teachers and datasets


def teacher_roles(rows):
    """{(dataset label, teacher arch, data key): {"brief": name, "long": name, "scratch": name}} from the
    teachers' originations: the shortest and longest fine-tuned pretrained teacher, one trained from scratch."""
    out = {}
    for r in rows:
        if r.get("teacher") is None:
            continue
        roles = out.setdefault((selection.dataset_label(r), r["teacher_arch"], r["data_key"]), {"_ft": {}})
        if r["teacher_from_scratch"]:
            roles["scratch"] = r["teacher"]
        elif r["teacher_target_epochs"] is not None:
            roles["_ft"][r["teacher"]] = r["teacher_target_epochs"]
    for roles in out.values():
        ft = roles.pop("_ft")
        if ft:
            roles["brief"], roles["long"] = min(ft, key=ft.get), max(ft, key=ft.get)
            if roles["brief"] == roles["long"]:
                del roles["long"]
    return out


def role_of(row, roles):
    """'brief', 'long', 'scratch' or None: the role of a row's (or a setting's) teacher."""
    mine = roles.get((selection.dataset_label(row), row.get("teacher_arch"), row.get("data_key")), {})
    return next((role for role, name in mine.items() if name == row.get("teacher")), None)


def is_novel(r):
    return selection.overlap_kind(r) == "novel" or selection.GRANULARITY.get(selection.dataset_label(r), "").endswith(
        "novel"
    )


def is_baseline_dataset(r):
    """A fine-grained target whose classes overlap the pretraining (synth-fine, pets, ImageNet-Birds)."""
    return selection.GRANULARITY.get(selection.dataset_label(r)) == "fine" or selection.overlap_kind(r) == "overlapping"


def describe(key):
    """A setting in words (selection.describe, plus pairs of batch sizes and the data key)."""
    key = dict(key)
    if isinstance(key.get("bs"), tuple):
        key["bs"] = " vs ".join(map(str, key["bs"]))
    text = selection.describe(key)
    return text + (f" · data {key['data_key']}" if key.get("data_key") else "")


# ---------------------------------------------------------------------------------------------
# Settings of a finding: the primary and the others


@dataclass
class Part:
    """One setting of a finding (or one part of its statistic): noise groups {group: {cell: {seed: top1}}},
    the statistic of the cell means, evidence lines, and the parts of the statistic reported on their own."""

    key: dict
    values: dict
    statistic: object
    evidence: list = field(default_factory=list)
    name: str = ""
    kind: str = "setting"  # "setting": the statistic in another setting; "part": a part of the statistic
    components: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # what a check keeps for later (its lines, its rows)

    def __post_init__(self):
        self.name = self.name or describe(self.key)


def budget_note(key, epochs, longest_epochs):
    return f"{describe(without(key, 'epochs'))}: longest budget here is {epochs} epochs, not {longest_epochs}"


def without(key, *columns):
    return {k: v for k, v in key.items() if k not in columns}


def longest(parts, rows):
    """(the parts at the longest budget of their group (the same key but for epochs), notes): a note for each
    group whose longest budget is shorter than the longest budget of `rows` (no silent fallback)."""
    if not parts:
        return [], []
    top = max(r["epochs"] for r in rows)
    best = {}
    for p in parts:
        group = tuple(without(p.key, "epochs").items())
        best[group] = max(best.get(group, 0), p.key["epochs"])
    kept = [p for p in parts if p.key["epochs"] == best[tuple(without(p.key, "epochs").items())]]
    return kept, [budget_note(p.key, p.key["epochs"], top) for p in kept if p.key["epochs"] < top]


def preferences(roles, opt):
    """(column, what, test of a key) of the baseline setting, in order of precedence."""
    return [
        ("dataset", "fine-grained target overlapping the pretraining", is_baseline_dataset),
        ("teacher", "briefly fine-tuned pretrained teacher", lambda k: role_of(k, roles) == "brief"),
        ("student_init", "random-init student", lambda k: k["student_init"] == "random"),
        ("bs", f"batch {BASELINE_BS}", lambda k: BASELINE_BS in (k["bs"] if isinstance(k["bs"], tuple) else [k["bs"]])),
        ("opt", {"adamw": "AdamW", "sgd": "SGD"}.get(opt, opt), lambda k: k["opt"] == opt),
    ]


def primary_of(parts, roles, opt="adamw", prefer=("dataset", "teacher", "student_init", "bs", "opt")):
    """(the baseline part, notes): the parts that meet each preference in turn (a note when none does), then
    the one with the most cells, then the first in order."""
    chosen, unmet = list(parts), []
    for column, what, test in preferences(roles, opt):
        if column not in prefer or column not in chosen[0].key or (column == "opt" and opt is None):
            continue
        meeting = [p for p in chosen if test(p.key)]
        chosen = meeting or chosen
        unmet += [] if meeting else [what]
    best = max(chosen, key=lambda p: sum(len(v) for v in p.values.values()))
    return best, [f"no {what} among these runs: the primary is {best.name}" for what in unmet]


def fmt_cell(values, label):
    """'label 81.20 ± 0.50 (3 seeds)' from {seed: top1}."""
    mean, std, n = aggregate.mean_std_n(list(values.values()))
    return f"{label} {mean:.2f}".strip() + (f" ± {std:.2f}" if n > 1 else "") + f" ({n} seed{'s' * (n != 1)})"


def line_text(rows, no_T="labels only"):
    """'T=1 70.10 ± 0.40 (3 seeds), T=2 ...' of the rows of one line; T None is `no_T`."""
    values = values_of(rows)
    return ", ".join(fmt_cell(values[c], no_T if T is None else f"T={T:g}") for T, c in line(rows).items())
