"""Which results each figure, table and finding uses: filters, panels and curves over T.

A "cell" is one row of aggregate.aggregate(): one configuration with top1_mean / top1_std / top1_n
over its seeds. Plain data only (no plotting): shared by figures.py, tables.py and findings.py.
"""

from analysis import aggregate

# Granularity of the datasets (Fig. 6); "novel" = fine classes absent from ImageNet-1k pretraining.
GRANULARITY = {
    "pets": "fine",
    "cifar100": "coarse",
    "cars": "fine, novel",
    "tiny-imagenet": "coarse",
    "synth-fine": "fine",
    "synth-coarse": "coarse",
    "synth-novel": "fine, novel",
}
GRANULARITY_FAMILIES = {
    "real": ["pets", "cars", "cifar100", "tiny-imagenet"],
    "synth": ["synth-fine", "synth-novel", "synth-coarse"],
}
# A configuration without any of these cannot be placed in a figure (distill.py always writes them).
REQUIRED = ["dataset", "teacher", "teacher_arch", "student", "student_init", "method", "signal", "opt", "bs", "epochs"]


def cells_of(rows):
    """Flat run rows -> cells (aggregate.aggregate), leaving out configurations with a required column unknown."""
    return [c for c in aggregate.aggregate(rows) if all(c.get(k) is not None for k in REQUIRED)]


def labels_only(rows):
    """Cells (aggregate.aggregate) of the students trained on labels alone (distill.py --baseline)."""
    return [
        c
        for c in aggregate.aggregate([r for r in rows if r.get("method") == "labels"])
        if c.get("top1_mean") is not None
    ]


def labels_only_for(baselines, key):
    """The labels-only cell for a panel key (same data, student, initialisation and recipe), or None."""
    columns = ["dataset", "data_id", "data_key", "student", "student_init", "opt", "bs", "epochs"]
    return next((c for c in baselines if all(c.get(k) == key[k] for k in columns if k in key)), None)


def dataset_label(cell):
    """The dataset's name; for image folders its folder name (e.g. 'imagenet-birds')."""
    if cell.get("dataset") == "imagefolder" and cell.get("data_id"):
        return cell["data_id"]
    return cell.get("dataset")


def overlap_kind(cell):
    """'overlapping' / 'novel' for the Fig. 7 datasets (ImageNet-Birds vs Finer-Grained Birds and
    their synth analogs synth-fine vs synth-novel), else None."""
    name = str(dataset_label(cell) or "").lower()
    if name == "synth-fine" or ("imagenet" in name and "bird" in name):
        return "overlapping"
    if name == "synth-novel" or ("finer" in name and "bird" in name):
        return "novel"
    return None


def overlap_family(cell):
    """Fig. 7 compares within a family: 'synth' (synth-fine vs synth-novel) or 'birds' (image folders)."""
    return "synth" if str(cell.get("dataset")).startswith("synth-") else "birds"


def keep(cells, **conditions):
    """The cells whose columns equal every condition (e.g. method='kd', signal='teacher')."""
    return [c for c in cells if all(c.get(k) == v for k, v in conditions.items())]


def group(cells, columns):
    """{tuple of values of `columns`: [cells]}, keys in a stable order."""
    out = {}
    for c in cells:
        out.setdefault(tuple(c.get(k) for k in columns), []).append(c)
    return {k: out[k] for k in sorted(out, key=aggregate.sort_key)}


def by_T(cells):
    """The cells with a temperature and a mean accuracy, sorted by T."""
    return sorted((c for c in cells if c.get("T") is not None and c.get("top1_mean") is not None), key=lambda c: c["T"])


def at_T(cells, T):
    """The cell at temperature T (None if absent)."""
    return next((c for c in by_T(cells) if c["T"] == T), None)


def best_cell(cells):
    """The cell with the highest mean top-1 (None if none has one)."""
    scored = [c for c in cells if c.get("top1_mean") is not None]
    return max(scored, key=lambda c: c["top1_mean"]) if scored else None


def margin(cells):
    """Smallest difference that counts as real: the largest seed std among `cells` (those with n > 1),
    or 1 point when every cell has a single seed."""
    stds = [c["top1_std"] for c in cells if c and (c.get("top1_n") or 0) > 1 and c.get("top1_std") is not None]
    return max(stds) if stds else 1.0


