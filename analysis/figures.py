"""The paper's figures (and, via tables.py, its tables) from flat run rows.

    python analysis/figures.py RESULTS [--out RESULTS/figures]

Each artifact function takes the flat rows of aggregate.flatten (one per run), writes PNG(s) into
`out`, and returns {"files": [...], "missing": "<what was absent, or ''>", "key_numbers": {...}}.
Accuracy is the mean over seeds, error bars the std where a point has more than one seed.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, also when run as a script
from analysis import aggregate, selection, tables
from analysis.plotting import (
    PALETTE,
    format_T_axis,
    heatmap,
    legend,
    panel_grid,
    plot_reference_line,
    plot_T_curve,
    png_path,
    save,
    sequential_colours,
    style,
    suptitle,
    title,
)
from analysis.selection import best_cell, describe, fmt
from grid import METHODS as OTHER_METHODS  # kd.py's methods but KD, named without importing torch

METHODS = ["kd", *OTHER_METHODS]  # kd.py's order, KD first
CONTROLS = ["smooth-global", "smooth-instance", "bottomk"]


def artifact(files=(), missing=(), key_numbers=None):
    """The dict every artifact function returns; `missing` is a list of sentences (joined)."""
    return {
        "files": [str(f) for f in files],
        "missing": "; ".join(m for m in missing if m),
        "key_numbers": key_numbers or {},
    }


def accuracy_axis(ax):
    ax.set_ylabel("student top-1 (%)")


# ---------------------------------------------------------------------------------------------
# Fig. 1: KD methods across T


def method_rank(method):
    """Position in METHODS (KD first): fixes each method's colour across panels."""
    return METHODS.index(method) if method in METHODS else len(METHODS)


def fig1_methods(rows, out):
    """Fig. 1: top-1 vs T, one line per KD method, one panel per dataset x teacher x student (baseline runs)."""
    cells = selection.cells_of(rows)
    chosen = selection.method_panels(cells)
    if not chosen:
        return artifact(
            missing=[
                "Fig. 1: no baseline runs (teacher signal, random student) where KD and "
                "another method were run in the same setting"
            ]
        )
    fig, axes = panel_grid(len(chosen))
    key_numbers, seen = {}, set()
    for ax, (key, lines) in zip(axes, chosen):
        temperatures = []
        for (method,), line in sorted(lines.items(), key=lambda kv: method_rank(kv[0][0])):
            seen.add(method)
            colour, marker = style(method_rank(method))
            fixed = selection.by_T(line)
            if fixed:
                plot_T_curve(
                    ax,
                    fixed,
                    label=method.upper() if method != "kd" else "KD (shared fixed T)",
                    color=colour,
                    marker=marker,
                )
                temperatures += [c["T"] for c in fixed]
            for learned in (c for c in line if c["T"] is None and c.get("top1_mean") is not None):
                plot_reference_line(ax, learned, f"{method.upper()} (learned T)", colour)
        format_T_axis(ax, temperatures)
        accuracy_axis(ax)
        title(ax, describe(key))
        legend(ax)
        kd_best = best_cell(lines[("kd",)])
        others = [(m, best_cell(line)) for (m,), line in lines.items() if m != "kd"]
        m, other = max((o for o in others if o[1]), key=lambda o: o[1]["top1_mean"], default=(None, None))
        key_numbers[describe(key)] = f"KD best {fmt(kd_best)}; best other method: {m} {fmt(other)}"
    suptitle(fig, "Fig. 1: KD methods vs shared fixed-T KD")
    path = save(fig, Path(out) / "fig1_methods.png")
    absent = [m for m in METHODS if m not in seen]
    return artifact([path], [f"methods not run: {', '.join(absent)}" if absent else ""], key_numbers)


# ---------------------------------------------------------------------------------------------
# Figs. 2-3: training configuration


def absent_configs(groups):
    """'sgd bs256' style names of optimizer x batch-size pairs seen somewhere but absent from a group."""
    pairs = {pair for _, grid in groups for pair in grid}
    opts, sizes = {p[0] for p in pairs}, {p[1] for p in pairs}
    absent = set()
    for _, grid in groups:
        absent |= {(o, b) for o in opts for b in sizes if (o, b) not in grid}
    return [f"{o} bs{b}" for o, b in sorted(absent, key=aggregate.sort_key)]


