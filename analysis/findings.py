"""The paper's findings as a table, each decided on the results: effect, intervals, Holm level, label.

FINDINGS has one row per finding: the paper's sentence and where it says it, the setting the sentence
names (the primary), the statistic (> 0 is the claim, in points of top-1; cells.py defines the trend and
the temperature ranges) and the check that picks the runs (checks.py). evaluate() decides every row: the
primary's bootstrap gives the estimate, its raw 95% interval and a p-value; the findings with an interval
form one family for Holm's procedure (stats.holm); a finding's label comes from its interval at its Holm
level (stats.label), with the labels at m/2 and 2m beside it. Every other setting the finding applies to
is a secondary line with its own estimate, raw interval and label; the settings agree unless one is
present and another opposite. Findings 8 and 11 have no seed noise and stay outside the family.
"""

from dataclasses import dataclass
from functools import partial

from analysis import aggregate, checks, integrity, stats
from analysis.cells import SETTING, cell_of, finished, line, settings, values_of, where

BASELINE = (
    "fine-grained target overlapping the pretraining, briefly fine-tuned pretrained teacher, random-init student, "
    "batch 64, longest budget"
)
ONE_TEACHER = (
    "one teacher of each kind: the interval holds the students' seed noise, not the variation between teachers"
)


@dataclass(frozen=True)
class Finding:
    id: int
    claim: str
    source: str
    setting: str
    statistic: str
    check: object
    scope: str = ""


