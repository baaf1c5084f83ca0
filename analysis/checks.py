"""The checks of the paper's findings: which runs each compares and the statistic it computes.

Each check takes the finished distillation rows and returns a Test: the primary setting (the one the
paper's sentence names) as noise groups of cells with a statistic of their means that is > 0 when the claim
holds, in points of top-1; the same statistic in every other applicable setting and the parts of the
statistic (secondary lines); evidence and notes. findings.py decides them (intervals, Holm, labels).
"""

from dataclasses import dataclass, field

from analysis import selection
from analysis.cells import (
    BASELINE_BS,
    KD,
    USUAL_T,
    Part,
    best_gain_of,
    best_over,
    budget_note,
    but,
    describe,
    difference,
    has_trend,
    is_novel,
    large,
    largest,
    line,
    line_text,
    longest,
    mean,
    mean_over,
    minus,
    primary_of,
    range_over,
    role_of,
    settings,
    smallest,
    teacher_roles,
    trend_cells,
    trend_of,
    usual,
    values_at,
    values_of,
    where,
    without,
)
from analysis.stats import OPPOSITE, PRESENT, UNDECIDED

FLAT = 0.37  # K (p_1 - p_K) at T = 40: the paper's 0.01 at its smallest class count (37), relative to 1/K
PRETRAINED_INITS = (*selection.PRETRAINED_INITS, "FT")
FINE_VS_COARSE = [("synth-fine", "synth-coarse"), ("pets", "cifar100"), ("cars", "tiny-imagenet")]
OVERLAP_VS_NOVEL = [("synth-fine", "synth-novel"), ("imagenet-birds", "finer-birds"), ("pets", "cars")]


@dataclass
class Test:
    """What a check returns: the primary's noise groups and statistic, or why it is not tested, or (no seed
    noise) its label; secondary lines (Parts), evidence, notes; finding 6's budgets [(epochs, steps, Part)]."""

    values: dict = field(default_factory=dict)
    statistic: object = None
    primary: str = ""
    evidence: list = field(default_factory=list)
    secondary: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    missing: str = ""
    label: str = ""
    summary: str = ""
    budgets: list = field(default_factory=list)


def tested(parts, roles, missing, opt="adamw", notes=(), others=(), **prefer):
    """(Test, primary part): the baseline part among `parts`; every other part (and `others`) is a secondary
    setting, and the primary's components are reported beside it."""
    if not parts:
        return Test(missing=missing, notes=list(notes)), None
    primary, unmet = primary_of(parts, roles, opt, **prefer)
    secondary = primary.components + [p for p in [*parts, *others] if p is not primary]
    test = Test(primary.values, primary.statistic, primary.name, primary.evidence, secondary, [*notes, *unmet])
    return test, primary


def brief_kd(rows, roles, **conditions):
    """KD runs of a briefly fine-tuned pretrained teacher on classes that overlap its pretraining."""
    return [r for r in where(rows, **KD, **conditions) if role_of(r, roles) == "brief" and not is_novel(r)]


def one_group(rows, cells):
    return {"all": values_at(rows, cells)}


# ---------------------------------------------------------------------------------------------
# 1, 2: KD against labels alone and against the other methods


def kd_beats_labels(rows):
    roles = teacher_roles(rows)
    kd, labels = where(rows, **KD), where(rows, method="labels")
    same = ["dataset", "data_id", "data_key", "student", "student_init", "opt", "bs", "epochs"]
    parts = []
    for key, members in settings(kd):
        reference = [r for r in labels if all(r[c] == key[c] for c in same)]
        if not reference:
            continue
        statistic = difference(mean_over(list(line(members).values())), mean_over([line(reference)[None]]))
        evidence = [f"{describe(key)}: {line_text(reference)}; KD {line_text(members)}"]
        parts.append(Part(key, {"all": values_of(members + reference)}, statistic, evidence))
    kept, notes = longest(parts, kd)
    others = [p for p in parts if p not in kept]
    missing = "no setting has a labels-only student (distill.py --baseline)"
    return tested(kept, roles, missing, notes=notes, others=others)[0]


