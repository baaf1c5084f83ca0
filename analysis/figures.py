"""The paper's figures and tables from the table of runs: top-1 against T (mean over seeds, the spread over seeds
as error bars), one PNG per figure, Tables 1-2 as Markdown.

    python -m analysis.figures RESULTS      # RESULTS/figures/

Each figure is a selection of KD lines (analysis/findings.py's vocabulary) drawn by one function, `curves`.
"""

import argparse
import io
from pathlib import Path

from matplotlib.figure import Figure  # the object API: no pyplot, no backend to choose

from analysis import findings, stats, table
from analysis.findings import kd, line, where
from runs import atomic_write

# Okabe & Ito's colour-blind-safe palette, with a marker per colour as a second cue
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def mean_sd(by_seed):
    return stats.summary(list(by_seed.values()))[:2]


def curves(ax, lines, title):
    """Top-1 against T (log axis) for {label: {T: {seed: top1}}}; T None (labels only, learned T): a dashed level."""
    for i, (label, ln) in enumerate(lines.items()):
        colour, marker = PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]
        temps = [T for T in ln if T is not None]
        means = [mean_sd(ln[T])[0] for T in temps]
        errors = [mean_sd(ln[T])[1] or 0 for T in temps]
        if temps:
            ax.errorbar(temps, means, yerr=errors, label=label, color=colour, marker=marker, ms=4, capsize=2)
        if None in ln:
            ax.axhline(mean_sd(ln[None])[0], color=colour, ls="--", lw=1, label=f"{label}: no T")
    ax.set_xscale("log")
    ax.set_xlabel("T")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def save_panels(panels, path, heading):
    """One PNG of [(title, lines)] panels, three per row; returns the path (None without panels)."""
    panels = [(t, ls) for t, ls in panels if ls]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (title, lines) in zip(axes.flat, panels):
        curves(ax, lines, title)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return atomic_write(path, buffer.getvalue())


def lines_by(rows, column, label=str):
    """{label(value): line} of the rows split by one column (each split must be one setting)."""
    out = {}
    for key, r in findings.settings(rows, [column]):
        try:
            out[label(key[column])] = line(r)
        except findings.NotTested:
            continue
    return out


def panels_by(rows, split, column, label=str):
    """[(title, lines)]: one panel per setting of `split` columns, one line per value of `column`."""
    return [(findings.name({**dict.fromkeys(findings.SETTING, ""), **key}), lines_by(r, column, label))
            for key, r in findings.settings(rows, split)]  # fmt: skip


def with_labels(rows, kd_rows):
    """The KD rows plus the labels-only students of the same settings, drawn in each teacher's panel (T None:
    a dashed level)."""
    key = lambda r: (r["dataset"], r["student"], r["init"], r["opt"], r["bs"], r["epochs"])  # noqa: E731
    teachers = {}
    for r in kd_rows:
        teachers.setdefault(key(r), set()).add(r["teacher"])
    labels = where(rows, method="labels")
    return kd_rows + [dict(r, teacher=t) for r in labels for t in sorted(teachers.get(key(r), ()))]


def make_all(rows, out):
    """Every figure and table the rows allow, into `out`; returns the files written."""
    out, setting = Path(out), ["dataset", "teacher", "student", "init"]
    base = kd(rows, init="random", bs=64)
    longest = max((r["epochs"] for r in base), default=None)
    top = where(kd(rows, bs=64, opt="adamw"), epochs=longest)
    methods = [r for r in where(rows, signal="teacher", init="random") if r["method"] != "labels"]
    controls = where(rows, method="kd", init="random")
    budget = lambda e: f"{e} ep" if e else "labels"  # noqa: E731
    # (file, heading, rows, panels by, one line per, line label); figures 1 and 5 only with more than one line
    specs = [
        ("fig1_methods", "Fig. 1: KD methods", methods if len({r["method"] for r in methods}) > 1 else [],
         setting + ["opt", "epochs"], "method", str),
        ("fig2-3_budgets", "Figs. 2-3: optimizer x budget", with_labels(rows, base), setting + ["opt", "bs"],
         "epochs", budget),
        ("fig5_controls", "Fig. 5: controls", controls if len({r["signal"] for r in controls}) > 1 else [],
         setting + ["opt", "epochs"], "signal", str),
        ("table1_teachers", "Table 1: teachers", top, ["dataset", "student", "init"], "teacher", str),
        ("table2_inits", "Table 2: inits", top, ["dataset", "teacher", "student"], "init", str),
    ]  # fmt: skip
    made = [save_panels(panels_by(r, split, column, label), out / f"{name}.png", heading)
            for name, heading, r, split, column, label in specs]  # fmt: skip
    datasets = lines_by(where(top, init="random", teacher_kind="ft"), "dataset")
    made.append(save_panels([("datasets", datasets)], out / "fig6-7_datasets.png",
                            "Figs. 6-7: datasets (briefly and long fine-tuned teachers)"))  # fmt: skip
    made += [softmax_figure(rows, out / "fig4_sorted_softmax.png"), teacher_table(rows, out / "table1_teachers.md")]
    return [str(p) for p in made if p]


def softmax_figure(rows, path):
    """Fig. 4: each teacher's mean sorted softmax at T = 40, on the train set."""
    seen = {
        (r["teacher"], r["teacher_weights"]): r["sorted_softmax"]
        for r in rows
        if r["stats_T"] == 40 and r["sorted_softmax"]
    }
    if not seen:
        return None
    fig = Figure(figsize=(5, 3.4))
    ax = fig.subplots()
    for i, ((teacher, weights), p) in enumerate(sorted(seen.items())):
        ax.plot(range(1, len(p) + 1), p, color=PALETTE[i % len(PALETTE)], label=f"{teacher} {weights[:6]}", lw=1)
    ax.set_xlabel("class rank")
    ax.set_ylabel("mean softmax at T = 40")
    ax.legend(fontsize=6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return atomic_write(path, buffer.getvalue())


def teacher_table(rows, path):
    """Table 1 as Markdown: per teacher, its test top-1 and H_rel, H_rel^-max at T = 1, mean over its seeds."""
    by = {}
    for r in rows:
        if r["teacher"] and r["stats_T"] == 1 and r["H_rel"] is not None:
            by.setdefault(r["teacher"], {})[r["teacher_weights"]] = (
                r["teacher_top1"],
                r["H_rel"],
                r["H_rel_without_max"],
            )
    if not by:
        return None
    lines = ["| teacher | weights | test top-1 | H_rel | H_rel^-max |", "|---|---|---|---|---|"]
    for teacher, weights in sorted(by.items()):
        cols = list(zip(*weights.values()))
        lines.append(f"| {teacher} | {len(weights)} | " + " | ".join(f"{sum(c) / len(c):.3f}" for c in cols) + " |")
    return atomic_write(path, "\n".join(lines) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(description="The paper's figures and tables from RESULTS into RESULTS/figures.")
    p.add_argument("results", help="folder holding run folders (at any depth)")
    args = p.parse_args(argv)
    done = table.load_table(args.results)[0]
    for path in make_all(done, Path(args.results) / "figures"):
        print(path)


if __name__ == "__main__":
    main()
