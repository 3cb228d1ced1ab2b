"""Training and solution plots (matplotlib, object interface: no global pyplot state).

* ``loss.png``: the training loss (linear: minibatch estimates scatter on both sides of the
  optimum), the loss functional evaluated exactly on the evaluation rule minus ``E(u*)`` when
  the exact solution is known (log scale), and the gradient norm (log scale).
* ``error.png``: relative L2, H1-seminorm and energy-norm errors against the step (log scale).
* ``solution.png``: the computed and exact solution and the error on the grid's middle layer
  (for a box the middle z-slice), drawn in that layer's own plane.
* ``profile.png``: fields along a domain's profile line (e.g. a radius), computed against exact.
Each is written atomically; in the history plots a vertical line marks the switch from Adam to
the next phase (e.g. from Adam to ENGD).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vpinn.atomic import atomic_path


def _save(figure: Figure, path: str | Path) -> None:
    FigureCanvasAgg(figure)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120, bbox_inches="tight")


def _column(rows: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(r["step"], r[key]) for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    if not pairs:
        return np.empty(0), np.empty(0)
    steps, values = zip(*pairs)
    return np.asarray(steps, dtype=float), np.asarray(values, dtype=float)


def _mark_phases(axes, rows: Sequence[dict]) -> None:
    """A dotted vertical line where each phase after the first begins."""
    for before, row in zip(rows, rows[1:]):
        if row["phase"] != before["phase"]:
            axes.axvline(before["step"], color="0.6", linestyle=":", linewidth=1, label=f"{row['phase']} starts")


def plot_loss(path: str | Path, rows: Sequence[dict], exact_energy: float | None) -> None:
    """``loss.png`` from the history rows: three panels, see the module docstring."""
    figure = Figure(figsize=(14, 4))
    raw, gap, gradient = figure.subplots(1, 3)
    steps, loss = _column(rows, "loss")
    raw.plot(steps, loss, linewidth=0.8, label="training loss (minibatch estimate; exact sum for L-BFGS)")
    steps_e, energy = _column(rows, "energy")
    if exact_energy is not None:
        raw.axhline(exact_energy, color="k", linestyle="--", linewidth=1, label=f"E(u*) = {exact_energy:.8g}")
        above = energy - exact_energy
        keep = above > 0  # non-positive values are quadrature round-off at convergence
        gap.semilogy(steps_e[keep], above[keep], marker="o", markersize=3)
        gap.set_ylabel("E(u) − E(u*)")
        gap.set_title("energy above the exact solution's\n(evaluation rule; = ½‖u − u*‖²_E)")
    else:
        gap.plot(steps_e, energy, marker="o", markersize=3)
        gap.set_ylabel("E(u)")
        gap.set_title("loss functional on the evaluation rule")
    low, high = np.percentile(loss, [2, 100]) if loss.size else (0, 1)
    if high > low:  # clip the first steps' large losses; a single value keeps matplotlib's limits
        raw.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    raw.set_ylabel("loss")
    raw.set_title("training loss")
    raw.legend(fontsize=7)
    steps_g, grad = _column(rows, "grad_norm")
    gradient.semilogy(steps_g, grad, linewidth=0.8)
    gradient.set_ylabel("gradient norm")
    gradient.set_title("gradient norm (before clipping)")
    for axes in (raw, gap, gradient):
        axes.set_xlabel("step")
        axes.grid(True, which="both", alpha=0.3)
        _mark_phases(axes, rows)
    _save(figure, path)


def plot_errors(path: str | Path, rows: Sequence[dict]) -> None:
    """``error.png``: the relative errors recorded in the history."""
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for key, label in (("rel_l2", "relative L2"), ("rel_h1", "relative H1 seminorm"), ("rel_energy", "relative energy norm")):
        steps, values = _column(rows, key)
        if values.size:
            axes.semilogy(steps, values, marker="o", markersize=3, label=label)
    _mark_phases(axes, rows)
    axes.set_xlabel("step")
    axes.set_ylabel("relative error")
    axes.grid(True, which="both", alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    else:  # no evaluation yet (e.g. steps = 0)
        axes.text(0.5, 0.5, "no errors recorded", transform=axes.transAxes, ha="center", va="center")
    _save(figure, path)


def _axis_label(direction: np.ndarray) -> str:
    """``"x"`` for a coordinate axis, else e.g. ``"0.71x + 0.71y"``."""
    terms = [(c, name) for c, name in zip(direction, "xyz") if abs(c) > 1e-9]
    if len(terms) == 1 and abs(abs(terms[0][0]) - 1) < 1e-9:
        return ("-" if terms[0][0] < 0 else "") + terms[0][1]
    return " + ".join(f"{c:.2g}{name}" for c, name in terms).replace("+ -", "- ")


def plane_coordinates(layer: np.ndarray) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Coordinates of points (..., 3) of a (nearly) plane layer in that plane, and axis labels.

    The plane's normal is the points' direction of least spread; its axes are the two
    coordinate axes that lie most nearly in it, projected onto it and made orthonormal.  A z-slice
    of a box is drawn in its x and y; a meridional plane of a sphere in its radius and z.
    """
    flat = layer.reshape(-1, 3)
    normal = np.linalg.svd(flat - flat.mean(0), full_matrices=False)[2][-1]
    projected = np.eye(3) - np.outer(normal, normal)  # row k: axis k projected onto the plane
    first, second = sorted(np.argsort(-np.linalg.norm(projected, axis=1), kind="stable")[:2])
    e1 = projected[first] / np.linalg.norm(projected[first])
    e2 = projected[second] - (projected[second] @ e1) * e1
    e2 /= np.linalg.norm(e2)
    shape = layer.shape[:-1]
    return (flat @ e1).reshape(shape), (flat @ e2).reshape(shape), _axis_label(e1), _axis_label(e2)