def method_and_kd_cells(members, method):
    """(method cells, KD cells) of one setting, at the T both ran (CTKD: its learned T against every KD T)."""
    kd, other = line(where(members, method="kd")), line(where(members, method=method))
    common = [T for T in other if T is not None and T in kd]
    if common:
        return [other[T] for T in common], [kd[T] for T in common]
    return ([other[None]], list(kd.values())) if None in other and kd else ([], [])


def methods_never_beat_kd(rows):
    chosen = where(rows, signal="teacher", student_init="random")
    found = []
    for key, members in settings(chosen):
        others = sorted({r["method"] for r in members} - {"kd"})
        pairs = {m: method_and_kd_cells(members, m) for m in others}
        pairs = {m: cells for m, cells in pairs.items() if cells[0]}
        if pairs:
            evidence = [f"{describe(key)}: {m} {line_text(where(members, method=m), 'learned T')}" for m in pairs]
            evidence.append(f"{describe(key)}: KD {line_text(where(members, method='kd'))}")
            found.append(Part(key, {}, None, evidence, extra={"pairs": pairs, "rows": members}))
    found, notes = longest(found, chosen)
    lines, by_method = [], {}
    for p in found:
        for method, (a, b) in p.extra["pairs"].items():
            theta = difference(best_over(a), best_over(b))
            by_method.setdefault(method, []).append((p, a + b, theta))
            values = {p.name: values_at(p.extra["rows"], a + b)}
            lines.append(Part(p.key, values, theta, name=f"{method} minus KD (best T each), {p.name}", kind="part"))
    consistent = {m: found_in for m, found_in in by_method.items() if len(found_in) >= 2}
    evidence = [e for p in found for e in p.evidence]
    if not consistent:
        missing = "no other method run beside KD"
        if found:
            missing = "one setting: consistency needs two or more" if len(found) == 1 else "no method in two settings"
        return Test(missing=missing, secondary=lines, evidence=evidence, notes=notes)
    used = {}
    for found_in in consistent.values():
        for p, cells, _ in found_in:
            used.setdefault(p.name, (p, set()))[1].update(cells)
    values = {name: values_at(p.extra["rows"], cells) for name, (p, cells) in used.items()}
    # "no method beats KD consistently": minus the largest over methods of its smallest lead over settings
    statistic = minus(largest([smallest([theta for _, _, theta in found_in]) for found_in in consistent.values()]))
    notes += [f"{m}: run in one setting only, left out of the primary" for m in by_method if m not in consistent]
    return Test(values, statistic, f"{len(used)} settings: " + "; ".join(used), evidence, lines, notes)


# ---------------------------------------------------------------------------------------------
# 3-7: large T after long training, the optimizers, the cross-over, the batch size


def large_T_wins(rows, opt):
    roles = teacher_roles(rows)
    chosen = brief_kd(rows, roles, opt=opt, student_init="random")
    parts = []
    for key, members in settings(chosen):
        ln = line(members)
        if not (large(ln) and usual(ln)):
            continue
        old = []
        if has_trend(ln):
            name = f"trend (mean at T > {USUAL_T:g} minus mean at T <= 2), the same runs"
            old.append(Part(key, one_group(members, trend_cells(ln)), trend_of(ln), name=name, kind="part"))
        evidence = [f"{describe(key)}: {line_text(members)}"]
        parts.append(Part(key, {"all": values_of(members)}, best_gain_of(ln), evidence, components=old))
    kept, notes = longest(parts, where(rows, **KD, opt=opt))
    missing = f"no {opt} runs of a briefly fine-tuned teacher at T <= {USUAL_T:g} and T > {USUAL_T:g}"
    return tested(kept, roles, missing, opt=opt, notes=notes)[0]


def adamw_more_robust(rows):
    roles = teacher_roles(rows)
    chosen = brief_kd(rows, roles, student_init="random")
    parts = []
    for key, members in settings(chosen, but("opt")):
        lines = {opt: line(where(members, opt=opt)) for opt in ("adamw", "sgd")}
        common = sorted(set(lines["adamw"]) & set(lines["sgd"]) - {None})
        if len(common) < 2:
            continue
        cells = {opt: [lines[opt][T] for T in common] for opt in lines}
        values = {opt: values_at(members, cells[opt]) for opt in cells}  # noise per optimizer
        evidence = [f"{describe(key)}: {opt} {line_text(where(members, opt=opt))}" for opt in cells]
        parts.append(Part(key, values, difference(range_over(cells["sgd"]), range_over(cells["adamw"])), evidence))
    kept, notes = longest(parts, where(rows, **KD))
    others = [p for p in parts if p not in kept]
    missing = "no budget run with both optimizers at two or more temperatures"
    prefer = ("dataset", "teacher", "student_init", "bs")
    return tested(kept, roles, missing, notes=notes, others=others, prefer=prefer)[0]


