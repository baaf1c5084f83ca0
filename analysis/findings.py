"""The paper's findings (STUDY.md §5), each checked automatically on whatever results exist.

Every check compares pairs of mean accuracies (or teacher entropies). A difference counts only when
it exceeds the seed margin (the largest seed std of the cells compared, or 1 point with one seed);
smaller ones are "no clear difference". A finding is "reproduced" when more than half of its
comparisons support it clearly, "not reproduced" otherwise, "not enough results" without any.
"""
from analysis import aggregate, selection
from analysis.selection import LARGE_T, at_T, best_cell, by_T, describe, fmt, keep, margin, preferred_T

REPRODUCED, NOT_REPRODUCED, NOT_ENOUGH = "reproduced", "not reproduced", "not enough results"
OUTCOME_WORDS = {"yes": "supports", "no": "contradicts", "unclear": "no clear difference"}
MAX_EVIDENCE = 8


def compare(a, b, tol):
    """'yes' if a exceeds b by more than tol, 'no' if b exceeds a by more than tol, else 'unclear'."""
    return "yes" if a - b > tol else "no" if b - a > tol else "unclear"


def finding(claim, rule, outcomes, need_all=False):
    """A finding's verdict from its comparisons [(outcome, evidence)]; need_all: every one must say 'yes'."""
    n, yes = len(outcomes), sum(o == "yes" for o, _ in outcomes)
    unclear = sum(o == "unclear" for o, _ in outcomes)
    if not n:
        verdict, summary = NOT_ENOUGH, "no comparison possible with these results"
    else:
        holds = yes == n if need_all else 2 * yes > n
        verdict = REPRODUCED if holds else NOT_REPRODUCED
        summary = f"{yes} of {n} comparison(s) support it" + (f", {unclear} show no clear difference" if unclear else "")
    evidence = [f"{OUTCOME_WORDS[o]}: {text}" for o, text in outcomes[:MAX_EVIDENCE]]
    if n > MAX_EVIDENCE:
        evidence.append(f"… and {n - MAX_EVIDENCE} more")
    return {"claim": claim, "rule": rule, "verdict": verdict, "summary": summary, "evidence": evidence}


def temperatures(line):
    return {c["T"] for c in by_T(line)}


# ---------------------------------------------------------------------------------------------
# Study 1: KD approach

def check_no_method_beats_kd(cells):
    """Study 1: does any method beat fixed-T KD clearly in every setting it ran?"""
    outcomes = {}
    for key, lines in selection.method_panels(cells):
        kd = best_cell(lines[("kd",)])
        for (method,), line in lines.items():
            other = best_cell(line)
            if method == "kd" or not kd or not other:
                continue
            beats = compare(other["top1_mean"], kd["top1_mean"], margin([kd, other]))
            outcomes.setdefault(method, []).append((beats, f"{describe(key)}: {method} {fmt(other)} vs KD {fmt(kd)}"))
    per_method = []
    for method, results in outcomes.items():
        wins = sum(b == "yes" for b, _ in results)
        text = f"{method} beats KD clearly in {wins} of {len(results)} setting(s) ({'; '.join(t for _, t in results[:2])})"
        per_method.append(("no" if wins == len(results) else "yes", text))
    return finding("No single KD method beats shared fixed-T KD consistently.",
                   "for each method, its best top-1 over T vs KD's best over T in every baseline setting both ran; "
                   "reproduced unless some method beats KD by more than the seed margin in all of its settings",
                   per_method, need_all=True)


# ---------------------------------------------------------------------------------------------
# Study 2: training configuration

def spread(line, common):
    values = [at_T(line, T)["top1_mean"] for T in common]
    return max(values) - min(values)


