"""The paper's findings, each decided on the results: an effect, its 95% interval, a verdict (stats.py).

Each check picks the runs a finding is about, computes one pre-specified statistic of their mean top-1
per configuration (a difference or contrast between temperatures, teachers, optimizers, datasets),
and decides the claim from the statistic's interval: reproduced, contradicted (the opposite, or a null
that excludes an effect of stats.MIN_EFFECT points), undecided (with the reason), or not tested (what
is missing). "Large T" means T >= LARGE_T, beyond the 1-5 most KD work uses; "small T" means T <= SMALL_T.
The statistic a T preference is measured by is the trend: mean top-1 at large T minus mean top-1 at small T.
"""

import numpy as np

from analysis import selection, stats
from analysis.stats import CONTRADICTED, REPRODUCED, UNDECIDED, UNTESTED

LARGE_T, SMALL_T = 8.0, 2.0
KD = {"method": "kd", "signal": "teacher", "student_init": "random"}
FINE_VS_COARSE = [("synth-fine", "synth-coarse"), ("pets", "cifar100"), ("cars", "tiny-imagenet")]
OVERLAP_VS_NOVEL = [("synth-fine", "synth-novel"), ("imagenet-birds", "finer-birds"), ("pets", "cars")]
SETTING = ["dataset", "data_id", "teacher", "teacher_arch", "student", "student_init", "opt", "bs", "epochs"]


# ---------------------------------------------------------------------------------------------
# Selecting runs: {cell: {seed: top1}}


def finished(rows):
    return [r for r in rows if r.get("status") == "ok" and r.get("top1") is not None and r.get("seed") is not None]


def where(rows, **conditions):
    return [r for r in rows if all(r.get(k) == v for k, v in conditions.items())]


def seed_values(rows, key):
    """{key(row): {seed: top1}} over `rows`."""
    out = {}
    for r in rows:
        out.setdefault(key(r), {})[r["seed"]] = r["top1"]
    return out


def groups(rows, columns):
    """{tuple of `columns` values: rows}, in a stable order."""
    out = {}
    for r in rows:
        out.setdefault(tuple(r.get(c) for c in columns), []).append(r)
    return {k: out[k] for k in sorted(out, key=selection.aggregate.sort_key)}


def longest(rows, columns=("dataset", "data_id", "teacher", "student", "student_init", "opt", "bs")):
    """The rows at the longest epoch budget of each group of `columns`."""
    out = []
    for members in groups(rows, list(columns)).values():
        top = max(r["epochs"] for r in members)
        out += [r for r in members if r["epochs"] == top]
    return out


def teacher_roles(rows):
    """{(dataset label, teacher arch): {"brief": name, "long": name, "scratch": name}} from the teachers'
    originations: the shortest and longest fine-tuned pretrained teacher, and one trained from scratch."""
    out = {}
    for r in rows:
        if r.get("teacher") is None:
            continue
        roles = out.setdefault((selection.dataset_label(r), r["teacher_arch"]), {"_ft": {}})
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


def with_role(rows, role):
    roles = teacher_roles(rows)
    return [r for r in rows if roles.get((selection.dataset_label(r), r["teacher_arch"]), {}).get(role) == r["teacher"]]


def is_novel(r):
    return selection.overlap_kind(r) == "novel" or selection.GRANULARITY.get(selection.dataset_label(r), "").endswith(
        "novel"
    )


# ---------------------------------------------------------------------------------------------
# Statistics of cell means (floats, or arrays of bootstrap draws: numpy, elementwise)


def mean_of(means, cells):
    return np.mean(np.stack([np.asarray(means[c], dtype=float) for c in cells]), 0)


def trend_cells(cells_by_T):
    """(large-T cells, small-T cells) among {T: cell}; both needed for a trend."""
    large = [c for T, c in cells_by_T.items() if T is not None and T >= LARGE_T]
    small = [c for T, c in cells_by_T.items() if T is not None and T <= SMALL_T]
    return large, small


def trend(means, cells_by_T):
    large, small = trend_cells(cells_by_T)
    return mean_of(means, large) - mean_of(means, small)


def spread(means, cells):
    values = np.stack([np.asarray(means[c], dtype=float) for c in cells])
    return values.max(0) - values.min(0)


# ---------------------------------------------------------------------------------------------
# A finding: claim, statistic, interval, verdict, evidence