def fig2_heatmaps(rows, out):
    """Fig. 2: top-1 heatmaps, epochs x T, one panel per optimizer x batch size (method kd, teacher signal)."""
    groups = selection.training_config_groups(selection.cells_of(rows))
    if not groups:
        return artifact(
            missing=[
                "Fig. 2: no teacher x student with more than one training configuration (optimizer, batch size, epochs)"
            ]
        )
    files, key_numbers = [], {}
    for key, grid in groups:
        fig, axes = panel_grid(len(grid), ncols=2, width=5.6, height=3.4)
        for ax, ((opt, bs), budgets) in zip(axes, grid.items()):
            temperatures = sorted({c["T"] for line in budgets.values() for c in line})
            epochs = sorted(budgets)
            values = [[(selection.at_T(budgets[e], t) or {}).get("top1_mean") for t in temperatures] for e in epochs]
            heatmap(ax, values, [f"{e} ep" for e in epochs], [f"{t:g}" for t in temperatures])
            ax.set_xlabel("temperature T")
            ax.set_ylabel("distillation epochs")
            title(ax, f"{opt} · batch size {bs}")
            best = {e: best_cell(budgets[e]) for e in epochs}
            key_numbers[f"{describe(key)} · {opt} bs{bs}: best T per budget"] = ", ".join(
                f"{e} ep → T={best[e]['T']:g}" for e in epochs if best[e]
            )
        suptitle(fig, f"Fig. 2: top-1 (%) by epochs and T — {describe(key)}")
        files.append(
            save(
                fig,
                png_path(
                    out, "fig2", selection.dataset_label(key), key["teacher"], key["student"], key["student_init"]
                ),
            )
        )
    absent = absent_configs(groups)
    return artifact(files, [f"configurations not run: {', '.join(absent)}" if absent else ""], key_numbers)


def fig3_epochs(rows, out):
    """Fig. 3: top-1 vs T; the longest epoch budget in colour, shorter budgets in grey; a panel per (opt, bs)."""
    groups = selection.training_config_groups(selection.cells_of(rows))
    baselines = selection.labels_only(rows)
    if not groups:
        return artifact(missing=["Fig. 3: no teacher x student with more than one training configuration"])
    files, key_numbers, single = [], {}, []
    for key, grid in groups:
        fig, axes = panel_grid(len(grid), ncols=2)
        for ax, ((opt, bs), budgets) in zip(axes, grid.items()):
            epochs = sorted(budgets)
            greys = np.linspace(0.75, 0.4, len(epochs) - 1) if len(epochs) > 2 else [0.55]
            for shade, e in zip(greys, epochs[:-1]):
                plot_T_curve(ax, budgets[e], f"{e} ep", color=str(shade), marker=".")
            plot_T_curve(ax, budgets[epochs[-1]], f"{epochs[-1]} ep (longest)", color=PALETTE[0], marker="o")
            base = selection.labels_only_for(baselines, dict(key, opt=opt, bs=bs, epochs=epochs[-1]))
            if base:
                plot_reference_line(ax, base, f"labels only, {epochs[-1]} ep")
            format_T_axis(ax, [c["T"] for line in budgets.values() for c in line])
            accuracy_axis(ax)
            title(ax, f"{opt} · batch size {bs}")
            legend(ax)
            if len(epochs) < 2:
                single.append(f"{opt} bs{bs}")
            longest, shortest = best_cell(budgets[epochs[-1]]), best_cell(budgets[epochs[0]])
            key_numbers[f"{describe(key)} · {opt} bs{bs}"] = (
                f"longest ({epochs[-1]} ep) best {fmt(longest)}; shortest ({epochs[0]} ep) best {fmt(shortest)}"
            )
        suptitle(fig, f"Fig. 3: top-1 vs T by epoch budget — {describe(key)}")
        files.append(
            save(
                fig,
                png_path(
                    out, "fig3", selection.dataset_label(key), key["teacher"], key["student"], key["student_init"]
                ),
            )
        )
    missing = [f"only one epoch budget for {', '.join(sorted(set(single)))}" if single else ""]
    return artifact(files, missing, key_numbers)


# ---------------------------------------------------------------------------------------------
# Fig. 4: the teachers' sorted softmax