def check_adamw_robust(cells):
    """Study 2: AdamW's accuracy varies less across T than SGD's."""
    outcomes = []
    for key, grid in selection.training_config_groups(cells):
        for (opt, bs), budgets in grid.items():
            if opt != "adamw" or ("sgd", bs) not in grid:
                continue
            for epochs in sorted(set(budgets) & set(grid[("sgd", bs)])):
                adamw, sgd = budgets[epochs], grid[("sgd", bs)][epochs]
                common = sorted(temperatures(adamw) & temperatures(sgd))
                if len(common) < 2:
                    continue
                a, s = spread(adamw, common), spread(sgd, common)
                tol = margin(adamw + sgd)
                outcomes.append((compare(s, a, tol), f"{describe(key)} bs{bs} {epochs} ep: range of top-1 over "
                                 f"T={', '.join(f'{t:g}' for t in common)}: AdamW {a:.2f} vs SGD {s:.2f} (margin {tol:.2f})"))
    return finding("AdamW is more robust to T than SGD.",
                   "range (max − min) of mean top-1 over the temperatures both ran, same teacher, student, batch "
                   "size and epochs; supports when SGD's range exceeds AdamW's by more than the seed margin",
                   outcomes)


def small_vs_large(line, lo, hi):
    """compare(acc at the large T, acc at the small T) and a text."""
    a, b = at_T(line, lo), at_T(line, hi)
    return compare(b["top1_mean"], a["top1_mean"], margin([a, b])), f"T={lo:g} {fmt(a, False)} vs T={hi:g} {fmt(b, False)}"


def check_sgd_crossover(cells):
    """Study 2: with SGD, small T wins short runs and large T long runs."""
    outcomes = []
    for key, grid in selection.training_config_groups(cells):
        for (opt, bs), budgets in grid.items():
            if opt != "sgd" or len(budgets) < 2:
                continue
            short, long = budgets[min(budgets)], budgets[max(budgets)]
            common = sorted(temperatures(short) & temperatures(long))
            if len(common) < 2:
                continue
            short_large, short_text = small_vs_large(short, common[0], common[-1])
            long_large, long_text = small_vs_large(long, common[0], common[-1])
            if short_large == "no" and long_large == "yes":
                outcome = "yes"
            elif "unclear" in (short_large, long_large):
                outcome = "unclear"
            else:
                outcome = "no"
            outcomes.append((outcome, f"{describe(key)} sgd bs{bs}: {min(budgets)} ep {short_text}; "
                                      f"{max(budgets)} ep {long_text}"))
    return finding("With SGD, small T wins with short training and large T with long training (a cross-over).",
                   "SGD, shortest vs longest epoch budget: supports when the smallest T beats the largest at the "
                   "shortest budget and the largest T beats the smallest at the longest, both beyond the seed margin",
                   outcomes)


def crossover_epochs(budgets):
    """The first epoch budget at which the largest T beats the smallest clearly (None: never)."""
    for epochs in sorted(budgets):
        ts = sorted(temperatures(budgets[epochs]))
        if len(ts) >= 2 and small_vs_large(budgets[epochs], ts[0], ts[-1])[0] == "yes":
            return epochs
    return None


def check_batch_delays_crossover(cells):
    """Study 2: the SGD cross-over needs more epochs with a larger batch."""
    outcomes = []
    for key, grid in selection.training_config_groups(cells):
        sizes = sorted(bs for (opt, bs), budgets in grid.items() if opt == "sgd" and len(budgets) >= 2)
        if len(sizes) < 2:
            continue
        small, large = (crossover_epochs(grid[("sgd", bs)]) for bs in (sizes[0], sizes[-1]))
        if small is None and large is None:
            outcome = "unclear"
        elif small is None:
            outcome = "no"
        else:
            outcome = "yes" if large is None or large > small else "no"
        never = "no cross-over"
        outcomes.append((outcome, f"{describe(key)} sgd: large T first wins at bs{sizes[0]}: "
                                  f"{never if small is None else f'{small} ep'}, at bs{sizes[-1]}: "
                                  f"{never if large is None else f'{large} ep'}"))
    return finding("Larger batches move the SGD cross-over to longer training.",
                   "SGD, smallest vs largest batch size (each with >= 2 epoch budgets): the first budget where the "
                   "largest T beats the smallest beyond the seed margin; supports when it is later for the larger batch",
                   outcomes)