def finding(claim, source, rule, verdict, summary, evidence, estimate=None, low=None, high=None, sigma=None, seeds=0):
    """The dict every check returns (the report's row and section)."""
    return dict(
        claim=claim,
        source=source,
        rule=rule,
        verdict=verdict,
        summary=summary,
        evidence=evidence,
        estimate=estimate,
        low=low,
        high=high,
        sigma=sigma,
        seeds=seeds,
    )


def decide(claim, source, rule, values, statistic, evidence, missing=None, min_effect=stats.MIN_EFFECT):
    """The finding dict for `claim` ('statistic > 0'): values {cell: {seed: top1}}, statistic(means)."""
    if missing or not values:
        return finding(
            claim=claim,
            source=source,
            rule=rule,
            verdict=UNTESTED,
            summary=missing or "no runs",
            evidence=evidence,
        )
    estimate, low, high, sigma, seeds = stats.interval(values, statistic)
    verdict = stats.verdict(low, high, min_effect)
    if low is None:
        summary = f"{stats.describe(estimate, low, high)}: needs at least 2 seeds per configuration to decide"
    elif verdict == UNDECIDED:
        summary = (
            f"{stats.describe(estimate, low, high)}: the interval holds both no effect and one of "
            f"{min_effect:g} points; more seeds (or a larger test set) would decide it"
        )
    elif verdict == CONTRADICTED and high >= 0:
        summary = (
            f"{stats.describe(estimate, low, high)}: no effect of {min_effect:g} points or more in the claimed "
            "direction"
        )
    elif verdict == REPRODUCED and high < min_effect:
        summary = f"{stats.describe(estimate, low, high)}: real, but smaller than {min_effect:g} point"
    else:
        summary = stats.describe(estimate, low, high)
    return finding(
        claim=claim,
        source=source,
        rule=rule,
        verdict=verdict,
        estimate=estimate,
        low=low,
        high=high,
        sigma=sigma,
        seeds=len(seeds),
        summary=summary,
        evidence=evidence,
    )


def fmt_cell(values, label):
    """'label 81.20 ± 0.50 (3 seeds)' from {seed: top1}."""
    xs = list(values.values())
    mean, std, n = selection.aggregate.mean_std_n(xs)
    return f"{label} {mean:.2f}".strip() + (f" ± {std:.2f}" if n > 1 else "") + f" ({n} seed{'s' * (n != 1)})"


def line_text(cells, no_T="labels only"):
    """'T=1 70.1 ± 0.4, T=2 ...' of {T: {seed: top1}}; T None is `no_T` (labels only, or CTKD's learned T)."""
    return ", ".join(fmt_cell(v, no_T if T is None else f"T={T:g}") for T, v in cells.items())


