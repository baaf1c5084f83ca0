"""The paper's findings, each decided on the table of runs: one short function per finding, one table of them.

Each function selects its cells from the rows (analysis/table.py) and returns a Test: one or more contrasts as
per-unit values {name: {seed: value}} (> 0 is the paper's claim, points of top-1) and how they combine (one
contrast, or the smallest of several). decide_all() turns them into intervals and labels (analysis/stats.py).
Findings 5, 8 and 11 are descriptions (no linear contrast of top-1, or no seed noise): no label from an interval.

One definition of temperature ranges: the usual T <= 5 (the 1-5 most KD work uses), large T > 5. The trend of a
line is its mean top-1 at large T minus its mean at the usual T. The baseline setting: random-init student,
AdamW, batch 64, the longest budget, the briefly fine-tuned pretrained teacher (the teacher most runs used).
"""

from dataclasses import dataclass, field

from analysis import stats, table

USUAL_T = 5.0
FLAT = 0.37  # K (p_1 - p_K) below this is "nearly flat": the paper's 0.01 at T = 40 with 37 classes (Pets)
SETTING = ["dataset", "data", "teacher", "teacher_kind", "teacher_epochs", "student", "init", "opt", "bs", "epochs"]
COARSER = {"synth-fine": "synth-coarse", "cars": "tiny-imagenet", "pets": "cifar100"}  # Fig. 6: fine -> coarse
NOVEL = {"synth-fine": "synth-novel", "imagenet-birds": "finer-birds"}  # Fig. 7: overlapping -> novel classes


class NotTested(Exception):
    """The runs cannot test the finding (one line why)."""


@dataclass
class Test:
    components: dict  # {name: {seed: value}}
    rows: list  # the runs behind the primary
    setting: str
    combine: object = None  # {name: value} -> value, rising in each; None: the one component
    secondary: list = field(default_factory=list)  # [(setting, components, combine)]
    notes: list = field(default_factory=list)


@dataclass
class Described:
    label: str
    summary: str
    rows: list = field(default_factory=list)
    evidence: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Selecting lines: {T: {seed: top1}} of one setting


def where(rows, **conditions):
    return [r for r in rows if all(r[k] == v for k, v in conditions.items())]


def kd(rows, **conditions):
    return where(rows, method="kd", signal="teacher", **conditions)


def settings(rows, columns=SETTING, uses=None):
    """[(key dict, rows)] grouped by `columns`: the settings of the most used teacher first (`uses`: {teacher:
    count}, by default counted in `rows`), then those with the most runs, then in a stable order."""
    groups, uses = {}, uses or {}
    for r in rows:
        groups.setdefault(tuple(r[c] for c in columns), []).append(r)
    if not uses:
        for r in rows:
            uses[r["teacher"]] = uses.get(r["teacher"], 0) + 1
    teacher = lambda k: dict(zip(columns, k)).get("teacher")  # noqa: E731
    order = sorted(groups, key=lambda k: (-uses.get(teacher(k), 0), -len(groups[k]), [str(v) for v in k]))
    return [(dict(zip(columns, k)), groups[k]) for k in order]