def is_novel(cell):
    label = selection.dataset_label(cell)
    return selection.overlap_kind(cell) == "novel" or selection.GRANULARITY.get(label, "").endswith("novel")


def check_large_T_after_long_training(cells):
    """Studies 2-3: T >= 10 is best after the longest training with a briefly fine-tuned teacher."""
    chosen = [c for c in keep(cells, method="kd", signal="teacher", student_init="random")
              if c["teacher_from_scratch"] is False and c["teacher_target_epochs"] is not None and not is_novel(c)]
    briefest = {}
    for c in chosen:
        k = (selection.dataset_label(c), c["teacher_arch"])
        briefest[k] = min(briefest.get(k, c["teacher_target_epochs"]), c["teacher_target_epochs"])
    chosen = [c for c in chosen if c["teacher_target_epochs"] == briefest[(selection.dataset_label(c), c["teacher_arch"])]]
    columns = [c for c in aggregate.CONFIG_COLUMNS if c not in ("epochs", "T")]
    outcomes = []
    for values, members in selection.group(chosen, columns).items():
        longest = max(c["epochs"] for c in members)
        line = by_T(c for c in members if c["epochs"] == longest)
        small = best_cell([c for c in line if c["T"] < LARGE_T])
        large = best_cell([c for c in line if c["T"] >= LARGE_T])
        if small and large:
            key = dict(zip(columns, values), epochs=longest)
            outcomes.append((compare(large["top1_mean"], small["top1_mean"], margin([small, large])),
                             f"{describe(key)} (teacher fine-tuned {key['teacher_target_epochs']} ep): best T≥{LARGE_T:g} "
                             f"{fmt(large)} vs best T<{LARGE_T:g} {fmt(small)}"))
    return finding(f"Unexpectedly large T (≥ {LARGE_T:g}) works best after long training when the teacher is "
                   "pretrained and briefly fine-tuned (classes overlapping pretraining).",
                   "datasets whose classes overlap pretraining, the most briefly fine-tuned teacher per dataset and "
                   f"architecture, the longest epoch budget: best top-1 at T ≥ {LARGE_T:g} vs at T < {LARGE_T:g}",
                   outcomes)


def check_smoothing_worse(cells):
    """Study 2 controls: entropy-matched label smoothing is worse than the teacher at large T."""
    outcomes = []
    for key, lines in selection.control_panels(cells):
        teacher = lines[("teacher", None)]
        for (signal, _), line in lines.items():
            common = [T for T in temperatures(teacher) & temperatures(line) if T >= LARGE_T]
            if not str(signal).startswith("smooth") or not common:
                continue
            t, s = at_T(teacher, max(common)), at_T(line, max(common))
            outcomes.append((compare(t["top1_mean"], s["top1_mean"], margin([t, s])),
                             f"{describe(key)} at T={max(common):g}: teacher {fmt(t, False)} vs {signal} {fmt(s, False)}"))
    return finding("Class relationships matter at large T: label smoothing with matched entropy is worse than the "
                   "real teacher.",
                   f"top-1 of the teacher's signal vs each label-smoothing control at the largest common T ≥ {LARGE_T:g}",
                   outcomes)


# ---------------------------------------------------------------------------------------------
# Study 3: teacher origination