FINDINGS = [
    Finding(
        id=1,
        claim="Distillation beats training the same student on labels alone.",
        source="Sect. 4.4",
        setting=f"{BASELINE}, AdamW; every other setting with a labels-only student on its own",
        statistic="mean top-1 over T of KD minus the labels-only student",
        check=checks.kd_beats_labels,
    ),
    Finding(
        id=2,
        claim="No single KD method beats fixed-T KD consistently.",
        source="Sect. 4.1, Fig. 1",
        setting="every setting where another method and KD ran (random-init student, longest budget): two or more",
        statistic="minus the largest over methods of the smallest over settings of (the method's best T minus KD's "
        "best T, over the T both ran; CTKD: its learned T against every T)",
        check=checks.methods_never_beat_kd,
    ),
    Finding(
        id=3,
        claim="With AdamW, after long training, temperatures beyond the usual 1-5 do best.",
        source="Sect. 4.2, Figs. 2-3",
        setting=f"{BASELINE}, AdamW",
        statistic="best top-1 at T > 5 minus best top-1 at T <= 5",
        check=partial(checks.large_T_wins, opt="adamw"),
    ),
    Finding(
        id=4,
        claim="With SGD, after long training, temperatures beyond the usual 1-5 do best.",
        source="Sect. 4.2, Figs. 2-3",
        setting=f"{BASELINE}, SGD",
        statistic="best top-1 at T > 5 minus best top-1 at T <= 5",
        check=partial(checks.large_T_wins, opt="sgd"),
    ),
    Finding(
        id=5,
        claim="AdamW is more robust to T than SGD.",
        source="Sect. 4.2, Fig. 2",
        setting=f"{BASELINE}; each other budget on its own; noise per optimizer",
        statistic="range of top-1 over T (max - min of cell means) with SGD minus with AdamW",
        check=checks.adamw_more_robust,
    ),
    Finding(
        id=6,
        claim="With SGD, small T wins with short training and large T with long training (a cross-over).",
        source="Sect. 4.2, Fig. 3",
        setting=f"{BASELINE}, SGD, its shortest and its longest budget (in steps; the paper's longest, Pets at 300 "
        "epochs and batch 64, is about 17,100 steps); noise per budget",
        statistic="the smaller of: minus the trend at the shortest budget, the trend at the longest",
        check=checks.sgd_crossover,
    ),
    Finding(
        id=7,
        claim="Larger batches move the SGD cross-over to longer training.",
        source="Sect. 4.2, Fig. 2",
        setting=f"{BASELINE}, SGD, batch 64 against the other batch size at the budgets both ran; noise per batch size",
        statistic="trend at the smaller batch minus trend at the larger, mean over the budgets",
        check=checks.batch_shift,
    ),
    Finding(
        id=8,
        claim="At T = 40 the teachers' mean sorted softmax is nearly flat.",
        source="Sect. 4.2, Fig. 4",
        setting="every teacher's train-set statistics at T = 40",
        statistic=f"K (p_1 - p_K) below {checks.FLAT} for every teacher: flat relative to 1/K (no seed noise)",
        check=checks.nearly_flat,
    ),
    Finding(
        id=9,
        claim="Label smoothing with the teacher's entropy is worse than the teacher at large T.",
        source="Sect. 4.2, Fig. 5",
        setting=f"{BASELINE}, AdamW",
        statistic="teacher minus control, mean over the T > 5 both ran; the smaller over smooth-global and "
        "smooth-instance",
        check=partial(checks.controls_worse, signals=["smooth-global", "smooth-instance"]),
    ),
    Finding(
        id=10,
        claim="The teacher's values with the non-top classes shuffled (bottom-k) are worse than the teacher.",
        source="Sect. 4.2, Fig. 5",
        setting=f"{BASELINE}, AdamW",
        statistic="teacher minus bottom-k, mean over the T > 5 both ran; the smaller over the k run",
        check=partial(checks.controls_worse, signals=["bottomk"]),
    ),
    Finding(
        id=11,
        claim="Longer teacher fine-tuning lowers H_rel (towards one-hot) and raises H_rel^-max (towards uniform).",
        source="Sect. 4.3, Table 1",
        setting="the briefly and the long fine-tuned teacher of each dataset and architecture",
        statistic="both directions, train-set statistics (no seed noise)",
        check=checks.entropy_trend,
        scope=ONE_TEACHER,
    ),
    Finding(
        id=12,
        claim="Longer teacher fine-tuning lowers the student's accuracy.",
        source="Sect. 4.3, Table 1",
        setting=f"{BASELINE}, AdamW, with the brief and with the long fine-tuned teacher",
        statistic="mean top-1 over T with the brief minus with the long fine-tuned teacher",
        check=partial(checks.teacher_origination, kind="accuracy"),
        scope=ONE_TEACHER,
    ),
    Finding(
        id=13,
        claim="With longer teacher fine-tuning, small T catches up with large T.",
        source="Sect. 4.3, Table 1",
        setting=f"{BASELINE}, AdamW, with the brief and with the long fine-tuned teacher",
        statistic="trend with the brief minus trend with the long fine-tuned teacher",
        check=partial(checks.teacher_origination, kind="catch-up"),
        scope=ONE_TEACHER,
    ),
    Finding(
        id=14,
        claim="A teacher trained from scratch prefers small T.",
        source="Sect. 4.3, Table 1",
        setting=f"{BASELINE}, AdamW, with the from-scratch teacher",
        statistic="minus the trend",
        check=partial(checks.teacher_origination, kind="scratch"),
        scope=ONE_TEACHER,
    ),
    Finding(
        id=15,
        claim="Large T helps students of every initialisation.",
        source="Sect. 4.4, Table 2",
        setting=f"{BASELINE}, AdamW, every student initialisation run",
        statistic="the smallest over initialisations of the trend",
        check=checks.every_init,
    ),
    Finding(
        id=16,
        claim="Fine-grained targets prefer larger T than coarse-grained ones.",
        source="Sect. 4.5, Fig. 6",
        setting="a fine and a coarse target, teachers fine-tuned equally long (the shortest both have), random-init "
        "student, AdamW, batch 64, longest budget, the same data key",
        statistic="trend on the fine minus trend on the coarse target",
        check=checks.fine_prefers_larger_T,
        scope=ONE_TEACHER,
    ),
    Finding(
        id=17,
        claim="Fine-grained targets absent from pretraining (novel classes) prefer smaller T than overlapping ones.",
        source="Sect. 4.5, Fig. 7",
        setting="an overlapping and a novel target, teachers fine-tuned equally long, random-init student, AdamW, "
        "batch 64, longest budget, the same data key. In the lab both teachers are the long (32-epoch) ones, the "
        "regime where finding 13 says small T catches up (the brief novel teacher is worse than a student on "
        "labels alone)",
        statistic="the smaller of: minus the trend on the novel target, trend on the overlapping minus on the novel",
        check=checks.novel_prefers_smaller_T,
        scope=ONE_TEACHER,
    ),
]