def steps(rows, epochs):
    """epochs x steps per epoch when the runs record one value of it, else None."""
    found = {r.get("steps_per_epoch") for r in rows} - {None}
    return epochs * found.pop() if len(found) == 1 else None


def budget_name(rows, epochs):
    n = steps(rows, epochs)
    return f"{epochs} epochs" + (f" = {n} steps" if n is not None else "")


def sgd_crossover(rows):
    roles = teacher_roles(rows)
    chosen = brief_kd(rows, roles, opt="sgd", student_init="random")
    top_of_all = max(r["epochs"] for r in where(rows, **KD, opt="sgd")) if chosen else None
    parts, budgets, notes = [], {}, []
    for key, members in settings(chosen, but("epochs")):
        by_budget = {e: where(members, epochs=e) for e in sorted({r["epochs"] for r in members})}
        lines = {e: line(b) for e, b in by_budget.items() if has_trend(line(b))}
        if len(lines) < 2:
            continue
        short, top = min(lines), max(lines)
        # noise per budget: the short budgets' noisier cells must not widen the long budget's trend
        groups = {e: {budget_name(by_budget[e], e): values_at(members, trend_cells(ln))} for e, ln in lines.items()}
        halves = [
            Part(key, groups[short], minus(trend_of(lines[short])), kind="part",
                 name=f"small-T lead (minus the trend) at the shortest budget, {budget_name(by_budget[short], short)}"),
            Part(key, groups[top], trend_of(lines[top]), kind="part",
                 name=f"large-T lead (the trend) at the longest budget, {budget_name(by_budget[top], top)}"),
        ]  # fmt: skip
        name = describe(dict(key, epochs=f"{short} and {top}"))
        evidence = [f"{describe(key)} {budget_name(by_budget[e], e)}: {line_text(by_budget[e])}" for e in lines]
        statistic = smallest([h.statistic for h in halves])
        parts.append(Part(key, groups[short] | groups[top], statistic, evidence, name=name, components=halves))
        budgets[name] = [(e, steps(by_budget[e], e), Part(key, groups[e], trend_of(ln))) for e, ln in lines.items()]
        if top < top_of_all:
            notes.append(budget_note(key, top, top_of_all))
    missing = "no SGD runs of a briefly fine-tuned teacher at two or more budgets with small and large T"
    test, primary = tested(parts, roles, missing, opt="sgd", notes=notes)
    test.budgets = budgets[primary.name] if primary else []
    return test


def batch_pairs(sizes):
    """The pairs (smaller, larger) of batch sizes to compare: each other size with the baseline's, if run."""
    if BASELINE_BS in sizes:
        return [tuple(sorted((s, BASELINE_BS))) for s in sizes if s != BASELINE_BS]
    return list(zip(sizes, sizes[1:]))


def batch_shift(rows):
    roles = teacher_roles(rows)
    chosen = brief_kd(rows, roles, opt="sgd", student_init="random")
    sizes = sorted({r["bs"] for r in chosen})
    if len(sizes) < 2:
        return Test(missing=f"SGD runs at one batch size only ({', '.join(map(str, sizes)) or 'none'})")
    parts = []
    for key, members in settings(chosen, but("bs", "epochs")):
        run = sorted({(r["bs"], r["epochs"]) for r in members})
        lines = {(b, e): line(where(members, bs=b, epochs=e)) for b, e in run}
        for a, b in batch_pairs(sorted({s for s, _ in lines})):
            common = sorted(e for s, e in lines if s == a and (b, e) in lines)
            common = [e for e in common if has_trend(lines[(a, e)]) and has_trend(lines[(b, e)])]
            if not common:
                continue
            values = {
                f"bs{s}": values_at(members, [c for e in common for c in trend_cells(lines[(s, e)])]) for s in (a, b)
            }
            evidence = [
                f"{describe(key)} bs{s} {e} ep: {line_text(where(members, bs=s, epochs=e))}"
                for e in common
                for s in (a, b)
            ]
            statistic = mean([difference(trend_of(lines[(a, e)]), trend_of(lines[(b, e)])) for e in common])
            setting = dict(key, bs=(a, b), epochs=", ".join(map(str, common)))
            parts.append(Part(setting, values, statistic, evidence))
    return tested(parts, roles, "no budget run with two batch sizes", opt="sgd")[0]