def check_entropy_trend(rows):
    """Study 3: longer fine-tuning lowers H_rel and raises H_rel^-max."""
    stats = selection.teacher_statistics(rows)
    info = {}
    for r in rows:
        if r.get("teacher") in stats and r.get("teacher_from_scratch") is False and r.get("teacher_target_epochs") is not None:
            info.setdefault((selection.dataset_label(r), r["teacher_arch"]), {})[r["teacher"]] = r["teacher_target_epochs"]
    outcomes = []
    for (dataset, arch), teachers in sorted(info.items(), key=lambda kv: aggregate.sort_key(kv[0])):
        if len(set(teachers.values())) < 2:
            continue
        short, long = min(teachers, key=teachers.get), max(teachers, key=teachers.get)
        T = selection.statistics_T(set(stats[short]) & set(stats[long]))
        if T is None:
            continue
        s, l = stats[short][T], stats[long][T]
        if None in (s["H_rel"], l["H_rel"], s["H_rel_without_max"], l["H_rel_without_max"]):
            continue
        holds = l["H_rel"] < s["H_rel"] and l["H_rel_without_max"] > s["H_rel_without_max"]
        outcomes.append(("yes" if holds else "no", f"{dataset} {arch} at T={T:g}: fine-tuned {teachers[short]} ep "
                         f"H_rel {s['H_rel']:.3f}, H_rel^-max {s['H_rel_without_max']:.3f} → {teachers[long]} ep "
                         f"H_rel {l['H_rel']:.3f}, H_rel^-max {l['H_rel_without_max']:.3f}"))
    return finding("Longer teacher fine-tuning: H_rel decreases (toward one-hot) and H_rel^-max increases (toward uniform).",
                   "per dataset and teacher architecture, the shortest vs the longest fine-tuned teacher at T=1 (or the "
                   "smallest T both have): supports when H_rel is lower and H_rel^-max higher for the longer one",
                   outcomes)


def finetune_pairs(cells):
    """(setting key, arch, shortest, longest fine-tuned teacher) from the Table 1 settings."""
    for key, teachers in selection.origination_groups(cells):
        by_arch = {}
        for t in teachers:
            if t["from_scratch"] is False and t["target_epochs"] is not None and t["cells"]:
                by_arch.setdefault(t["arch"], []).append(t)
        for arch, ts in by_arch.items():
            ts = sorted(ts, key=lambda t: t["target_epochs"])
            if ts[0]["target_epochs"] != ts[-1]["target_epochs"]:
                yield key, arch, ts[0], ts[-1]


def check_finetuning_lowers_accuracy(cells):
    """Study 3: a longer fine-tuned teacher gives a worse student."""
    outcomes = []
    for key, arch, short, long in finetune_pairs(cells):
        s, l = best_cell(short["cells"]), best_cell(long["cells"])
        outcomes.append((compare(s["top1_mean"], l["top1_mean"], margin([s, l])),
                         f"{describe(key)} · {arch} teachers: fine-tuned {short['target_epochs']} ep → best {fmt(s)}; "
                         f"{long['target_epochs']} ep → best {fmt(l)}"))
    return finding("Longer teacher fine-tuning lowers the student's accuracy.",
                   "best top-1 over T with the shortest vs the longest fine-tuned teacher of an architecture",
                   outcomes)


def check_small_T_catches_up(cells):
    """Study 3: the gain of the best T over the smallest shrinks with longer fine-tuning."""
    outcomes = []
    for key, arch, short, long in finetune_pairs(cells):
        if len(short["cells"]) < 2 or len(long["cells"]) < 2:
            continue
        gaps = [best_cell(t["cells"])["top1_mean"] - t["cells"][0]["top1_mean"] for t in (short, long)]
        tol = margin(short["cells"] + long["cells"])
        outcomes.append((compare(gaps[0], gaps[1], tol),
                         f"{describe(key)} · {arch} teachers: best minus smallest-T top-1 is {gaps[0]:.2f} with the teacher "
                         f"fine-tuned {short['target_epochs']} ep, {gaps[1]:.2f} with {long['target_epochs']} ep"))
    return finding("With longer teacher fine-tuning, small T catches up with large T.",
                   "gap between the best T and the smallest T, shortest vs longest fine-tuned teacher; supports when "
                   "the gap shrinks by more than the seed margin",
                   outcomes)


