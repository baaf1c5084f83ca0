"""The paper's tables: Markdown (best T of each row in bold) plus a heatmap PNG per setting.

Table 1: teacher origination (from scratch / fine-tuned N epochs) x T, with the teacher's top-1
and relative entropies H_rel, H_rel^-max. Table 2: student initialization (random/TT/in1k/FT) x T.
Called from figures.py; each function returns the same dict as a figure function.
"""

from pathlib import Path

from analysis import selection
from analysis.plotting import heatmap, panel_grid, png_path, save, title
from runs import atomic_write


def markdown_table(header, rows):
    """A GitHub-flavoured Markdown table (list of lines)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def accuracy_cells(line, temperatures):
    """Markdown cells of a row's accuracy per T ('81.20 ± 0.50'), the best in bold; plus its best T."""
    best = selection.best_cell(line)
    out = []
    for T in temperatures:
        cell = selection.at_T(line, T)
        text = selection.fmt(cell, with_T=False) if cell else "–"
        out.append(f"**{text}**" if cell and best and cell["top1_mean"] == best["top1_mean"] else text)
    return out, (f"{best['T']:g}" if best else "–")


def number(x, digits=3):
    return "–" if x is None else f"{x:.{digits}f}"


def table_heatmap(rows, temperatures, heading, path):
    """Heatmap PNG of label -> cells by T (best per row boxed)."""
    fig, (ax,) = panel_grid(1, width=1.2 * len(temperatures) + 4, height=0.45 * len(rows) + 1.8)
    values = [[(selection.at_T(line, T) or {}).get("top1_mean") for T in temperatures] for _, line in rows]
    heatmap(ax, values, [label for label, _ in rows], [f"{T:g}" for T in temperatures])
    ax.set_xlabel("temperature T")
    title(ax, heading)
    return save(fig, path)


def write_markdown(lines, path):
    return str(atomic_write(path, "\n".join(lines) + "\n"))


def all_temperatures(lines):
    return sorted({c["T"] for line in lines for c in line})


# ---------------------------------------------------------------------------------------------


def table1_teacher_origination(rows, out):
    """Table 1: one row per teacher (arch, origination, top-1, H_rel, H_rel^-max), student top-1 per T."""
    groups = selection.origination_groups(selection.cells_of(rows))
    if not groups:
        return {
            "files": [],
            "key_numbers": {},
            "missing": "Table 1: no setting where teachers of different originations (from scratch, "
            "fine-tuned for different durations) were distilled to the same student",
        }
    stats = selection.teacher_statistics(rows)
    md = [
        "# Table 1: teacher origination",
        "",
        "Student top-1 (%), mean ± std over seeds; **bold**: the best T of each row. H_rel = H(p)/log K on the "
        "teacher's T-softmax, H_rel^-max the same without the argmax class (renormalised); both are train-set "
        "means at the T in the 'entropy at' column (T=1 when that was run, else the smallest T run).",
        "",
    ]
    files, key_numbers = [], {}
    for key, teachers in groups:
        temperatures = all_temperatures(t["cells"] for t in teachers)
        if not temperatures:
            continue
        header = (
            ["teacher", "arch", "origination", "teacher top-1", "H_rel", "H_rel^-max", "entropy at"]
            + [f"T={T:g}" for T in temperatures]
            + ["best T"]
        )
        table = []
        for t in teachers:
            by_T = stats.get(t["teacher"], {})
            T_stats = selection.statistics_T(list(by_T))
            s = by_T.get(T_stats, {})
            accuracies, best_T = accuracy_cells(t["cells"], temperatures)
            table.append(
                [
                    t["teacher"],
                    t["arch"],
                    selection.origination(t),
                    number(t["top1"], 2),
                    number(s.get("H_rel")),
                    number(s.get("H_rel_without_max")),
                    "–" if T_stats is None else f"T={T_stats:g}",
                ]
                + accuracies
                + [best_T]
            )
            key_numbers[f"{selection.describe(key)} · {t['teacher']} ({selection.origination(t)})"] = (
                f"best {selection.fmt(selection.best_cell(t['cells']))}; H_rel {number(s.get('H_rel'))}, "
                f"H_rel^-max {number(s.get('H_rel_without_max'))}" + ("" if T_stats is None else f" at T={T_stats:g}")
            )
        heading = selection.describe(key)
        md += [f"## {heading}", ""] + markdown_table(header, table) + [""]
        labelled = [(f"{t['teacher']} ({selection.origination(t)})", t["cells"]) for t in teachers]
        files.append(
            table_heatmap(
                labelled,
                temperatures,
                f"Table 1: student top-1 (%) — {heading}",
                png_path(
                    out, "table1", selection.dataset_label(key), key["student"], key["opt"], key["bs"], key["epochs"]
                ),
            )
        )
    if not files:
        return {"files": [], "key_numbers": {}, "missing": "Table 1: every teacher's runs failed"}
    files.insert(0, write_markdown(md, Path(out) / "table1_teacher_origination.md"))
    every = [t for _, teachers in groups for t in teachers]
    missing = []
    if not any(t["from_scratch"] for t in every):
        missing.append("no teacher trained from scratch")
    if len({t["target_epochs"] for t in every if not t["from_scratch"]}) < 2:
        missing.append("fewer than two fine-tuning durations")
    return {"files": files, "missing": "; ".join(missing), "key_numbers": key_numbers}