def fig4_sorted_softmax(rows, out):
    """Fig. 4: each teacher's mean sorted T-softmax (log y) vs rank, one curve per T, a panel per teacher."""
    stats = {
        t: {T: s for T, s in by_T.items() if s["sorted_softmax"]}
        for t, by_T in selection.teacher_statistics(rows).items()
    }
    stats = {t: by_T for t, by_T in stats.items() if by_T}
    if not stats:
        return artifact(missing=["Fig. 4: no teacher statistics (mean_sorted_softmax) in the results"])
    fig, axes = panel_grid(len(stats))
    key_numbers = {}
    for ax, (teacher, by_T) in zip(axes, stats.items()):
        colours = sequential_colours(len(by_T))
        for colour, (T, s) in zip(colours, by_T.items()):
            p = np.clip(np.asarray(s["sorted_softmax"], dtype=float), 1e-12, None)
            ax.plot(np.arange(1, len(p) + 1), p, color=colour, label=f"T={T:g}", linewidth=1.5)
        ax.set_yscale("log")
        ax.set_xlabel("class rank (sorted by probability)")
        ax.set_ylabel("mean probability (log scale)")
        any_stats = next(iter(by_T.values()))
        title(ax, f"{teacher} ({any_stats['arch']}, {any_stats['dataset']})")
        legend(ax, ncol=2)
        ax.grid(True, alpha=0.3)
        T_max = max(by_T)
        p = np.asarray(by_T[T_max]["sorted_softmax"], dtype=float)
        bottom = p[len(p) // 2 :]
        key_numbers[f"{teacher} at T={T_max:g}"] = (
            f"top − second = {p[0] - p[1]:.2g}; spread of the bottom half = {bottom.max() - bottom.min():.2g}"
        )
    suptitle(fig, "Fig. 4: teachers' mean sorted temperature-scaled softmax")
    path = save(fig, Path(out) / "fig4_sorted_softmax.png")
    single = [t for t, by_T in stats.items() if len(by_T) < 2]
    return artifact([path], [f"a single T only for {', '.join(single)}" if single else ""], key_numbers)


# ---------------------------------------------------------------------------------------------
# Fig. 5: controls (label smoothing, bottom-k randomized)


def control_label(signal, k):
    return {
        "teacher": "teacher (real soft targets)",
        "smooth-global": "label smoothing, global",
        "smooth-instance": "label smoothing, per instance",
    }.get(signal, f"bottom K−k randomized, k={k}")


def signal_rank(signal):
    order = ["teacher"] + CONTROLS
    return order.index(signal) if signal in order else len(order)


def fig5_controls(rows, out):
    """Fig. 5: top-1 vs T for the teacher's signal vs label smoothing (global, per instance) and bottom-k."""
    chosen = selection.control_panels(selection.cells_of(rows))
    if not chosen:
        return artifact(
            missing=[
                "Fig. 5: no runs of the teacher signal together with a control "
                "(smooth-global, smooth-instance, bottomk) in the same setting"
            ]
        )
    fig, axes = panel_grid(len(chosen))
    key_numbers, seen, baselines = {}, set(), selection.labels_only(rows)
    for ax, (key, lines) in zip(axes, chosen):
        base = selection.labels_only_for(baselines, key)
        if base:
            plot_reference_line(ax, base, "labels only (no KD)")
        ranked = sorted(lines.items(), key=lambda kv: (signal_rank(kv[0][0]), kv[0][1] or 0))
        for i, ((signal, k), line) in enumerate(ranked):
            seen.add(signal)
            colour, marker = style(i)
            plot_T_curve(ax, selection.by_T(line), control_label(signal, k), color=colour, marker=marker)
        format_T_axis(ax, [c["T"] for line in lines.values() for c in line])
        accuracy_axis(ax)
        title(ax, describe(key))
        legend(ax)
        teacher = selection.by_T(lines[("teacher", None)])
        if not teacher:
            continue
        T_big = teacher[-1]["T"]
        at_big = ", ".join(
            f"{control_label(s, k)} {fmt(selection.at_T(line, T_big), with_T=False)}"
            for (s, k), line in lines.items()
            if s != "teacher"
        )
        key_numbers[f"{describe(key)} at T={T_big:g}"] = (
            f"teacher {fmt(selection.at_T(teacher, T_big), with_T=False)}; {at_big}"
        )
    suptitle(fig, "Fig. 5: the teacher's soft targets vs controls")
    path = save(fig, Path(out) / "fig5_controls.png")
    absent = [c for c in CONTROLS if c not in seen]
    return artifact([path], [f"controls not run: {', '.join(absent)}" if absent else ""], key_numbers)


# ---------------------------------------------------------------------------------------------
# Figs. 6-7: datasets


def plot_dataset_panels(chosen, out, name, heading, label_text, order, baselines=()):
    """One PNG of dataset-comparison panels (lines from selection.dataset_panels) -> (path, key numbers)."""
    fig, axes = panel_grid(len(chosen))
    key_numbers = {}
    for ax, (key, lines) in zip(axes, chosen):
        for label, line in sorted(lines.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
            if not line:
                continue
            colour, marker = style(order.index(label) if label in order else len(order))
            plot_T_curve(ax, line, label_text(label, line), color=colour, marker=marker)
            first = line[0]
            base = selection.labels_only_for(
                baselines,
                dict(
                    key,
                    dataset=first["dataset"],
                    data_id=first["data_id"],
                    student_init="random",
                    epochs=first["epochs"],
                ),
            )
            if base:
                plot_reference_line(ax, base, f"{label}: labels only", colour)
            key_numbers[f"{describe(key)} · {label_text(label, line)}"] = (
                f"teacher {line[0]['teacher']}; best {fmt(best_cell(line))}; "
                f"plateau from T={selection.preferred_T(line):g}"
            )
        format_T_axis(ax, [c["T"] for line in lines.values() for c in line])
        accuracy_axis(ax)
        title(ax, describe(key))
        legend(ax)
    suptitle(fig, heading)
    return save(fig, Path(out) / name), key_numbers


def line_setting(line):
    return f"{line[0]['epochs']} ep" if line else ""


def fig6_granularity(rows, out):
    """Fig. 6: top-1 vs T per dataset, fine vs coarse (real datasets and their synth analogs)."""
    cells = selection.cells_of(rows)
    files, key_numbers, missing = [], {}, []
    for family, names in selection.GRANULARITY_FAMILIES.items():

        def label_of(c, names=names):
            return selection.dataset_label(c) if selection.dataset_label(c) in names else None

        chosen = [(k, lines) for k, lines in selection.dataset_panels(cells, label_of) if len(lines) > 1]
        present = {label_of(c) for c in cells if label_of(c)}
        if len(present) < len(names):
            missing.append(f"{family}: no runs on {', '.join(n for n in names if n not in present)}")
        if not chosen:
            continue
        path, numbers = plot_dataset_panels(
            chosen,
            out,
            f"fig6_granularity_{family}.png",
            f"Fig. 6: dataset granularity ({family} datasets)",
            lambda label, line: f"{label} ({selection.GRANULARITY[label]}; {line_setting(line)})",
            names,
            selection.labels_only(rows),
        )
        files.append(path)
        key_numbers.update(numbers)
    return artifact(files, missing, key_numbers)


def fig7_overlap(rows, out):
    """Fig. 7: top-1 vs T for fine classes that overlap pretraining vs novel ones (birds; synth analogs)."""
    cells = selection.cells_of(rows)
    files, key_numbers, missing = [], {}, []
    for family, pair in (("birds", "ImageNet-Birds vs Finer-Grained Birds"), ("synth", "synth-fine vs synth-novel")):

        def label_of(c, family=family):
            return selection.overlap_kind(c) if selection.overlap_family(c) == family else None

        chosen = [(k, lines) for k, lines in selection.dataset_panels(cells, label_of) if len(lines) > 1]
        if not any(label_of(c) for c in cells):
            missing.append(f"{pair}: no runs")
        elif not chosen:
            missing.append(f"{pair}: not both run with the same student and training configuration")
        if not chosen:
            continue
        path, numbers = plot_dataset_panels(
            chosen,
            out,
            f"fig7_overlap_{family}.png",
            f"Fig. 7: overlapping vs novel fine classes ({pair})",
            lambda label, line: f"{label}: {selection.dataset_label(line[0])} ({line_setting(line)})",
            ["overlapping", "novel"],
            selection.labels_only(rows),
        )
        files.append(path)
        key_numbers.update(numbers)
    return artifact(files, missing, key_numbers)


# ---------------------------------------------------------------------------------------------

ARTIFACTS = {
    "Fig. 1 (KD methods vs T)": fig1_methods,
    "Fig. 2 (epochs x T heatmaps)": fig2_heatmaps,
    "Fig. 3 (epoch budgets vs T)": fig3_epochs,
    "Fig. 4 (teachers' sorted softmax)": fig4_sorted_softmax,
    "Fig. 5 (controls vs T)": fig5_controls,
    "Table 1 (teacher origination)": tables.table1_teacher_origination,
    "Table 2 (student initialization)": tables.table2_student_init,
    "Fig. 6 (dataset granularity)": fig6_granularity,
    "Fig. 7 (overlapping vs novel classes)": fig7_overlap,
}


def make_all(rows, out):
    """Every artifact that the rows allow -> {artifact name: its result dict}."""
    Path(out).mkdir(parents=True, exist_ok=True)
    return {name: make(rows, out) for name, make in ARTIFACTS.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description="Make the paper's figures and tables from a results folder.")
    p.add_argument("results", help="folder holding run folders (at any depth)")
    p.add_argument("--out", default=None, help="output folder (default: RESULTS/figures)")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"figures.py: error: RESULTS '{args.results}' is not a folder", file=sys.stderr)
        return 2
    records, problems = aggregate.load_results(args.results)
    aggregate.print_problems(problems, "figures.py")
    made = make_all(aggregate.distill_rows(records), args.out or Path(args.results) / "figures")
    for name, result in made.items():
        status = f"made {len(result['files'])} file(s)" if result["files"] else "not made"
        print(f"{name}: {status}" + (f"; missing: {result['missing']}" if result["missing"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