def by_id(decided, finding_id):
    """The decided finding with this id (from evaluate() or findings.json)."""
    return next(f for f in decided if f["id"] == finding_id)


# ---------------------------------------------------------------------------------------------
# Deciding


def primary_bootstrap(test, draws):
    if test.label or test.missing or not test.values:
        return None
    return stats.bootstrap(test.values, test.statistic, draws)


def secondary_line(part, draws):
    """{setting, kind, estimate, low, high, label, size} of a secondary Part at the raw 95% level."""
    boot = stats.bootstrap(part.values, part.statistic, draws)
    low, high = stats.interval_at(boot)
    label, size = stats.label(low, high) if boot.estimate is not None else (stats.UNTESTED, "")
    return dict(setting=part.name, kind=part.kind, estimate=boot.estimate, low=low, high=high, label=label, size=size)


def primary_rows(test, boot, index):
    """The finished rows behind the primary's cell means (each group's cells at the seeds it used)."""
    return [
        index[(cell, seed)]
        for group, values in stats.as_groups(test.values).items()
        for cell in values
        for seed in boot.seeds.get(group, [])
    ]


def settings_agree(raw_label, secondary):
    """False when one setting is present and another opposite; None without another setting."""
    labels = [raw_label] + [s["label"] for s in secondary if s["kind"] == "setting"]
    if len(labels) < 2:
        return None
    return not (stats.PRESENT in labels and stats.OPPOSITE in labels)


def summary_of(f):
    if f["label"] == stats.UNTESTED:
        return f["missing"] or "no runs"
    if f["estimate"] is None:
        return f["summary"]
    if f["low_adj"] is None:
        return f"{f['estimate']:+.2f}: no interval (needs 2 seeds and 2 cells in every noise group)"
    return (
        f"{f['estimate']:+.2f} (Holm-adjusted {f['low_adj']:+.2f} to {f['high_adj']:+.2f} at level "
        f"{f['level']:.4f}; raw 95% {f['low']:+.2f} to {f['high']:+.2f})"
    )


