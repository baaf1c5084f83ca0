"""Small matplotlib helpers shared by figures.py and tables.py (Agg backend, colour-blind-safe colours)."""

import io
import math
import re
from pathlib import Path

import matplotlib

from runs import atomic_write

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

# Okabe & Ito's colour-blind-safe palette (black last), with a marker per colour as a second cue.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
DPI = 100


def style(i):
    """(colour, marker) of the i-th line."""
    return PALETTE[i % len(PALETTE)], MARKERS[i % len(MARKERS)]


def slug(*parts):
    """A file-name-safe name from parts: ('synth-fine', 'T 4') -> 'synth-fine_T-4'."""
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "all"


def png_path(out, prefix, *parts):
    """out/<prefix>_<parts as a slug>.png"""
    return Path(out) / f"{prefix}_{slug(*parts)}.png"


def panel_grid(n, ncols=3, width=4.4, height=3.3):
    """A figure with n panels in rows of `ncols` (unused slots hidden) -> (fig, list of axes)."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def format_T_axis(ax, temperatures):
    """Log-scale temperature axis, ticked at the temperatures that were run."""
    ts = sorted({float(t) for t in temperatures if t is not None and t > 0})
    ax.set_xscale("log")
    if ts:
        ax.set_xticks(ts)
        ax.set_xticklabels([f"{t:g}" for t in ts])
        ax.minorticks_off()
    ax.set_xlabel("temperature T (log scale)")
    ax.grid(True, alpha=0.3)


def plot_T_curve(ax, cells, label, color, marker="o", **kwargs):
    """Mean top-1 vs T with ± std error bars where a point has more than one seed."""
    if not cells:
        return
    ts = [c["T"] for c in cells]
    means = [c["top1_mean"] for c in cells]
    errs = [c["top1_std"] if (c.get("top1_n") or 0) > 1 else 0.0 for c in cells]
    ax.errorbar(
        ts, means, yerr=errs, label=label, color=color, marker=marker, markersize=5, capsize=3, linewidth=1.5, **kwargs
    )


def plot_reference_line(ax, cell, label, color="0.35"):
    """A horizontal line (with a ± std band) for a result without a fixed T: CTKD's learned T, or the
    student trained on labels alone."""
    mean, std = cell["top1_mean"], cell.get("top1_std") or 0.0
    ax.axhline(mean, color=color, linestyle="--", linewidth=1.5, label=label)
    if (cell.get("top1_n") or 0) > 1 and std > 0:
        ax.axhspan(mean - std, mean + std, color=color, alpha=0.15)


def sequential_colours(n):
    """n colours along viridis (colour-blind safe), e.g. one per temperature."""
    return [plt.cm.viridis(x) for x in np.linspace(0.0, 0.9, n)] if n > 1 else [plt.cm.viridis(0.0)]


def legend(ax, **kwargs):
    """A small legend, only when something was drawn."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, **kwargs)


def suptitle(fig, text):
    """The figure's title, wrapped to the figure's width."""
    fig.suptitle(text, fontsize=10, wrap=True)


def title(ax, text, size=9):
    ax.set_title(text, fontsize=size, wrap=True)


def heatmap(ax, values, row_labels, col_labels, cmap="viridis", colorbar_label="top-1 (%)"):
    """Annotated heatmap of `values` (rows of numbers or None); the best value of each row is in bold
    inside a black box. Returns the image."""
    data = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    colours = matplotlib.colormaps[cmap].with_extremes(bad="#dddddd")  # grey: not run
    image = ax.imshow(np.ma.masked_invalid(data), cmap=colours, aspect="auto")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=8)
    finite = data[np.isfinite(data)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i, row in enumerate(data):
        best = np.nanmax(row) if np.isfinite(row).any() else None
        for j, v in enumerate(row):
            if not np.isfinite(v):
                continue
            is_best = v == best
            ax.text(
                j,
                i,
                f"{v:.1f}",
                ha="center",
                va="center",
                fontsize=7,
                fontweight="bold" if is_best else "normal",
                color="black" if v > middle else "white",
            )
            if is_best:
                ax.add_patch(
                    matplotlib.patches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2)
                )
    ax.figure.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    return image


def save(fig, path):
    """Save (atomically) and close `fig`; returns the path as a string."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, dpi=DPI, format="png")
    plt.close(fig)
    return str(atomic_write(path, buffer.getvalue()))