def table2_student_init(rows, out):
    """Table 2: one row per student initialization (random, TT, in1k or pretrained, FT), student top-1 per T."""
    groups = selection.init_groups(selection.cells_of(rows))
    if not groups:
        return {
            "files": [],
            "key_numbers": {},
            "missing": "Table 2: no teacher x student distilled from more than one initialization",
        }
    md = [
        "# Table 2: student initialization",
        "",
        "Student top-1 (%), mean ± std over seeds; **bold**: the best T of each row. random: random weights; "
        "TT: target-trained from random; in1k: ImageNet-1k pretrained; pretrained: a checkpoint of another dataset "
        "(the built-in data's stand-in for in1k); FT: pretrained, then target fine-tuned.",
        "",
    ]
    files, key_numbers, seen = [], {}, set()
    for key, inits in groups:
        temperatures = all_temperatures(inits.values())
        if not temperatures:
            continue
        header = ["student init"] + [f"T={T:g}" for T in temperatures] + ["best T"]
        table = []
        for init, line in inits.items():
            seen.add(init)
            accuracies, best_T = accuracy_cells(line, temperatures)
            table.append([init] + accuracies + [best_T])
            key_numbers[f"{selection.describe(key)} · init {init}"] = f"best {selection.fmt(selection.best_cell(line))}"
        heading = selection.describe(key)
        md += [f"## {heading}", ""] + markdown_table(header, table) + [""]
        files.append(
            table_heatmap(
                list(inits.items()),
                temperatures,
                f"Table 2: student top-1 (%) — {heading}",
                png_path(
                    out,
                    "table2",
                    selection.dataset_label(key),
                    key["teacher"],
                    key["student"],
                    key["opt"],
                    key["bs"],
                    key["epochs"],
                ),
            )
        )
    if not files:
        return {"files": [], "key_numbers": {}, "missing": "Table 2: every run failed"}
    files.insert(0, write_markdown(md, Path(out) / "table2_student_init.md"))
    pretrained_seen = seen & set(selection.PRETRAINED_INITS)  # either stands for general pretraining
    absent = [
        i for i in selection.INIT_ORDER if i not in seen and not (i in selection.PRETRAINED_INITS and pretrained_seen)
    ]
    return {
        "files": files,
        "missing": f"initializations not run: {', '.join(absent)}" if absent else "",
        "key_numbers": key_numbers,
    }