def decide(finding, test, boot, level, p_adj, index, missing, draws):
    """The finding as a JSON-ready dict (the keys of findings.json)."""
    low, high = stats.interval_at(boot) if boot else (None, None)
    low_adj, high_adj = stats.interval_at(boot, level) if level else (None, None)
    estimate = boot.estimate if boot else None
    if test.label:
        label, size, half, double = test.label, "", test.label, test.label
    elif boot is None or estimate is None:
        label, size, half, double = (stats.UNTESTED, "", stats.UNTESTED, stats.UNTESTED)
        test.missing = test.missing or "the cells of a noise group share no seed"
    else:
        label, size = stats.label(low_adj, high_adj)
        half = stats.label(low_adj, high_adj, stats.MARGIN / 2)[0]
        double = stats.label(low_adj, high_adj, 2 * stats.MARGIN)[0]
    secondary = [secondary_line(p, draws) for p in test.secondary]
    used = primary_rows(test, boot, index) if boot and estimate is not None else []
    notes = list(dict.fromkeys(test.notes))
    agree = settings_agree(stats.label(low, high)[0] if low is not None else label, secondary)
    if agree is False:
        notes.append("the settings disagree: one is present and another opposite (see the secondary lines)")
    absent = integrity.missing_in(missing, used) if used else []
    notes += [f"expected but not finished: {integrity.describe_run(e)}" for e in absent]
    versions = integrity.code_versions(used)
    if len(versions) > 1:
        runs = ", ".join(f"{v} ({n} run{'s' * (n != 1)})" for v, n in versions.items())
        notes.append(f"runs of several code versions: {runs}")
    out = dict(
        id=finding.id,
        claim=finding.claim,
        source=finding.source,
        setting=finding.setting,
        primary=test.primary,
        statistic=finding.statistic,
        estimate=estimate,
        low=low,
        high=high,
        low_adj=low_adj,
        high_adj=high_adj,
        level=level,
        p=stats.p_value(boot) if boot else None,
        p_adj=p_adj,
        margin=stats.MARGIN,
        label=label,
        size=size,
        label_half_margin=half,
        label_double_margin=double,
        seeds=min((len(s) for s in boot.seeds.values()), default=0) if boot else 0,
        sigma=dict(boot.sigma) if boot else {},
        runs=sorted(r["run_id"] or r["run_dir"] for r in used),
        scope=finding.scope,
        notes=notes,
        settings_agree=agree,
        secondary=secondary,
        budgets=[budget_line(e, n, p, draws) for e, n, p in test.budgets],
        evidence=test.evidence,
        missing=test.missing,
        summary=test.summary,
    )
    out["summary"] = summary_of(out)
    return out


def budget_line(epochs, steps, part, draws):
    line_ = secondary_line(part, draws)
    return dict(epochs=epochs, steps=steps, trend=line_["estimate"], low=line_["low"], high=line_["high"])


def evaluate(rows, expected=None, draws=stats.DRAWS):
    """Every finding of FINDINGS decided on the distillation rows: a list of dicts (findings.json's objects).
    `expected`: the runs of manifest/expected.json (integrity.read_expected), if any."""
    ok = finished(rows)
    values_of(ok)  # a second run of one cell and seed is an error, not a silent overwrite
    index = {(cell_of(r), r["seed"]): r for r in ok}
    tests = [f.check(ok) for f in FINDINGS]
    boots = [primary_bootstrap(t, draws) for t in tests]
    family = [i for i, b in enumerate(boots) if b is not None and b.errors is not None]
    levels, adjusted = stats.holm([stats.p_value(boots[i]) for i in family])
    holm = {i: (level, p_adj) for i, level, p_adj in zip(family, levels, adjusted)}
    missing = integrity.missing_runs(expected, rows) if expected else []
    return [
        decide(f, t, b, *holm.get(i, (None, None)), index, missing, draws)
        for i, (f, t, b) in enumerate(zip(FINDINGS, tests, boots))
    ]


# ---------------------------------------------------------------------------------------------
# A description, not a test


def largest_T_effect(rows):
    """The largest difference between two temperatures of one KD line (same teacher, student, recipe,
    signal) relative to its seed spread: the std over seeds of the paired difference (a seed is the same
    student and batches at both temperatures). Returns (setting, T_a, T_b, difference, its seed std, the
    larger seed std of the two cells) or None. A description chosen after looking, not a test."""
    best = None
    columns = SETTING + ["signal", "k"]
    for key, members in settings(where(finished(rows), method="kd"), columns):
        values = values_of(members)
        ln = {T: values[c] for T, c in line(members).items() if T is not None}
        for a in ln:
            for b in ln:
                seeds = sorted(set(ln[a]) & set(ln[b]))
                if b <= a or len(seeds) < 2:
                    continue
                diff, spread, _ = aggregate.mean_std_n([ln[b][s] - ln[a][s] for s in seeds])
                cells = max(aggregate.mean_std_n([ln[T][s] for s in seeds])[1] for T in (a, b))
                if best is None or abs(diff) / max(spread, 1e-9) > abs(best[3]) / max(best[4], 1e-9):
                    best = (key, a, b, diff, spread, cells)
    return best
