"""``run.py variance``: the gradient noise of every sampler at one network state.

At initialisation (or at ``--checkpoint``'s trained state), for each sampler (uniform,
stratified, stratified with Neyman allocation, Sobol, importance): the trace of the covariance
of the volume term's gradient estimate over ``--repeats`` independent batches of ``--batch``
points, its ratio to uniform's, and the noise scale B; then the between/within split
``sigma_b^2, sigma_w^2`` of two-stage designs (M strata times A points) and the design that
minimises the variance for the batch's point budget (see :mod:`vpinn.measurement.variance`).

Writes ``variance.csv`` (one row per sampler: its name, trace, ratio to uniform, B),
``variance.md``, ``variance.png`` (bars) and ``split.json`` (the two-stage designs use 4x
``--repeats`` batches: their variance is heavier-tailed) under ``results/<name>/variance/``
(``--out`` to choose; a trained state's files get the suffix ``_trained``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from vpinn.assemble import DTYPES, assemble
from vpinn.commands.arguments import add_common_arguments, default_problem, device_name, positive_count
from vpinn.export.plots import plot_variance
from vpinn.export.tables import write_csv, write_json, write_markdown
from vpinn.measurement.variance import between_within, compare_samplers
from vpinn.problem import load_problem
from vpinn.train.checkpoint import load_checkpoint

DESCRIPTION = __doc__
COLUMNS = [("sampler", "sampler", ""), ("batch", "batch", ","), ("trace", "tr Cov(g)", ".3e"),
           ("ratio_to_uniform", "ratio to uniform", ".3f"), ("noise_scale", "noise scale B", ".3g")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_arguments(parser)
    parser.add_argument("--checkpoint", help="measure at this checkpoint's network (default: at initialisation)")
    parser.add_argument("--batch", type=positive_count, default=4096, help="points per batch (default 4096)")
    parser.add_argument("--repeats", type=positive_count, default=64, help="independent batches per sampler (default 64)")
    parser.add_argument("--strata", type=positive_count, help="strata of the stratified, importance and two-stage designs "
                        "(default: train.strata, else a quarter of the batch)")


def _scale(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "n/a (|E g|^2 below the noise of the mean)"


def run(args: argparse.Namespace) -> int:
    problem = args.problem or default_problem()
    spec = load_problem(problem, dict(args.settings))
    device = torch.device(device_name(args.device))
    assembly = assemble(spec, device)
    dtype = assembly.dtype
    suffix = ""
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)
        dtype = DTYPES[state["dtype"]]
        assembly.field.to(dtype=dtype)
        assembly.field.load_state_dict(state["model"])
        suffix = "_trained"
    term, parameters = assembly.terms[0], list(assembly.field.parameters())
    strata = args.strata or spec.train.strata or max(1, args.batch // 4)
    state_text = f"at {args.checkpoint}" if args.checkpoint else "at initialisation"
    print(f"{spec.name}: gradient noise of {term.rule.size:,}-point rule batches of {args.batch:,} points, "
          f"{args.repeats} batches per sampler, {state_text}, {device}")
    rows = compare_samplers(term, assembly.trial, parameters, dtype, device, batch=args.batch, repeats=args.repeats,
                            strata=strata, seed=spec.train.seed, refresh_every=spec.train.refresh_every)
    split = between_within(term, assembly.trial, parameters, dtype, device, batch=args.batch, repeats=4 * args.repeats,
                           strata=strata, seed=spec.train.seed)
    out = Path(args.out) if args.out else spec.output_path() / "variance"
    for row in rows:
        row["state"] = "trained" if args.checkpoint else "initial"
    write_csv(out / f"variance{suffix}.csv", rows)
    write_markdown(out / f"variance{suffix}.md", rows, COLUMNS)
    write_json(out / f"split{suffix}.json", {"strata": strata, "batch": args.batch, **split})
    plot_variance(out / f"variance{suffix}.png", rows, f"{spec.name}: gradient noise per sampler, b = {args.batch:,}, {state_text}")
    width = max(len(r["sampler"]) for r in rows)
    for row in rows:
        print(f"  {row['sampler']:<{width}}  b = {row['batch']:>7,}  tr Cov = {row['trace']:.3e}  "
              f"ratio to uniform {row['ratio_to_uniform']:.3f}  B = {_scale(row['noise_scale'])}")
    check, best = split["check"], split["best"]
    print(f"  two-stage split over {strata:,} strata: sigma_b^2 = {split['sigma_b2']:.3e}, sigma_w^2 = {split['sigma_w2']:.3e} "
          f"({100 * split['between_share']:.0f}% between strata); least variance for b = {args.batch:,}: "
          f"M = {best['M']:,} strata x A = {best['A']}; check M = {check['M']:,}, A = {check['A']}: "
          f"measured {check['measured_trace']:.3e}, predicted {check['predicted_trace']:.3e}")
    print(f"written to {out}/")
    return 0