def line(rows):
    """{T: {seed: top1}} of one setting's rows; NotTested when two configurations meet at one T (never pooled)."""
    out, cell = {}, {}
    for r in rows:
        if cell.setdefault(r["T"], r["cell"]) != r["cell"]:
            both = [x for x in rows if x["T"] == r["T"]]
            raise NotTested(
                f"two configurations at T={r['T']} in one setting (they differ in: "
                f"{', '.join(table.config_differences(both))}); keep one in the results folder"
            )
        out.setdefault(r["T"], {})[r["seed"]] = r["top1"]
    return dict(sorted(out.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def name(key):
    """'synth-fine · synth-fine-ft4 -> test_resnet · adamw bs64 128 ep' of a setting key."""
    parts = (key["opt"], key["bs"] and f"bs{key['bs']}", key["epochs"] and f"{key['epochs']} ep")
    recipe = " ".join(str(part) for part in parts if part)  # a figure's panel leaves out what its lines vary
    return f"{key['dataset']} · {key['teacher']} -> {key['student']} ({key['init']}) · {recipe}"


def baseline(rows, opt="adamw"):
    """[(key, rows)] of the KD settings with the baseline recipe at their longest budget, the primary first."""
    chosen = kd(rows, init="random", bs=64, opt=opt)
    if not chosen:
        raise NotTested(f"no KD runs with a random-init student, {opt} and batch 64")
    longest, uses = max(r["epochs"] for r in chosen), {}
    for r in rows:  # the baseline teacher: the one most runs used
        uses[r["teacher"]] = uses.get(r["teacher"], 0) + 1
    return settings(where(chosen, epochs=longest), uses=uses)


def per_unit(statistic, *lines):
    """{seed: statistic(y_1, ..., y_k)} over the seeds every cell of the lines has; y_i = {T: top1 at that seed}."""
    cells = [c for ln in lines for c in ln.values()]
    seeds = sorted(set.intersection(*(set(c) for c in cells))) if cells else []
    return {s: statistic(*({T: c[s] for T, c in ln.items()} for ln in lines)) for s in seeds}


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def trend(y):
    """Mean top-1 at large T minus mean at the usual T, of one unit's {T: top1}."""
    large = [v for T, v in y.items() if T is not None and T > USUAL_T]
    usual = [v for T, v in y.items() if T is not None and T <= USUAL_T]
    if not large or not usual:
        raise NotTested("no T on one side of 5: the trend needs a T <= 5 and a T > 5")
    return mean(large) - mean(usual)


def kd_mean(y):
    return mean(v for T, v in y.items() if T is not None)


def simple(statistic, found):
    """The primary and secondary lines of a one-line statistic over [(key, rows)] settings."""
    parts = [(name(key), {"d": per_unit(statistic, line(r))}, None, r) for key, r in found]
    (setting, components, _, rows), rest = parts[0], parts[1:]
    return Test(components, rows, setting, secondary=[p[:3] for p in rest])


# ---------------------------------------------------------------------------------------------
# The findings


def kd_beats_labels(rows):
    parts = []
    for key, kd_rows in baseline(rows):
        labels = where(
            rows, method="labels", **{k: key[k] for k in ("dataset", "data", "student", "init", "opt", "bs", "epochs")}
        )
        if labels:
            comps = {"d": per_unit(lambda y, b: kd_mean(y) - b[None], line(kd_rows), line(labels))}
            parts.append((name(key), comps, None, kd_rows + labels))
    if not parts:
        raise NotTested("no labels-only student beside the baseline KD runs")
    return Test(parts[0][1], parts[0][3], parts[0][0], secondary=[p[:3] for p in parts[1:]])


def methods_never_beat_kd(rows):
    """min over methods of max over settings of (KD minus the method, mean over the T both ran)."""
    comps, used = {}, []
    for key, kd_rows in settings(kd(rows)):
        others = where(rows, signal="teacher", **key)
        for method in sorted({r["method"] for r in others} - {"kd", "labels"}):
            theirs = line(where(others, method=method))
            mine = line(kd_rows)
            temps = [T for T in theirs if T in mine] if None not in theirs else list(mine)
            if not temps:
                continue
            if None in theirs:  # CTKD: its learned T against the mean over every T
                comps[(method, name(key))] = per_unit(lambda y, m: kd_mean(y) - m[None], mine, theirs)
            else:
                comps[(method, name(key))] = per_unit(
                    lambda y, m, temps=temps: mean(y[T] - m[T] for T in temps), mine, theirs
                )
            used += kd_rows + where(others, method=method)
    methods = {m for m, _ in comps}
    if not methods or any(sum(1 for m, _ in comps if m == x) < 2 for x in methods):
        raise NotTested("no other method run beside KD in two or more settings")
    combine = lambda v: min(max(v[c] for c in v if c[0] == m) for m in methods)  # noqa: E731
    return Test(comps, used, f"{len(methods)} methods, each in {len(comps) // len(methods)} settings", combine)


def large_T_wins(rows, opt):
    return simple(trend, baseline(rows, opt))


def adamw_more_robust(rows):
    """Described: the range over T of the cell means, SGD minus AdamW (a range is no linear contrast)."""
    ranges, used = {}, []
    for opt in ("adamw", "sgd"):
        key, r = baseline(rows, opt)[0]
        means = [mean(c.values()) for T, c in line(r).items() if T is not None]
        ranges[opt], used = max(means) - min(means), used + r
    d = ranges["sgd"] - ranges["adamw"]
    text = f"range over T: SGD {ranges['sgd']:.2f}, AdamW {ranges['adamw']:.2f} points (difference {d:+.2f})"
    return Described("described", text, used, ranges)


def sgd_crossover(rows):
    chosen = kd(rows, init="random", bs=64, opt="sgd")
    budgets = sorted({r["epochs"] for r in chosen})
    if len(budgets) < 2:
        raise NotTested("SGD runs at one budget only")
    key, _ = settings(where(chosen, epochs=budgets[-1]))[0]
    short = line(where(chosen, **{**key, "epochs": budgets[0]}))
    long_ = line(where(chosen, **key))
    comps = {"short": per_unit(lambda y: -trend(y), short), "long": per_unit(trend, long_)}
    used = where(chosen, **{**key, "epochs": budgets[0]}) + where(chosen, **key)
    return Test(comps, used, f"{name(key)} and {budgets[0]} ep", lambda v: min(v.values()))


def batch_shift(rows):
    chosen = kd(rows, init="random", opt="sgd")
    sizes = sorted({r["bs"] for r in chosen})
    if len(sizes) < 2:
        raise NotTested(f"SGD runs at one batch size only ({sizes[0] if sizes else 'none'})")
    small, large = sizes[0], sizes[-1]
    both = sorted({r["epochs"] for r in where(chosen, bs=small)} & {r["epochs"] for r in where(chosen, bs=large)})
    if not both:
        raise NotTested("no budget that both batch sizes ran")
    key, _ = settings(where(chosen, bs=large, epochs=both[-1]))[0]

    def at(epochs, bs):
        return line(where(chosen, **{**key, "epochs": epochs, "bs": bs}))

    d = per_unit(lambda a, b: trend(a) - trend(b), at(both[-1], small), at(both[-1], large))
    lines = [ln for e in both for ln in (at(e, small), at(e, large))]
    pooled = per_unit(lambda *ys: mean(trend(ys[i]) - trend(ys[i + 1]) for i in range(0, len(ys), 2)), *lines)
    used = [r for e in both for bs in (small, large) for r in where(chosen, **{**key, "epochs": e, "bs": bs})]
    setting = f"{name(key)}: batch {small} against {large} at {both[-1]} ep"
    return Test({"d": d}, used, setting, secondary=[(f"mean over the budgets {both}", {"d": pooled}, None)])


def nearly_flat(rows):
    """Described: K (p_1 - p_K) of every teacher's mean sorted softmax at T = 40 below FLAT."""
    seen = {}
    for r in rows:
        p = r["sorted_softmax"]
        if r["stats_T"] == 40 and p:
            seen[(r["teacher"], r["teacher_weights"])] = len(p) * (p[0] - p[-1])
    if not seen:
        raise NotTested("no teacher statistics at T = 40")
    below = sum(v < FLAT for v in seen.values())
    label = stats.PRESENT if below == len(seen) else stats.OPPOSITE if below == 0 else stats.UNDECIDED
    text = f"{below} of {len(seen)} teachers below {FLAT}; the largest K (p_1 - p_K) is {max(seen.values()):.3f}"
    return Described(label, text, evidence={f"{t} {w[:8]}": v for (t, w), v in seen.items()})


def controls_worse(rows, signals):
    """min over the controls of (teacher minus control, mean over the T > 5 both ran)."""
    key, teacher_rows = baseline(rows)[0]
    controls = [r for r in where(rows, method="kd", **key) if r["signal"] in signals]
    mine, comps, used = line(teacher_rows), {}, list(teacher_rows)
    for (sig, k), theirs_rows in settings(controls, ["signal", "k"]):
        theirs = line(theirs_rows)
        temps = [T for T in theirs if T in mine and T > USUAL_T]
        if temps:
            comps[f"{sig}{k or ''}"] = per_unit(lambda y, c, ts=temps: mean(y[T] - c[T] for T in ts), mine, theirs)
            used += theirs_rows
    if not comps:
        raise NotTested(f"no {' or '.join(signals)} control at T > 5 beside the teacher's signal")
    return Test(comps, used, name(key), lambda v: min(v.values()))


def teachers_by_kind(rows):
    """(key of the brief teacher's baseline setting, {kind: rows}) with kind 'brief', 'long', 'scratch'."""
    key, brief = baseline(rows)[0]
    same = kd(rows, **{k: key[k] for k in ("dataset", "data", "student", "init", "opt", "bs", "epochs")})
    out = {"brief": brief}
    for other_key, r in settings(same):
        if other_key == key:
            if key["teacher_kind"] == "scratch":  # the baseline teacher is itself trained from scratch
                out["scratch"] = r
        elif other_key["teacher_kind"] == "scratch":
            out.setdefault("scratch", r)
        elif other_key["teacher_epochs"] > key["teacher_epochs"]:
            out.setdefault("long", r)
    return key, out


def origination(rows, kind):
    key, kinds = teachers_by_kind(rows)
    other = "scratch" if kind == "scratch" else "long"
    if other not in kinds:
        raise NotTested(
            f"no {'from-scratch' if other == 'scratch' else 'longer fine-tuned'} teacher beside the brief one"
        )
    brief, theirs = line(kinds["brief"]), line(kinds[other])
    statistic = {
        "accuracy": lambda a, b: kd_mean(a) - kd_mean(b),
        "catch-up": lambda a, b: trend(a) - trend(b),
        "scratch": lambda a, b: -trend(b),
    }[kind]
    teacher = kinds[other][0]["teacher"]
    used = kinds[other] + (kinds["brief"] if kind != "scratch" else [])
    return Test({"d": per_unit(statistic, brief, theirs)}, used, f"{name(key)} vs {teacher}")


def entropy_trend(rows):
    """Described: per (dataset, seed), the brief teacher's H_rel above the long one's and H_rel^-max below."""
    pairs, used = [], []
    for key, _ in settings(kd(rows, init="random"), ["dataset", "data"]):
        by_teacher = {}
        for r in kd(rows, **key):
            if r["teacher_kind"] == "ft" and r["H_rel"] is not None and r["stats_T"] == 1:
                by_teacher.setdefault((r["teacher_epochs"], r["seed"]), (r["H_rel"], r["H_rel_without_max"]))
        for (epochs, seed), (h, h_max) in by_teacher.items():
            longer = [(e, v) for (e, s), v in by_teacher.items() if s == seed and e > epochs]
            for _, (h2, h2_max) in longer:
                pairs.append(h2 < h and h2_max > h_max)
    if not pairs:
        raise NotTested("no briefly and long fine-tuned teacher of one dataset")
    label = stats.PRESENT if all(pairs) else stats.OPPOSITE if not any(pairs) else stats.UNDECIDED
    return Described(label, f"both directions hold for {sum(pairs)} of {len(pairs)} teacher pairs", used)


def every_init(rows):
    key, _ = baseline(rows)[0]
    same = kd(rows, **{k: key[k] for k in SETTING if k != "init"})
    inits = settings(same, ["init"])
    if len(inits) < 2:
        raise NotTested("no setting with two or more student initialisations")
    comps = {k["init"]: per_unit(trend, line(r)) for k, r in inits}
    return Test(comps, same, f"{name(key)}, inits {', '.join(comps)}", lambda v: min(v.values()))


def dataset_pair(rows, pairs, statistic):
    """Two datasets' baseline lines, teachers fine-tuned equally long: (Test of statistic(y_a, y_b))."""
    chosen = kd(rows, init="random", bs=64, opt="adamw")
    for a, b in pairs.items():
        A, B = where(chosen, dataset=a), where(chosen, dataset=b)
        for e in sorted({r["teacher_epochs"] for r in A} & {r["teacher_epochs"] for r in B}):
            la, lb = where(A, teacher_epochs=e, teacher_kind="ft"), where(B, teacher_epochs=e, teacher_kind="ft")
            if not la or not lb:
                continue
            top = min(max(r["epochs"] for r in la), max(r["epochs"] for r in lb))
            (ka, ra), (kb, rb) = settings(where(la, epochs=top))[0], settings(where(lb, epochs=top))[0]
            return Test(statistic(line(ra), line(rb)), ra + rb, f"{name(ka)} vs {name(kb)}")
    raise NotTested(f"no {' or '.join(f'{a} and {b}' for a, b in pairs.items())} with teachers fine-tuned equally long")


def fine_prefers_larger_T(rows):
    return dataset_pair(rows, COARSER, lambda f, c: {"d": per_unit(lambda y, z: trend(y) - trend(z), f, c)})


def novel_prefers_smaller_T(rows):
    def statistic(overlap, novel):
        return {
            "novel": per_unit(lambda y: -trend(y), novel),
            "gap": per_unit(lambda y, z: trend(y) - trend(z), overlap, novel),
        }

    test = dataset_pair(rows, NOVEL, statistic)
    test.combine = lambda v: min(v.values())
    return test


BASELINE = "random-init student, AdamW, batch 64, longest budget, briefly fine-tuned pretrained teacher"


@dataclass(frozen=True)
class Finding:
    id: int
    claim: str
    source: str
    statistic: str
    check: object


FINDINGS = [
    Finding(1, "Distillation beats training the same student on labels alone.", "Sect. 4.4",
            "mean top-1 over T of KD minus the labels-only student", kd_beats_labels),
    Finding(2, "No single KD method beats fixed-T KD consistently.", "Sect. 4.1, Fig. 1",
            "smallest over methods of the largest over settings of (KD minus the method, mean over the T both ran)",
            methods_never_beat_kd),
    Finding(3, "With AdamW, after long training, temperatures beyond the usual 1-5 do best.", "Sect. 4.2, Figs. 2-3",
            "trend: mean top-1 at T > 5 minus at T <= 5 (AdamW)", lambda r: large_T_wins(r, "adamw")),
    Finding(4, "With SGD, after long training, temperatures beyond the usual 1-5 do best.", "Sect. 4.2, Figs. 2-3",
            "trend: mean top-1 at T > 5 minus at T <= 5 (SGD)", lambda r: large_T_wins(r, "sgd")),
    Finding(5, "AdamW is more robust to T than SGD.", "Sect. 4.2, Fig. 2",
            "range over T of the cell means, SGD minus AdamW (described: a range has no interval here)",
            adamw_more_robust),
    Finding(6, "With SGD, small T wins with short training and large T with long training (a cross-over).",
            "Sect. 4.2, Fig. 3", "the smaller of: minus the trend at the shortest budget, the trend at the longest",
            sgd_crossover),
    Finding(7, "Larger batches move the SGD cross-over to longer training.", "Sect. 4.2, Fig. 2",
            "trend at the smaller batch minus at the larger, at the longest budget both ran", batch_shift),
    Finding(8, "At T = 40 the teachers' mean sorted softmax is nearly flat.", "Sect. 4.2, Fig. 4",
            f"K (p_1 - p_K) below {FLAT} for every teacher (described: no seed noise)", nearly_flat),
    Finding(9, "Label smoothing with the teacher's entropy is worse than the teacher at large T.", "Sect. 4.2, Fig. 5",
            "teacher minus control, mean over the T > 5 both ran; the smaller over the two smoothings",
            lambda r: controls_worse(r, ["smooth-global", "smooth-instance"])),
    Finding(10, "The teacher's values with the non-top classes shuffled (bottom-k) are worse than the teacher.",
            "Sect. 4.2, Fig. 5", "teacher minus bottom-k, mean over the T > 5 both ran; the smaller over k",
            lambda r: controls_worse(r, ["bottomk"])),
    Finding(11, "Longer teacher fine-tuning lowers H_rel (towards one-hot) and raises H_rel^-max (towards uniform).",
            "Sect. 4.3, Table 1", "both directions at T = 1, each pair of teachers of one seed (described)",
            entropy_trend),
    Finding(12, "Longer teacher fine-tuning lowers the student's accuracy.", "Sect. 4.3, Table 1",
            "mean top-1 over T with the brief minus with the long fine-tuned teacher",
            lambda r: origination(r, "accuracy")),
    Finding(13, "With longer teacher fine-tuning, small T catches up with large T.", "Sect. 4.3, Table 1",
            "trend with the brief minus trend with the long fine-tuned teacher", lambda r: origination(r, "catch-up")),
    Finding(14, "A teacher trained from scratch prefers small T.", "Sect. 4.3, Table 1",
            "minus the trend with the from-scratch teacher", lambda r: origination(r, "scratch")),
    Finding(15, "Large T helps students of every initialisation.", "Sect. 4.4, Table 2",
            "the smallest over initialisations of the trend", every_init),
    Finding(16, "Fine-grained targets prefer larger T than coarse-grained ones.", "Sect. 4.5, Fig. 6",
            "trend on the fine minus on the coarse target (teachers fine-tuned equally long)", fine_prefers_larger_T),
    Finding(17, "Fine-grained targets absent from pretraining (novel classes) prefer smaller T than overlapping ones.",
            "Sect. 4.5, Fig. 7", "the smaller of: minus the trend on the novel target, trend on the overlapping minus "
            "on the novel (teachers fine-tuned equally long)", novel_prefers_smaller_T),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Deciding


def scope(rows):
    """What a verdict rests on: datasets, teachers (with how many sets of weights), students, units."""
    teachers = {}
    for r in rows:
        if r["teacher"]:
            teachers.setdefault(r["teacher"], set()).add(r["teacher_weights"])
    per = ", ".join(f"{t} ({len(w)} set{'s' * (len(w) > 1)} of weights)" for t, w in sorted(teachers.items()))
    shared = teachers and all(len(w) == 1 for w in teachers.values())
    text = (
        f"datasets {', '.join(sorted({r['dataset'] for r in rows}))}; teachers {per or 'none'}; students "
        f"{', '.join(sorted({r['student'] for r in rows}))}; {len({r['seed'] for r in rows})} seeds"
    )
    return text + (
        "; one teacher of each kind: the interval holds the students' variation, not the teachers'" if shared else ""
    )


def line_result(components, combine, alpha):
    """{estimate, low, high, units, sd} of a statistic at level 1 - alpha."""
    values = {k: list(v.values()) for k, v in components.items()}
    combine = combine or (lambda v: next(iter(v.values())))
    if any(len(v) < 2 for v in values.values()):
        return dict(estimate=None, low=None, high=None, units=min(map(len, values.values())), sd=None)
    estimate, low, high = stats.interval(values, combine, alpha)
    sd = {k: stats.summary(v)[1] for k, v in values.items()}
    return dict(estimate=estimate, low=low, high=high, units=min(map(len, values.values())), sd=sd)


def decide(finding, test, family, missing):
    """The finding as a JSON-ready dict (the keys of findings.json, docs/LAB.md lists them)."""
    out = dict(id=finding.id, claim=finding.claim, source=finding.source, statistic=finding.statistic, setting="",
               estimate=None, low=None, high=None, raw_low=None, raw_high=None, level=None, units=0, sd=None,
               label=stats.UNTESTED, size="", units_needed=None, scope="", runs=[], notes=[], secondary=[],
               summary="", evidence={})  # fmt: skip
    if isinstance(test, str):
        return {**out, "summary": test}
    out.update(scope=scope(test.rows) if test.rows else "", runs=sorted({r["run_dir"] for r in test.rows}))
    if isinstance(test, Described):
        return {**out, "label": test.label, "summary": test.summary, "evidence": test.evidence}
    level = stats.ALPHA / family
    simultaneous = line_result(test.components, test.combine, level)
    raw = line_result(test.components, test.combine, 0.05)
    out.update(setting=test.setting, level=1 - level, notes=list(test.notes), **simultaneous)
    out.update(raw_low=raw["low"], raw_high=raw["high"])
    if out["low"] is None:
        return {**out, "label": stats.UNTESTED, "summary": f"fewer than 2 seeds ({out['units']})"}
    if all(v == 0 for v in out["sd"].values()):
        out["label"] = stats.NO_NOISE
    else:
        out["label"], out["size"] = stats.label(out["low"], out["high"])
    if out["label"] in (stats.UNDECIDED, stats.NO_NOISE) and max(out["sd"].values()) > 0:
        k = family * len(test.components)
        out["units_needed"] = stats.units_needed(out["estimate"], max(out["sd"].values()), k, stats.ALPHA)
    out["secondary"] = [dict(setting=s, **line_result(c, f, 0.05)) for s, c, f in test.secondary]
    for s in out["secondary"]:
        s["label"] = stats.label(s["low"], s["high"])[0] if s["low"] is not None else stats.UNTESTED
    keys = {table.expected_key(r)[:-2] for r in test.rows}  # the settings used, any seed and T
    out["notes"] += [
        f"expected but not finished: {table.describe_run(e)}" for e in missing if table.expected_key(e)[:-2] in keys
    ]
    versions = sorted({str(r["code_version"]) for r in test.rows})
    if len(versions) > 1:
        out["notes"].append(f"runs of {len(versions)} code versions: {', '.join(versions)}")
    return out


def decide_all(rows, expected=()):
    """Every finding decided on the finished rows: a list of dicts (findings.json's objects)."""
    tests = []
    for f in FINDINGS:
        try:
            tests.append(f.check(rows))
        except NotTested as e:
            tests.append(str(e))
        except (ValueError, IndexError, KeyError) as e:  # no runs of a kind the selection needs
            tests.append(f"not enough runs ({e.__class__.__name__}: {e})")
    family = max(1, sum(isinstance(t, Test) and all(len(c) >= 2 for c in t.components.values()) for t in tests))
    missing = table.missing_runs(expected, rows) if expected else []
    return [decide(f, t, family, missing) for f, t in zip(FINDINGS, tests)]