def check_scratch_prefers_T1(cells):
    """Study 3: a teacher trained from scratch is best distilled at the smallest T."""
    chosen = [c for c in keep(cells, method="kd", signal="teacher", student_init="random") if c["teacher_from_scratch"]]
    outcomes = []
    for key, lines in selection.panels(chosen, []):
        line = by_T(lines[()])
        if len(line) < 2:
            continue
        lowest, other = line[0], best_cell(line[1:])
        outcomes.append((compare(lowest["top1_mean"], other["top1_mean"], margin([lowest, other])),
                         f"{describe(key)}: T={lowest['T']:g} {fmt(lowest, False)} vs best other {fmt(other)}"))
    return finding("Teachers trained from scratch prefer T = 1.",
                   "per from-scratch teacher and setting: the smallest T run (1 in the default grid) vs the best "
                   "other T; supports when the smallest T is better by more than the seed margin",
                   outcomes)


# ---------------------------------------------------------------------------------------------
# Study 5: dataset granularity

def preference_outcome(larger, smaller, lines):
    """Does dataset `larger` plateau at a larger T than `smaller`? ('yes'/'no'/'unclear', text)."""
    a, b = preferred_T(lines[larger]), preferred_T(lines[smaller])
    outcome = "yes" if a > b else "no" if a < b else "unclear"
    return outcome, (f"{larger}: best {fmt(best_cell(lines[larger]))}, plateau from T={a:g}; "
                     f"{smaller}: best {fmt(best_cell(lines[smaller]))}, plateau from T={b:g}")


def check_fine_prefers_larger_T(cells):
    """Study 5: fine-grained (overlapping) datasets plateau at a larger T than coarse ones."""
    outcomes = []
    for names in selection.GRANULARITY_FAMILIES.values():
        def label_of(c, names=names):
            label = selection.dataset_label(c)
            return label if label in names and selection.GRANULARITY[label] in ("fine", "coarse") else None
        for key, lines in selection.dataset_panels(cells, label_of):
            for fine in (n for n in lines if selection.GRANULARITY[n] == "fine" and lines[n]):
                for coarse in (n for n in lines if selection.GRANULARITY[n] == "coarse" and lines[n]):
                    outcome, text = preference_outcome(fine, coarse, lines)
                    outcomes.append((outcome, f"{describe(key)}: {text}"))
    return finding("Fine-grained targets whose classes overlap pretraining prefer larger T than coarse-grained ones.",
                   "the T where top-1 plateaus (smallest T within the seed margin of the best), fine vs coarse dataset, "
                   "same student and training configuration, each with its baseline teacher at its longest budget",
                   outcomes)


def check_novel_prefers_smaller_T(cells):
    """Study 5: novel fine classes plateau at a smaller T than overlapping ones."""
    outcomes = []
    for family in ("birds", "synth"):
        def label_of(c, family=family):
            return selection.overlap_kind(c) if selection.overlap_family(c) == family else None
        for key, lines in selection.dataset_panels(cells, label_of):
            if lines.get("overlapping") and lines.get("novel"):
                named = {selection.dataset_label(line[0]): line for line in lines.values()}
                overlap, novel = (selection.dataset_label(lines[k][0]) for k in ("overlapping", "novel"))
                outcome, text = preference_outcome(overlap, novel, named)
                outcomes.append((outcome, f"{describe(key)}: {text}"))
    return finding("Fine-grained targets absent from pretraining prefer smaller T than overlapping ones.",
                   "the T where top-1 plateaus, novel (Finer-Grained Birds, synth-novel) vs overlapping "
                   "(ImageNet-Birds, synth-fine) classes, same student and training configuration",
                   outcomes)


def check_all(rows):
    """Every finding (a list of dicts: claim, rule, verdict, summary, evidence) from flat run rows."""
    cells = selection.cells_of(rows)
    return [check_no_method_beats_kd(cells), check_adamw_robust(cells), check_sgd_crossover(cells),
            check_batch_delays_crossover(cells), check_large_T_after_long_training(cells),
            check_smoothing_worse(cells), check_entropy_trend(rows), check_finetuning_lowers_accuracy(cells),
            check_small_T_catches_up(cells), check_scratch_prefers_T1(cells), check_fine_prefers_larger_T(cells),
            check_novel_prefers_smaller_T(cells)]