# ---------------------------------------------------------------------------------------------
# 8-11: the teachers' softmax and the controls


def nearly_flat(rows):
    evidence, flatness = [], []
    for teacher, by_T in selection.teacher_statistics(rows).items():
        T = 40.0 if 40.0 in by_T else max(by_T)  # the paper's statement is about T = 40
        p = by_T[T]["sorted_softmax"]
        if not p or T < 40:
            continue
        flatness.append(len(p) * (p[0] - p[-1]))
        evidence.append(
            f"{teacher} at T={T:g}: K = {len(p)}, p_1 {p[0]:.4f}, p_K {p[-1]:.4f}, K (p_1 - p_K) = {flatness[-1]:.3f}"
        )
    if not flatness:
        return Test(missing="no teacher statistics at T >= 40")
    passed = sum(f < FLAT for f in flatness)
    summary = f"{passed} of {len(flatness)} teachers below {FLAT}; the largest K (p_1 - p_K) is {max(flatness):.3f}"
    return Test(label=PRESENT if passed == len(flatness) else OPPOSITE, summary=summary, evidence=evidence)


def control_pairs(members, signals):
    """{control name: (teacher cells, control cells)} at the large T both ran."""
    teacher, out = line(where(members, signal="teacher")), {}
    for signal in signals:
        for k in sorted({r["k"] for r in where(members, signal=signal)}, key=lambda k: k or 0):
            control = line(where(members, signal=signal, k=k))
            common = [T for T in control if T is not None and T > USUAL_T and T in teacher]
            if common:
                name = signal + (f" k={k}" if k is not None else "")
                out[name] = ([teacher[T] for T in common], [control[T] for T in common])
    return out


def controls_worse(rows, signals):
    roles = teacher_roles(rows)
    chosen = where(rows, method="kd", student_init="random")
    parts = []
    for key, members in settings(chosen):
        pairs = control_pairs(members, signals)
        if not pairs:
            continue
        each = [
            Part(key, one_group(members, a + b), difference(mean_over(a), mean_over(b)), name=f"teacher minus {name}",
                 kind="part")
            for name, (a, b) in pairs.items()
        ]  # fmt: skip
        values = one_group(members, [c for a, b in pairs.values() for c in a + b])
        shown = ["teacher", *signals]
        shown = [s for s in shown if where(members, signal=s)]
        evidence = [f"{describe(key)}: {s} {line_text(where(members, signal=s))}" for s in shown]
        parts.append(Part(key, values, smallest([p.statistic for p in each]), evidence, components=each))
    kept, notes = longest(parts, chosen)
    missing = f"no {' or '.join(signals)} runs at T > {USUAL_T:g} beside the teacher's"
    return tested(kept, roles, missing, notes=notes)[0]


def entropy_trend(rows):
    stats_by = selection.teacher_statistics(rows)
    evidence, per_pair = [], []
    for (dataset, arch, _), roles in teacher_roles(rows).items():
        if "brief" not in roles or "long" not in roles:
            continue
        s, ln = stats_by.get(roles["brief"], {}), stats_by.get(roles["long"], {})
        T = selection.statistics_T(set(s) & set(ln))
        if T is None:
            continue
        a, b = s[T], ln[T]
        down, up = b["H_rel"] < a["H_rel"], b["H_rel_without_max"] > a["H_rel_without_max"]
        reversed_ = b["H_rel"] > a["H_rel"] and b["H_rel_without_max"] < a["H_rel_without_max"]
        per_pair.append(PRESENT if down and up else OPPOSITE if reversed_ else UNDECIDED)
        evidence.append(
            f"{dataset} {arch} at T={T:g}: {roles['brief']} H_rel {a['H_rel']:.3f}, H_rel^-max "
            f"{a['H_rel_without_max']:.3f} -> {roles['long']} H_rel {b['H_rel']:.3f}, H_rel^-max "
            f"{b['H_rel_without_max']:.3f}"
        )
    if not per_pair:
        return Test(missing="no briefly and long fine-tuned teachers of one architecture")
    label = PRESENT if all(v == PRESENT for v in per_pair) else OPPOSITE if OPPOSITE in per_pair else UNDECIDED
    summary = f"both directions hold for {per_pair.count(PRESENT)} of {len(per_pair)} teacher pair(s)"
    return Test(label=label, summary=summary, evidence=evidence)