def plot_slice(path: str | Path, points: np.ndarray, fields: dict[str, np.ndarray], shape: tuple[int, int, int],
               primary: str = "u") -> None:
    """``solution.png``: the computed field, the exact one and the error on the grid's middle
    third-axis layer (for a box, the middle z-slice), drawn in the layer's own plane
    (:func:`plane_coordinates`); vector fields as their magnitude.  Panels sit side by side, or
    one above the other for a layer more than twice as wide as it is tall (a slender beam)."""
    names = [primary] + [n for n in (f"{primary}_exact", "error") if n in fields]
    nx, ny, nz = shape
    horizontal, vertical, horizontal_label, vertical_label = plane_coordinates(points.reshape(nz, ny, nx, 3)[nz // 2])
    aspect = np.ptp(horizontal) / max(np.ptp(vertical), 1e-300)
    if aspect > 2:
        figure = Figure(figsize=(9, 0.9 + len(names) * min(9 / aspect + 0.9, 3.8)), layout="constrained")
        panels = np.atleast_1d(figure.subplots(len(names), 1))
    else:
        figure = Figure(figsize=(4.6 * len(names), 3.8), layout="constrained")
        panels = np.atleast_1d(figure.subplots(1, len(names)))
    for axes, name in zip(panels, names):
        values = fields[name]
        values = np.linalg.norm(values, axis=1) if values.ndim == 2 else values
        plane = values.reshape(nz, ny, nx)[nz // 2]
        image = axes.pcolormesh(horizontal, vertical, plane, shading="gouraud",
                                cmap="RdBu_r" if name == "error" and fields[name].ndim == 1 else "viridis")
        figure.colorbar(image, ax=axes, shrink=0.85)
        axes.set_aspect("equal")
        axes.set_title(f"{name}{' magnitude' if fields[name].ndim == 2 else ''}\nmiddle layer", fontsize=9)
        axes.set_xlabel(horizontal_label)
        axes.set_ylabel(vertical_label)
    _save(figure, path)


def plot_profile(path: str | Path, label: str, coordinate: np.ndarray,
                 values: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
    """``profile.png``: one panel per field along a profile line, computed (line) against exact
    (dashed) where known, with the largest error relative to the field's largest exact value."""
    figure = Figure(figsize=(4.4 * len(values), 3.6))
    panels = np.atleast_1d(figure.subplots(1, len(values)))
    for axes, (name, (computed, exact)) in zip(panels, values.items()):
        axes.plot(coordinate, computed, linewidth=1.5, label="computed")
        title = name
        if exact is not None:
            axes.plot(coordinate, exact, "k--", linewidth=1, label="exact")
            scale = np.abs(exact).max()
            if scale > 0:
                title += f"\nmax error / max |exact| = {np.abs(computed - exact).max() / scale:.2e}"
        axes.set_title(title, fontsize=9)
        axes.set_xlabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    _save(figure, path)


def plot_error_against_time(path: str | Path, curves: dict[str, list[tuple[float, float]]], title: str) -> None:
    """``compare.png``: the relative L2 error against training seconds, one line per setting."""
    figure = Figure(figsize=(6.5, 4.2))
    axes = figure.subplots()
    for name, points in curves.items():
        if points:
            seconds, errors = zip(*points)
            axes.semilogy(seconds, errors, marker="o", markersize=2.5, linewidth=1.2, label=name)
    axes.set_xlabel("training time (s)")
    axes.set_ylabel("relative L2 error")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    _save(figure, path)


def plot_memory(path: str | Path, rows: Sequence[dict]) -> None:
    """``memory.png``: memory above baseline against b (one line per N) and against N (one line
    per b), log-log; the full-gradient rows are marked at their chunk size."""
    figure = Figure(figsize=(11, 4.2))
    by_b, by_n = figure.subplots(1, 2)
    steps = [r for r in rows if r["kind"] == "minibatch step"]
    for allocator, style in (("tuned", "-"), ("default", "--")):
        chosen = [r for r in steps if r["allocator"] == allocator]
        for points in sorted({r["points"] for r in chosen}):
            line = sorted((r for r in chosen if r["points"] == points), key=lambda r: r["batch"])
            by_b.loglog([r["batch"] for r in line], [r["above_baseline_MiB"] for r in line], style, marker="o",
                        label=f"N = {points:.1e} ({allocator})")
        for batch in sorted({r["batch"] for r in chosen}):
            line = sorted((r for r in chosen if r["batch"] == batch), key=lambda r: r["points"])
            by_n.loglog([r["points"] for r in line], [r["above_baseline_MiB"] for r in line], style, marker="o",
                        label=f"b = {batch:.0e} ({allocator})")
    for r in rows:
        if r["kind"] == "full gradient":
            by_b.loglog([r["batch"]], [r["above_baseline_MiB"]], "k*", markersize=12,
                        label=f"exact gradient, N = {r['points']:.1e}, chunks of {r['batch']:,} ({r['allocator']})")
    by_b.set_xlabel("batch size b (points per step)")
    by_n.set_xlabel("quadrature points N")
    for axes, title in ((by_b, "grows with the batch"), (by_n, "flat in the rule size")):
        axes.set_ylabel("peak memory above baseline (MiB)")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    _save(figure, path)


def plot_variance(path: str | Path, rows: Sequence[dict], title: str) -> None:
    """``variance.png``: each sampler's gradient-covariance trace relative to uniform's (log scale)."""
    figure = Figure(figsize=(6.5, 3.8))
    axes = figure.subplots()
    names = [r["sampler"] for r in rows]
    ratios = [r["ratio_to_uniform"] for r in rows]
    bars = axes.bar(names, ratios, color=["0.6" if n == "uniform" else "C0" for n in names])
    axes.set_yscale("log")
    axes.axhline(1.0, color="k", linewidth=0.8)
    for bar, ratio in zip(bars, ratios):
        axes.annotate(f"{ratio:.3g}", (bar.get_x() + bar.get_width() / 2, ratio), ha="center", va="bottom", fontsize=8)
    axes.set_ylabel("tr Cov(gradient) / uniform's")
    axes.set_title(title, fontsize=10)
    axes.grid(True, axis="y", which="both", alpha=0.3)
    _save(figure, path)


def plot_noise_against_batch(path: str | Path, rows: Sequence[dict], slope: float | None) -> None:
    """``noise.png``: the gradient-covariance trace at initialisation against the batch (log-log),
    one line per sampler, with the 1/b reference."""
    figure = Figure(figsize=(6.0, 4.0))
    axes = figure.subplots()
    fixed = [r for r in rows if isinstance(r["batch"], int) and r.get("initial_trace")]
    for sampling in dict.fromkeys(r["sampling"] for r in fixed):
        line = sorted((r for r in fixed if r["sampling"] == sampling), key=lambda r: r["batch"])
        axes.loglog([r["batch"] for r in line], [r["initial_trace"] for r in line], marker="o", label=sampling)
    if fixed:
        first = min(fixed, key=lambda r: r["batch"])
        b = np.array(sorted({r["batch"] for r in fixed}), dtype=float)
        axes.loglog(b, first["initial_trace"] * first["batch"] / b, "k--", linewidth=0.8, label="1/b")
    axes.set_xlabel("batch size b")
    axes.set_ylabel("tr Cov(gradient) at initialisation")
    axes.set_title("gradient noise against batch size" + (f" (slope {slope:.2f})" if slope is not None else ""), fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    if fixed:
        axes.legend(fontsize=8)
    _save(figure, path)