def preferred_T(cells):
    """Smallest T whose accuracy is within the seed margin of the best (where the curve plateaus)."""
    curve = by_T(cells)
    if not curve:
        return None
    best = best_cell(curve)["top1_mean"]
    tol = margin(curve)
    return next(c["T"] for c in curve if c["top1_mean"] >= best - tol)


def fmt(cell, with_T=True):
    """'81.20 ± 0.50 at T=4' (the std only with several seeds; 'n/a' without a result)."""
    if cell is None or cell.get("top1_mean") is None:
        return "n/a"
    text = f"{cell['top1_mean']:.2f}"
    if (cell.get("top1_n") or 0) > 1:
        text += f" ± {cell['top1_std']:.2f}"
    if with_T:
        text += " (learned T)" if cell.get("T") is None else f" at T={cell['T']:g}"
    return text


def describe(key):
    """A readable panel title from a dict of configuration values."""
    parts = []
    if "dataset" in key:
        parts.append(dataset_label(key))
    teacher, student = key.get("teacher") or key.get("teacher_arch"), key.get("student")
    if teacher and student:
        parts.append(f"{teacher} → {student}")
    elif teacher or student:
        parts.append(f"teacher {teacher}" if teacher else f"student {student}")
    if key.get("student_init") not in (None, "random"):
        parts.append(f"init {key['student_init']}")
    if key.get("method") not in (None, "kd"):
        parts.append(key["method"])
    if key.get("signal") not in (None, "teacher"):
        parts.append(key["signal"] + (f" k={key['k']}" if key.get("k") is not None else ""))
    train = " ".join(
        str(x)
        for x in (
            key.get("opt"),
            f"bs{key['bs']}" if key.get("bs") else None,
            f"{key['epochs']} ep" if key.get("epochs") else None,
        )
        if x
    )
    if train:
        parts.append(train)
    return " · ".join(p for p in parts if p)


def panels(cells, line_columns):
    """Cells -> [(panel key dict, {line value: cells sorted by T})]. A panel holds the cells that agree
    on every configuration column except T and `line_columns`; a line value is a tuple of those."""
    panel_columns = [c for c in aggregate.CONFIG_COLUMNS if c != "T" and c not in line_columns]
    out = []
    for key, members in group(cells, panel_columns).items():
        lines = {
            value: sorted(m, key=lambda c: (c["T"] is not None, c["T"] or 0))
            for value, m in group(members, line_columns).items()
        }
        out.append((dict(zip(panel_columns, key)), lines))
    return out


# ---------------------------------------------------------------------------------------------
# The cells of each study


def method_panels(cells):
    """Fig. 1: baseline runs (teacher signal, random student) where KD and another method share a panel."""
    chosen = keep(cells, signal="teacher", student_init="random")
    return [(key, lines) for key, lines in panels(chosen, ["method"]) if ("kd",) in lines and len(lines) > 1]


def training_config_groups(cells):
    """Figs. 2-3: per teacher x student, {(opt, bs): {epochs: cells by T}} where more than one
    training configuration was run (method kd, teacher signal)."""
    chosen = keep(cells, method="kd", signal="teacher")
    columns = [c for c in aggregate.CONFIG_COLUMNS if c not in ("opt", "bs", "epochs", "T")]
    out = []
    for key, members in group(chosen, columns).items():
        configs = {k: by_T(m) for k, m in group(members, ["opt", "bs", "epochs"]).items() if by_T(m)}
        if len(configs) < 2:
            continue
        grid = {}
        for (opt, bs, epochs), line in configs.items():
            grid.setdefault((opt, bs), {})[epochs] = line
        out.append((dict(zip(columns, key)), grid))
    return out


def control_panels(cells):
    """Fig. 5: panels (method kd) where the teacher's signal and at least one control were run."""
    chosen = keep(cells, method="kd")
    return [
        (key, lines) for key, lines in panels(chosen, ["signal", "k"]) if ("teacher", None) in lines and len(lines) > 1
    ]