def by_T(rows):
    """{T: {seed: top1}} sorted by T (the labels-only reference, T None, last)."""
    values = seed_values(rows, lambda r: r["T"])
    return dict(sorted(values.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def setting_but(*drop):
    """The SETTING columns without `drop` (to group configurations that differ only there)."""
    return [c for c in SETTING if c not in drop]


def describe(key, drop=()):
    """A readable name of the configuration `key`: a tuple of the values of setting_but(*drop)."""
    return selection.describe(dict(zip(setting_but(*drop), key)))


def pooled_trend(settings):
    """values {(setting, T): {seed: top1}} and statistic: the mean over settings of each setting's trend."""
    values, parts = {}, []
    for key, rows in settings.items():
        cells = {T: (key, T) for T in by_T(rows) if T is not None}
        if all(trend_cells(cells)):
            values.update({(key, T): v for T, v in by_T(rows).items() if T is not None})
            parts.append(cells)
    return values, (lambda m: np.mean(np.stack([np.asarray(trend(m, c), dtype=float) for c in parts]), 0)), parts


# ---------------------------------------------------------------------------------------------
# The findings


def check_kd_beats_labels(rows):
    """Sect. 4.4: KD gives gains not obtainable from training on labels alone."""
    claim = "Distillation beats training the same student on labels alone."
    values, evidence, parts = {}, [], []
    kd_rows = where(rows, **KD)
    for key, members in groups(kd_rows, SETTING).items():
        labels = [
            r
            for r in where(
                rows,
                method="labels",
                dataset=key[0],
                data_id=key[1],
                student=key[4],
                opt=key[6],
                bs=key[7],
                epochs=key[8],
            )
            if r["student_init"] == key[5]
        ]
        if not labels:
            continue
        line = by_T(members)
        values.update({(key, T): v for T, v in line.items()})
        values[(key, None)] = seed_values(labels, lambda r: None)[None]
        parts.append((key, list(line)))
        evidence.append(f"{describe(key)}: {fmt_cell(values[(key, None)], 'labels only')}; KD {line_text(line)}")

    def statistic(m):
        return np.mean(
            np.stack([np.asarray(mean_of(m, [(k, T) for T in Ts]) - m[(k, None)], dtype=float) for k, Ts in parts]), 0
        )

    return decide(
        claim,
        "Sect. 4.4",
        "mean top-1 of the KD students over T minus the labels-only student, same "
        "data, student and recipe (mean over settings)",
        values,
        statistic,
        evidence,
        None if parts else "no setting has a labels-only student (distill.py --baseline)",
    )


def check_large_T(rows, opt):
    """Figs. 2-3, Table 1: after long training, a briefly fine-tuned pretrained teacher is best distilled at large T."""
    claim = (
        f"With {'AdamW' if opt == 'adamw' else 'SGD'}, after the longest training, large T (>= {LARGE_T:g}) "
        f"beats small T (<= {SMALL_T:g}) for a pretrained, briefly fine-tuned teacher on classes that "
        "overlap its pretraining."
    )
    chosen = longest([r for r in with_role(where(rows, **KD, opt=opt), "brief") if not is_novel(r)])
    settings = groups(chosen, SETTING)
    values, statistic, parts = pooled_trend(settings)
    evidence = [f"{describe(k)}: {line_text(by_T(v))}" for k, v in settings.items()]
    return decide(
        claim,
        "Sect. 4.2, Figs. 2-3",
        "trend (large-T mean minus small-T mean) at the longest budget",
        values,
        statistic,
        evidence,
        None if parts else f"no {opt} runs of a briefly fine-tuned teacher at both small and large T",
    )


def check_adamw_robust(rows):
    """Fig. 2: AdamW's accuracy varies less across T than SGD's."""
    claim = "AdamW is more robust to T than SGD (its top-1 varies less across T)."
    chosen = with_role(where(rows, **KD), "brief")
    by_budget = groups(chosen, setting_but("opt"))
    values, parts, evidence = {}, [], []
    for key, members in by_budget.items():
        lines = {opt: by_T(where(members, opt=opt)) for opt in ("adamw", "sgd")}
        common = sorted(set(lines["adamw"]) & set(lines["sgd"]) - {None})
        if len(common) < 2:
            continue
        for opt in lines:
            values.update({(key, opt, T): lines[opt][T] for T in common})
        parts.append((key, common))
        evidence.append(
            f"{describe(key, drop=['opt'])}: AdamW {line_text({T: lines['adamw'][T] for T in common})}; "
            f"SGD {line_text({T: lines['sgd'][T] for T in common})}"
        )

    def statistic(m):
        return np.mean(
            np.stack(
                [spread(m, [(k, "sgd", T) for T in Ts]) - spread(m, [(k, "adamw", T) for T in Ts]) for k, Ts in parts]
            ),
            0,
        )

    return decide(
        claim,
        "Sect. 4.2, Fig. 2",
        "range of top-1 over T (max - min) with SGD minus with AdamW, same "
        "teacher, student, batch size and budget (mean over budgets)",
        values,
        statistic,
        evidence,
        None if parts else "no budget run with both optimizers at two or more temperatures",
    )


def sgd_trends(rows, bs=None):
    """{setting without epochs: {epochs: rows}} of SGD runs of the briefly fine-tuned teacher."""
    chosen = with_role(where(rows, **KD, opt="sgd", **({"bs": bs} if bs else {})), "brief")
    out = {}
    for key, members in groups(chosen, setting_but("epochs")).items():
        budgets = {e: where(members, epochs=e) for e in sorted({r["epochs"] for r in members})}
        budgets = {e: m for e, m in budgets.items() if all(trend_cells({T: T for T in by_T(m)}))}
        if len(budgets) >= 2:
            out[key] = budgets
    return out


def check_sgd_crossover(rows):
    """Fig. 3: with SGD, small T wins short training, large T wins long training."""
    claim = "With SGD, small T wins with short training and large T with long training (a cross-over)."
    settings = sgd_trends(rows)
    if not settings:
        return decide(claim, "Sect. 4.2, Fig. 3", "", {}, None, [], "no SGD runs at two or more budgets")
    evidence, findings = [], []
    values, short_parts, long_parts = {}, [], []
    for key, budgets in settings.items():
        short, top = min(budgets), max(budgets)
        for e in (short, top):
            line = by_T(budgets[e])
            values.update({(key, e, T): v for T, v in line.items() if T is not None})
        cells = {e: {T: (key, e, T) for T in by_T(budgets[e]) if T is not None} for e in (short, top)}
        short_parts.append(cells[short])
        long_parts.append(cells[top])
        for e, m in budgets.items():
            evidence.append(f"{describe(key, drop=['epochs'])} {e} ep: {line_text(by_T(m))}")
    short = decide("", "", "", values, lambda m: -np.mean(np.stack([trend(m, c) for c in short_parts]), 0), [])
    long_ = decide("", "", "", values, lambda m: np.mean(np.stack([trend(m, c) for c in long_parts]), 0), [])
    shift = decide(
        "",
        "",
        "",
        values,
        lambda m: np.mean(np.stack([trend(m, lc) - trend(m, sc) for sc, lc in zip(short_parts, long_parts)]), 0),
        [],
    )
    if short["verdict"] == REPRODUCED and long_["verdict"] == REPRODUCED:
        verdict = REPRODUCED
    elif (
        CONTRADICTED in (short["verdict"], long_["verdict"])
        and short["low"] is not None
        and (short["high"] < 0 or long_["high"] < 0 or shift["verdict"] == CONTRADICTED)
    ):
        verdict = CONTRADICTED
    else:
        verdict = UNDECIDED
    summary = (
        f"shortest budget: small-T advantage {short['summary']}; longest budget: large-T advantage "
        f"{long_['summary']}; change of the trend from shortest to longest {shift['summary']}"
    )
    return finding(
        claim=claim,
        source="Sect. 4.2, Fig. 3",
        verdict=verdict,
        estimate=long_["estimate"],
        low=long_["low"],
        high=long_["high"],
        sigma=long_["sigma"],
        seeds=long_["seeds"],
        rule=(
            "small-T advantage (minus the trend) at the shortest budget and large-T advantage (the trend) at "
            "the longest: reproduced when both are above 0; contradicted when either is below 0 or the trend "
            "does not grow by the minimum effect"
        ),
        summary=summary,
        evidence=evidence + findings,
    )


def check_batch_shift(rows):
    """Fig. 2: a larger batch needs more training to reach the cross-over."""
    claim = "Larger batches move the SGD cross-over to longer training."
    sizes = sorted({r["bs"] for r in where(rows, **KD, opt="sgd")})
    if len(sizes) < 2:
        return decide(claim, "Sect. 4.2, Fig. 2", "", {}, None, [], f"SGD runs at one batch size only ({sizes})")
    small, large = sgd_trends(rows, sizes[0]), sgd_trends(rows, sizes[-1])
    values, parts, evidence = {}, [], []
    for key_s, budgets_s in small.items():
        key_l = next(
            (
                k
                for k in large
                if [v for c, v in zip(SETTING, k) if c != "bs"] == [v for c, v in zip(SETTING, key_s) if c != "bs"]
            ),
            None,
        )
        if key_l is None:
            continue
        for e in sorted(set(budgets_s) & set(large[key_l])):
            cells = {}
            for tag, b in (("small", budgets_s), ("large", large[key_l])):
                line = by_T(b[e])
                values.update({(tag, key_s, e, T): v for T, v in line.items() if T is not None})
                cells[tag] = {T: (tag, key_s, e, T) for T in line if T is not None}
                evidence.append(f"bs{sizes[0] if tag == 'small' else sizes[-1]} {e} ep: {line_text(line)}")
            parts.append(cells)

    def statistic(m):
        return np.mean(np.stack([trend(m, p["small"]) - trend(m, p["large"]) for p in parts]), 0)

    return decide(
        claim,
        "Sect. 4.2, Fig. 2",
        f"trend with batch {sizes[0]} minus trend with batch {sizes[-1]} at "
        "the same budgets (SGD): positive when the smaller batch reaches large-T gains sooner",
        values,
        statistic,
        evidence,
        None if parts else "no budget run with both batch sizes",
    )


def check_controls(rows, signals, claim, rule):
    """Fig. 5: the teacher's signal vs controls with the same entropy (smoothing) or the same values (bottom-k)."""
    kd = where(rows, method="kd", student_init="random")
    values, parts, evidence = {}, [], []
    for key, members in groups(longest(kd), SETTING).items():
        teacher = by_T(where(members, signal="teacher"))
        for signal in signals:
            for k in sorted({r["k"] for r in where(members, signal=signal)}, key=lambda k: k or 0):
                control = by_T(where(members, signal=signal, k=k))
                common = [T for T in control if T is not None and T >= LARGE_T and T in teacher]
                if not common:
                    continue
                name = signal + (f" k={k}" if k is not None else "")
                values.update({(key, "teacher", T): teacher[T] for T in common})
                values.update({(key, name, T): control[T] for T in common})
                parts.append([((key, "teacher", T), (key, name, T)) for T in common])
                evidence.append(
                    f"{describe(key)}: teacher {line_text({T: teacher[T] for T in common})}; "
                    f"{name} {line_text({T: control[T] for T in common})}"
                )

    def statistic(m):
        return np.mean(
            np.stack([np.mean(np.stack([np.asarray(m[a] - m[b], dtype=float) for a, b in p]), 0) for p in parts]), 0
        )

    return decide(
        claim,
        "Sect. 4.2, Fig. 5",
        rule,
        values,
        statistic,
        evidence,
        None if parts else f"no {' or '.join(signals)} runs at T >= {LARGE_T:g} beside the teacher's",
    )


def check_entropy_trend(rows):
    """Table 1: longer fine-tuning lowers H_rel (towards one-hot) and raises H_rel^-max (towards uniform)."""
    claim = "Longer teacher fine-tuning lowers H_rel (towards one-hot) and raises H_rel^-max (towards uniform)."
    stats_by = selection.teacher_statistics(rows)
    evidence, holds = [], []
    for (dataset, arch), roles in teacher_roles(rows).items():
        if "brief" not in roles or "long" not in roles:
            continue
        s, ln = stats_by.get(roles["brief"], {}), stats_by.get(roles["long"], {})
        T = selection.statistics_T(set(s) & set(ln))
        if T is None:
            continue
        a, b = s[T], ln[T]
        ok = b["H_rel"] < a["H_rel"] and b["H_rel_without_max"] > a["H_rel_without_max"]
        holds.append(ok)
        evidence.append(
            f"{dataset} {arch} at T={T:g}: {roles['brief']} H_rel {a['H_rel']:.3f}, H_rel^-max "
            f"{a['H_rel_without_max']:.3f} -> {roles['long']} H_rel {b['H_rel']:.3f}, "
            f"H_rel^-max {b['H_rel_without_max']:.3f}"
        )
    verdict = UNTESTED if not holds else REPRODUCED if all(holds) else CONTRADICTED
    return finding(
        claim=claim,
        source="Sect. 4.3, Table 1",
        verdict=verdict,
        evidence=evidence,
        rule="the teachers' train-set entropies (no seed noise: one teacher per duration)",
        summary=(
            "no briefly and long fine-tuned teachers of one architecture"
            if not holds
            else f"holds for {sum(holds)} of {len(holds)} teacher pair(s)"
        ),
    )


def origination_pairs(rows):
    """{setting without the teacher: {role: {T: {seed: top1}}}} at the longest budget, random student, KD."""
    roles_of = teacher_roles(rows)
    out = {}
    for r in longest(where(rows, **KD)):
        roles = roles_of.get((selection.dataset_label(r), r["teacher_arch"]), {})
        role = next((name for name, t in roles.items() if t == r["teacher"]), None)
        if role is None or is_novel(r):
            continue
        key = tuple(r.get(c) for c in setting_but("teacher", "epochs"))
        out.setdefault(key, {}).setdefault(role, []).append(r)
    return {k: {role: by_T(v) for role, v in d.items()} for k, d in out.items()}


def check_origination(rows, kind):
    """Table 1: the student with a long fine-tuned teacher (kind 'accuracy'); small T catching up ('catch-up');
    the from-scratch teacher's preference for small T ('scratch')."""
    claims = {
        "accuracy": (
            "Longer teacher fine-tuning lowers the student's accuracy.",
            "mean top-1 over T with the briefly minus the long fine-tuned teacher",
            ("brief", "long"),
        ),
        "catch-up": (
            "With longer teacher fine-tuning, small T catches up with large T.",
            "trend with the briefly minus trend with the long fine-tuned teacher",
            ("brief", "long"),
        ),
        "scratch": (
            "A teacher trained from scratch prefers small T (T = 1 often best).",
            "small-T mean minus large-T mean (minus the trend), from-scratch teacher",
            ("scratch",),
        ),
    }
    claim, rule, needed = claims[kind]
    values, parts, evidence = {}, [], []
    for key, lines in origination_pairs(rows).items():
        if not all(role in lines for role in needed):
            continue
        cells = {}
        for role in needed:
            line = {T: v for T, v in lines[role].items() if T is not None}
            values.update({(key, role, T): v for T, v in line.items()})
            cells[role] = {T: (key, role, T) for T in line}
            evidence.append(f"{describe(key, drop=['teacher', 'epochs'])} · {role} teacher: {line_text(line)}")
        if all(all(trend_cells(c)) for c in cells.values()):
            parts.append(cells)

    def statistic(m):
        if kind == "accuracy":
            return np.mean(
                np.stack([mean_of(m, p["brief"].values()) - mean_of(m, p["long"].values()) for p in parts]), 0
            )
        if kind == "catch-up":
            return np.mean(np.stack([trend(m, p["brief"]) - trend(m, p["long"]) for p in parts]), 0)
        return np.mean(np.stack([-trend(m, p["scratch"]) for p in parts]), 0)

    missing = None if parts else f"no setting with {' and '.join(needed)} teachers at small and large T"
    return decide(claim, "Sect. 4.3, Table 1", rule, values, statistic, evidence, missing)


def same_duration_teachers(rows, first, second):
    """KD rows of the pretrained teachers of datasets `first` and `second` fine-tuned for the same, shortest
    common number of epochs (the comparison of Figs. 6-7 holds the teachers' recipe fixed); None if none."""
    pretrained = [r for r in where(rows, **KD) if r["teacher_from_scratch"] is False]
    durations = [
        {r["teacher_target_epochs"] for r in pretrained if selection.dataset_label(r) == d} for d in (first, second)
    ]
    common = sorted(durations[0] & durations[1] - {None})
    if not common:
        return None
    return [
        r
        for r in pretrained
        if selection.dataset_label(r) in (first, second) and r["teacher_target_epochs"] == common[0]
    ]


def check_dataset_pair(rows, pairs, claim, source, rule):
    """Figs. 6-7: the first dataset of each pair prefers larger T than the second (trends with teachers of the
    same fine-tuning duration, same student and recipe, longest budget), pooled over the pairs that were run."""
    values, parts, evidence = {}, [], []
    for first, second in pairs:
        chosen = same_duration_teachers(rows, first, second)
        lines = {}
        for r in longest(chosen or []):
            key = (r["teacher_arch"], r["teacher_target_epochs"], r["student"], r["opt"], r["bs"])
            lines.setdefault(key, {}).setdefault(selection.dataset_label(r), []).append(r)
        for key, by_data in lines.items():
            if first not in by_data or second not in by_data:
                continue
            cells = {}
            for label in (first, second):
                line = {T: v for T, v in by_T(by_data[label]).items() if T is not None}
                values.update({(key, label, T): v for T, v in line.items()})
                cells[label] = {T: (key, label, T) for T in line}
                evidence.append(
                    f"{label} ({key[0]} fine-tuned {key[1]} ep -> {key[2]}, {key[3]} bs{key[4]}): {line_text(line)}"
                )
            if all(all(trend_cells(c)) for c in cells.values()):
                parts.append((cells[first], cells[second]))

    def statistic(m):
        return np.mean(np.stack([trend(m, a) - trend(m, b) for a, b in parts]), 0)

    names = " or ".join(f"{a} and {b}" for a, b in pairs)
    return decide(
        claim,
        source,
        rule,
        values,
        statistic,
        evidence,
        None if parts else f"not both of {names} run with teachers of the same fine-tuning duration",
    )


def check_methods(rows):
    """Fig. 1: no single KD method beats shared fixed-T KD consistently."""
    claim = "No single KD method beats shared fixed-T KD consistently."
    chosen = longest(where(rows, signal="teacher", student_init="random"))
    values, per_method, evidence = {}, {}, []
    for key, members in groups(where(chosen, method="kd"), SETTING).items():
        kd_line = {T: v for T, v in by_T(members).items() if T is not None}
        for method in sorted({r["method"] for r in chosen} - {"kd", "labels"}):
            other = by_T(where(chosen, method=method, **dict(zip(SETTING, key))))
            if not other:
                continue
            Ts = [T for T in other if T in kd_line] or [None]
            values.update({(key, "kd", T): v for T, v in kd_line.items()})
            values.update({(key, method, T): v for T, v in other.items()})
            kd_cells = [(key, "kd", T) for T in (Ts if Ts != [None] else kd_line)]
            per_method.setdefault(method, []).append(([(key, method, T) for T in Ts], kd_cells))
            shown = {T: v for T, v in kd_line.items() if T in Ts or Ts == [None]}
            evidence.append(f"{describe(key)}: {method} {line_text(other, 'learned T')} vs KD {line_text(shown)}")
    if not per_method:
        return decide(claim, "Sect. 4.1, Fig. 1", "", {}, None, [], "no other method run beside KD")
    results = {}
    for method, parts in per_method.items():
        results[method] = decide(
            "",
            "",
            "",
            values,
            lambda m, parts=parts: np.mean(np.stack([mean_of(m, a) - mean_of(m, b) for a, b in parts]), 0),
            [],
        )
    beats = [m for m, r in results.items() if r["verdict"] == REPRODUCED]
    bounded = all(r["high"] is not None and r["high"] < stats.MIN_EFFECT for r in results.values())
    verdict = CONTRADICTED if beats else REPRODUCED if bounded else UNDECIDED
    summary = "; ".join(f"{m} minus KD {r['summary']}" for m, r in results.items())
    return finding(
        claim=claim,
        source="Sect. 4.1, Fig. 1",
        verdict=verdict,
        seeds=max(r["seeds"] for r in results.values()),
        summary=summary,
        rule=(
            "each method's mean top-1 over the temperatures both ran minus KD's (CTKD: its learned T vs KD's "
            "mean): contradicted if some method is above KD, reproduced if none is above by the minimum "
            "effect"
        ),
        evidence=evidence,
    )


def check_init(rows):
    """Table 2: larger T helps every student initialisation, less for pretrained and fine-tuned students."""
    claim = "Large T helps students of every initialisation, less so pretrained (IN1K) and fine-tuned (FT) ones."
    chosen = longest(
        with_role(where(rows, method="kd", signal="teacher"), "brief"),
        columns=("dataset", "data_id", "teacher", "student", "opt", "bs"),
    )
    values, parts, evidence = {}, [], []
    for key, members in groups(chosen, setting_but("student_init")).items():
        cells = {}
        for (init,), rows_init in groups(members, ["student_init"]).items():
            line = {T: v for T, v in by_T(rows_init).items() if T is not None}
            if all(trend_cells(line)):
                values.update({(key, init, T): v for T, v in line.items()})
                cells[init] = {T: (key, init, T) for T in line}
                evidence.append(f"{describe(key, drop=['student_init'])} · init {init}: {line_text(line)}")
        pretrained = [i for i in cells if i in (*selection.PRETRAINED_INITS, "FT")]
        if "random" in cells and pretrained:
            parts.append((cells["random"], [cells[i] for i in pretrained], cells))

    def statistic(m):
        return np.mean(
            np.stack([trend(m, r) - np.mean(np.stack([trend(m, c) for c in pre]), 0) for r, pre, _ in parts]), 0
        )

    finding = decide(
        claim,
        "Sect. 4.4, Table 2",
        "trend with random-init students minus the mean trend of the "
        "pretrained ones (IN1K, FT); each init's own trend is in the evidence",
        values,
        statistic,
        evidence,
        None if parts else "no setting with random and pretrained (IN1K or FT) students",
    )
    for _, _, cells in parts:
        for init, line in cells.items():
            one = decide("", "", "", values, lambda m, line=line: trend(m, line), [])
            finding["evidence"].append(f"trend for init {init}: {one['summary']} ({one['verdict']})")
    return finding


def check_nearly_uniform(rows):
    """Fig. 4: at the largest T the teachers' softmax is nearly uniform (top minus the rest < 0.01)."""
    claim = (
        "At the largest T, the teachers' mean sorted softmax differs by less than 0.01 between the top class "
        "and the rest."
    )
    stats_by = selection.teacher_statistics(rows)
    evidence, holds = [], []
    for teacher, by_T_stats in stats_by.items():
        T = max(by_T_stats)
        p = by_T_stats[T]["sorted_softmax"]
        if not p or T < 40:  # the paper's statement is about T = 40
            continue
        holds.append(p[0] - p[-1] < 0.01)
        evidence.append(f"{teacher} at T={T:g}: top {p[0]:.4f}, second {p[1]:.4f}, last {p[-1]:.4f}")
    verdict = UNTESTED if not holds else REPRODUCED if all(holds) else CONTRADICTED
    return finding(
        claim=claim,
        source="Sect. 4.2, Fig. 4",
        verdict=verdict,
        rule="the teachers' train-set mean sorted softmax (no noise)",
        summary=f"holds for {sum(holds)} of {len(holds)} teacher(s)" if holds else "no teacher run at T >= 40",
        evidence=evidence,
    )


def largest_T_effect(rows):
    """The largest difference between two temperatures of one KD line (same teacher, student, recipe,
    signal) relative to its seed spread: the std over seeds of the paired difference (a seed is the same
    student and batches at both temperatures). Returns (setting, T_a, T_b, difference, its seed std, the
    larger seed std of the two cells) or None. A description chosen after looking, not a test."""
    best = None
    for key, members in groups(where(finished(rows), method="kd"), SETTING + ["signal", "k"]).items():
        line = {T: v for T, v in by_T(members).items() if T is not None}
        for a in line:
            for b in line:
                seeds = sorted(set(line[a]) & set(line[b]))
                if b <= a or len(seeds) < 2:
                    continue
                diff, spread, _ = selection.aggregate.mean_std_n([line[b][s] - line[a][s] for s in seeds])
                cells = max(selection.aggregate.mean_std_n([line[T][s] for s in seeds])[1] for T in (a, b))
                if best is None or abs(diff) / max(spread, 1e-9) > abs(best[3]) / max(best[4], 1e-9):
                    best = (dict(zip(SETTING + ["signal", "k"], key)), a, b, diff, spread, cells)
    return best


def check_all(rows):
    """Every finding, in the paper's order (a list of dicts: claim, source, rule, verdict, summary, evidence...)."""
    rows = finished(rows) + [r for r in rows if r.get("status") != "ok"]
    ok = finished(rows)
    smooth_rule = f"teacher minus control, mean over T >= {LARGE_T:g} (longest budget, AdamW and SGD alike)"
    return [
        check_kd_beats_labels(ok),
        check_methods(ok),
        check_large_T(ok, "adamw"),
        check_large_T(ok, "sgd"),
        check_adamw_robust(ok),
        check_sgd_crossover(ok),
        check_batch_shift(ok),
        check_nearly_uniform(rows),
        check_controls(
            ok,
            ["smooth-global", "smooth-instance"],
            "Class relationships matter at large T: label "
            "smoothing with the teacher's entropy is worse than the teacher.",
            smooth_rule,
        ),
        check_controls(
            ok,
            ["bottomk"],
            "Class relationships matter at large T: the teacher's values with the "
            "non-top classes shuffled (bottom-k randomized) are worse than the teacher.",
            smooth_rule,
        ),
        check_entropy_trend(rows),
        check_origination(ok, "accuracy"),
        check_origination(ok, "catch-up"),
        check_origination(ok, "scratch"),
        check_init(ok),
        check_dataset_pair(
            ok,
            FINE_VS_COARSE,
            "Fine-grained targets (classes overlapping pretraining) prefer larger T than coarse-grained ones.",
            "Sect. 4.5, Fig. 6",
            "trend on the fine-grained minus the coarse-grained target (teachers fine-tuned equally long)",
        ),
        check_dataset_pair(
            ok,
            OVERLAP_VS_NOVEL,
            "Fine-grained targets absent from pretraining prefer smaller T than overlapping ones.",
            "Sect. 4.5, Fig. 7",
            "trend on overlapping minus novel classes (teachers fine-tuned equally long)",
        ),
    ]