# ---------------------------------------------------------------------------------------------
# 12-15: the teacher's origination and the student's initialisation


def origination_statistic(lines, kind):
    """(cells, statistic) of one setting's teacher lines {role: line}, or (None, None) if it cannot be computed."""
    if kind == "accuracy":
        common = [T for T in lines["brief"] if T is not None and T in lines["long"]]
        a, b = [lines["brief"][T] for T in common], [lines["long"][T] for T in common]
        return (a + b, difference(mean_over(a), mean_over(b))) if common else (None, None)
    if not all(has_trend(ln) for ln in lines.values()):
        return None, None
    cells = [c for ln in lines.values() for c in trend_cells(ln)]
    if kind == "catch-up":
        return cells, difference(trend_of(lines["brief"]), trend_of(lines["long"]))
    return cells, minus(trend_of(lines["scratch"]))


def teacher_origination(rows, kind):
    """12 ('accuracy'): the brief minus the long teacher's students, mean over T; 13 ('catch-up'): trend with
    the brief minus with the long teacher; 14 ('scratch'): minus the trend of a from-scratch teacher."""
    roles = teacher_roles(rows)
    needed = ("scratch",) if kind == "scratch" else ("brief", "long")
    chosen = [r for r in where(rows, **KD, student_init="random") if not is_novel(r) and role_of(r, roles) in needed]
    parts = []
    for key, members in settings(chosen, but("teacher")):
        mine = {role: [r for r in members if role_of(r, roles) == role] for role in needed}
        if not all(mine.values()):
            continue
        cells, statistic = origination_statistic({role: line(m) for role, m in mine.items()}, kind)
        if cells is None:
            continue
        evidence = [f"{describe(key)} · {role} teacher {m[0]['teacher']}: {line_text(m)}" for role, m in mine.items()]
        setting = dict(key, teacher=" vs ".join(m[0]["teacher"] for m in mine.values()))
        parts.append(Part(setting, one_group(members, cells), statistic, evidence))
    kept, notes = longest(parts, where(rows, **KD))
    missing = f"no setting with {' and '.join(needed)} teachers" + (
        "" if kind == "accuracy" else " at small and large T"
    )
    return tested(kept, roles, missing, notes=notes, prefer=("dataset", "student_init", "bs", "opt"))[0]


def every_init(rows):
    roles = teacher_roles(rows)
    chosen = brief_kd(rows, roles)
    order = {init: i for i, init in enumerate(selection.INIT_ORDER)}
    parts = []
    for key, members in settings(chosen, but("student_init")):
        inits = sorted({r["student_init"] for r in members}, key=lambda i: order.get(i, len(order)))
        lines = {i: line(where(members, student_init=i)) for i in inits}
        lines = {i: ln for i, ln in lines.items() if has_trend(ln)}
        if len(lines) < 2:
            continue
        each = [
            Part(key, one_group(members, trend_cells(ln)), trend_of(ln), name=f"trend of the {i} student", kind="part")
            for i, ln in lines.items()
        ]
        pretrained = [ln for i, ln in lines.items() if i in PRETRAINED_INITS]
        if "random" in lines and pretrained:
            cells = [c for ln in [lines["random"], *pretrained] for c in trend_cells(ln)]
            less = difference(trend_of(lines["random"]), mean([trend_of(ln) for ln in pretrained]))
            name = "trend of the random-init student minus the mean trend of the pretrained ones (less so pretrained)"
            each.insert(0, Part(key, one_group(members, cells), less, name=name, kind="part"))
        values = one_group(members, [c for ln in lines.values() for c in trend_cells(ln)])
        evidence = [f"{describe(key)} · init {i}: {line_text(where(members, student_init=i))}" for i in lines]
        statistic = smallest([trend_of(ln) for ln in lines.values()])
        parts.append(Part(key, values, statistic, evidence, components=each))
    kept, notes = longest(parts, where(rows, **KD))
    missing = "no setting with two or more student initialisations at small and large T"
    return tested(kept, roles, missing, notes=notes, prefer=("dataset", "teacher", "bs", "opt"))[0]