def origination_groups(cells):
    """Table 1: per dataset x student x training configuration where teachers of at least two
    originations (from scratch / fine-tuned N epochs) were distilled: (key, [one dict per teacher:
    teacher, arch, from_scratch, target_epochs, top1, cells by T])."""
    chosen = keep(cells, method="kd", signal="teacher", student_init="random")
    columns = ["dataset", "data_id", "data_key", "student", "opt", "bs", "epochs"]
    out = []
    for key, members in group(chosen, columns).items():
        origins = {(c["teacher_from_scratch"], c["teacher_target_epochs"]) for c in members}
        if len(origins) < 2:
            continue
        order = ["teacher_arch", "teacher_from_scratch", "teacher_target_epochs", "teacher"]
        teachers = [
            {
                "teacher": t,
                "arch": arch,
                "from_scratch": scratch,
                "target_epochs": epochs,
                "top1": aggregate.mean_std_n([c["teacher_top1"] for c in m])[0],
                "cells": by_T(m),
            }
            for (arch, scratch, epochs, t), m in group(members, order).items()
        ]
        out.append((dict(zip(columns, key)), teachers))
    return out


def origination(teacher):
    """'scratch' or 'ft N ep' for a teacher dict of origination_groups."""
    return "scratch" if teacher["from_scratch"] else f"ft {teacher['target_epochs']} ep"


INIT_ORDER = ["random", "TT", "in1k", "pretrained", "FT"]
PRETRAINED_INITS = (
    "in1k",
    "pretrained",
)  # general pretraining only: ImageNet weights, or a checkpoint of another dataset


def init_groups(cells):
    """Table 2: {student init: cells by T} per teacher x student x configuration with >= 2 inits."""
    chosen = keep(cells, method="kd", signal="teacher")
    columns = ["dataset", "data_id", "data_key", "teacher", "student", "opt", "bs", "epochs"]
    out = []
    for key, members in group(chosen, columns).items():
        inits = group(members, ["student_init"])
        if len(inits) < 2:
            continue
        order = sorted(inits, key=lambda k: INIT_ORDER.index(k[0]) if k[0] in INIT_ORDER else len(INIT_ORDER))
        out.append((dict(zip(columns, key)), {k[0]: by_T(inits[k]) for k in order}))
    return out


def baseline_teacher(cells):
    """The teacher with the most cells (the one every study used); ties: the name sorted first."""
    counts = {}
    for c in cells:
        counts[c["teacher"]] = counts.get(c["teacher"], 0) + 1
    return min(counts, key=lambda t: (-counts[t], str(t))) if counts else None


def dataset_panels(cells, label_of):
    """Figs. 6-7: panels per (family, teacher arch, student, opt, bs) with one line per dataset
    (label_of(cell) -> line label or None to drop): its baseline teacher at its longest epoch budget."""
    chosen = [c for c in keep(cells, method="kd", signal="teacher", student_init="random") if label_of(c)]
    out = []
    columns = ["teacher_arch", "student", "opt", "bs"]
    for key, members in group(chosen, columns).items():
        lines = {}
        for label in sorted({label_of(c) for c in members}, key=str):
            same = [c for c in members if label_of(c) == label]
            teacher = baseline_teacher(same)
            same = [c for c in same if c["teacher"] == teacher]
            longest = max(c["epochs"] or 0 for c in same)
            lines[label] = by_T([c for c in same if (c["epochs"] or 0) == longest])
        out.append((dict(zip(columns, key)), lines))
    return out


# ---------------------------------------------------------------------------------------------
# Teacher statistics (per run rows, not cells)


def teacher_statistics(rows):
    """{teacher: {T: {"H_rel", "H_rel_without_max", "sorted_softmax", "arch", "dataset"}}} from the
    statistics every distillation result carries (identical across seeds and students)."""
    out = {}
    for r in rows:
        if r.get("teacher") is None or r.get("stats_T") is None:
            continue
        entry = out.setdefault(r["teacher"], {}).setdefault(
            r["stats_T"],
            {
                "H_rel": r.get("H_rel"),
                "H_rel_without_max": r.get("H_rel_without_max"),
                "sorted_softmax": r.get("sorted_softmax"),
                "arch": r.get("teacher_arch"),
                "dataset": r.get("dataset"),
            },
        )
        if entry["sorted_softmax"] is None:
            entry["sorted_softmax"] = r.get("sorted_softmax")
    return {t: dict(sorted(v.items())) for t, v in sorted(out.items())}


def statistics_T(available):
    """The temperature to report a teacher's entropies at: 1 if available, else the smallest."""
    return 1.0 if 1.0 in available else (min(available) if available else None)