# ---------------------------------------------------------------------------------------------
# 16, 17: targets of different granularity and overlap


def equally_long_lines(members, first, second):
    """{dataset: (line, rows)} of the teachers of `first` and `second` fine-tuned for the shortest duration
    both have (one teacher each: the first by name), or None."""
    by_data = {d: [r for r in members if selection.dataset_label(r) == d] for d in (first, second)}
    durations = [{r["teacher_target_epochs"] for r in by_data[d]} - {None} for d in (first, second)]
    common = sorted(durations[0] & durations[1])
    if not common:
        return None
    out = {}
    for d, m in by_data.items():
        teacher = min(r["teacher"] for r in m if r["teacher_target_epochs"] == common[0])
        mine = [r for r in m if r["teacher"] == teacher]
        out[d] = (line(mine), mine)
    return out if all(has_trend(ln) for ln, _ in out.values()) else None


def dataset_pairs(rows, pairs):
    """(parts, notes, rows) of the dataset `pairs` (first, second): KD lines of pretrained teachers fine-tuned
    equally long, the same student and recipe, and for the built-in data the same data key. Real datasets
    have their own augmentation and folder, so their data keys differ by design: they pair regardless."""
    chosen = [r for r in where(rows, **KD) if r["teacher_from_scratch"] is False]
    found, notes = [], []
    columns = ["teacher_arch", "student", "student_init", "opt", "bs", "epochs", "same_data"]
    for first, second in pairs:
        mine = [r for r in chosen if selection.dataset_label(r) in (first, second)]
        mine = [dict(r, same_data=r["data_key"] if str(r["dataset"]).startswith("synth-") else None) for r in mine]
        for key, members in settings(mine, columns):
            lines = equally_long_lines(members, first, second)
            if lines is None:
                continue
            teachers = " vs ".join(m[0]["teacher"] for _, m in lines.values())
            setting = dict(without(key, "same_data"), dataset=f"{first} vs {second}", teacher=teachers)
            setting["data_key"] = key["same_data"]
            evidence = [f"{d} (teacher {m[0]['teacher']}): {line_text(m)}" for d, (_, m) in lines.items()]
            cells = [c for ln, _ in lines.values() for c in trend_cells(ln)]
            extra = {"lines": (lines[first][0], lines[second][0]), "rows": members}
            found.append(Part(setting, one_group(members, cells), None, evidence, extra=extra))
            if key["same_data"] is None:
                notes.append(f"{first} vs {second}: real datasets, paired whatever their data keys")
    kept, more = longest(found, where(rows, **KD))
    return kept, list(dict.fromkeys(notes)) + more


def fine_prefers_larger_T(rows):
    parts, notes = dataset_pairs(rows, FINE_VS_COARSE)
    for p in parts:
        fine, coarse = p.extra["lines"]
        p.statistic = difference(trend_of(fine), trend_of(coarse))
    missing = "no fine and coarse targets run with teachers fine-tuned equally long"
    return tested(parts, {}, missing, notes=notes, prefer=("student_init", "bs", "opt"))[0]


def novel_prefers_smaller_T(rows):
    parts, notes = dataset_pairs(rows, OVERLAP_VS_NOVEL)
    for p in parts:
        overlap, novel = p.extra["lines"]
        alone = one_group(p.extra["rows"], trend_cells(novel))
        p.components = [
            Part(p.key, alone, minus(trend_of(novel)), name="minus the trend on the novel target", kind="part"),
            Part(p.key, p.values, difference(trend_of(overlap), trend_of(novel)), kind="part",
                 name="trend on the overlapping minus trend on the novel target"),
        ]  # fmt: skip
        p.statistic = smallest([c.statistic for c in p.components])
    missing = "no overlapping and novel targets run with teachers fine-tuned equally long"
    return tested(parts, {}, missing, notes=notes, prefer=("student_init", "bs", "opt"))[0]
