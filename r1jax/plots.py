"""Training curves as small PNGs and the base-vs-final results table of an R1-Zero run, and
several runs' curves on shared axes (`compare`, for sweeps: r1jax/sweep.py).

Inputs are the records of metrics.jsonl (r1jax.metrics) and evaluation results as
r1jax.evaluate reports them ({"pass@1", "cons@k", "k", ...}). Figures are drawn on a bare
matplotlib Figure with the Agg canvas, never through pyplot, so plotting changes no global
backend or state of the caller (a notebook, a training process).
"""

import math
import os

import numpy as np
from etils import epath
from matplotlib.figure import Figure

from r1jax import metrics as metrics_lib

FIGSIZE, DPI = (6, 4), 100  # 600x400 px; each PNG is a few tens of KB
EDGE_FRAC = 0.1  # "first / last 10% of RL steps" in the results table (issue 7)


def _records(metrics):
    if isinstance(metrics, (str, os.PathLike, epath.Path)):
        return metrics_lib.read_metrics(metrics)
    return list(metrics)


def _series(records, key):
    """(steps, values) of the records holding `key`, sorted by step; NaN values stay (gaps)."""
    pairs = sorted((r["step"], float(r[key])) for r in records if key in r)
    steps, values = zip(*pairs) if pairs else ((), ())
    return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def _figure(title, ylabel):
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("RL step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _plot_lines(ax, records, lines, **kwargs):
    """Plots (key, label, color) series that are present; returns how many were."""
    drawn = 0
    for key, label, color in lines:
        steps, values = _series(records, key)
        if len(steps):
            ax.plot(steps, values, label=label, color=color, lw=1.3, **kwargs)
            drawn += 1
    return drawn


def _write_png(fig, path) -> None:
    """``fig`` as a PNG at ``path``, a local file or an object in cloud storage."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        fig.savefig(f, dpi=DPI, format="png")


def _save(fig, ax, out_dir, name, paths):
    ax.legend(fontsize=8)
    _write_png(fig, epath.Path(out_dir) / name)
    paths.append(str(epath.Path(out_dir) / name))


def plot_run(metrics, eval_metrics, out_dir):
    """Writes the run's curves to out_dir and returns the PNG paths written.

    metrics: metrics.jsonl records (list of dicts) or the file's path. eval_metrics: a list of
    {"step", "pass@1", "cons@k", "k"} dicts (may be empty). Figures:
        eval.png        test pass@1 and cons@k vs step
        length.png      mean response length with a mean ± std band, and the mean length of
                        correct and of incorrect responses
        reflection.png  reflective words and "wait" per response
        reward.png      mean reward, accuracy and format rate
    A figure none of whose keys occur is skipped.
    """
    records = _records(metrics)
    eval_metrics = list(eval_metrics or ())
    epath.Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = []

    k = next((e["k"] for e in eval_metrics if "k" in e), "k")
    fig, ax = _figure("Test accuracy during training", "accuracy")
    if _plot_lines(ax, eval_metrics, [("pass@1", "pass@1", "C0"), ("cons@k", f"cons@{k}", "C1")],
                   marker="o", ms=3):
        ax.set_ylim(-0.02, 1.02)
        _save(fig, ax, out_dir, "eval.png", paths)

    fig, ax = _figure("Response length (training rollouts)", "tokens")
    rows = sorted((r for r in records if "length/mean" in r), key=lambda r: r["step"])
    if rows:
        steps = np.array([r["step"] for r in rows], np.float64)
        mean = np.array([r["length/mean"] for r in rows], np.float64)
        std = np.array([r.get("length/std", math.nan) for r in rows], np.float64)
        ax.fill_between(steps, mean - std, mean + std, color="C0", alpha=0.2, lw=0,
                        label="mean ± std")
        ax.plot(steps, mean, color="C0", lw=1.5, label="mean")
        _plot_lines(ax, records, [("length/correct", "correct", "C2"),
                                  ("length/incorrect", "incorrect", "C3")])
        ax.set_ylim(bottom=0)
        _save(fig, ax, out_dir, "length.png", paths)

    fig, ax = _figure("Reflective words per response", "occurrences per response")
    if _plot_lines(ax, records, [("reflect/rate", "the ten reflective words", "C4"),
                                 ("reflect/wait_rate", '"wait"', "C5")]):
        _save(fig, ax, out_dir, "reflection.png", paths)

    fig, ax = _figure("Reward (training rollouts)", "mean over responses")
    if _plot_lines(ax, records, [("reward/total", "reward", "C0"), ("accuracy", "accuracy", "C2"),
                                 ("format_rate", "format rate", "C7")]):
        _save(fig, ax, out_dir, "reward.png", paths)
    return paths


def _edge_means(records, key):
    """Mean of `key` over the first and over the last 10% (at least one) of the steps logging it."""
    _, values = _series(records, key)
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    n = max(1, math.ceil(EDGE_FRAC * len(values)))
    return float(values[:n].mean()), float(values[-n:].mean())


def _ratio(before, after):
    if before == 0:
        return math.inf if after > 0 else math.nan
    return after / before


def run_summary(metrics, evals):
    """The issue-7 acceptance numbers of a run, keyed by metric.

    evals: {"base": <evaluation of the base model>, "final": <evaluation after RL>}. Each entry
    is {"name", "before", "after", "ratio", "target", "met"} (plus "gain_points" for test
    accuracy); "before"/"after" are base/final for test metrics and the means over the first/last
    10% of RL steps for training metrics. "met" is None where issue 7 sets no target.
    """
    missing = [s for s in ("base", "final") if s not in evals]
    if missing:
        raise ValueError(f"run_summary: evals needs 'base' and 'final' evaluations; "
                         f"missing {missing}.")
    records = _records(metrics)
    base, final = evals["base"], evals["final"]
    k = final.get("k", "k")
    rows = {}
    for key, name in (("pass@1", f"test pass@1 (mean over k={k} samples)"),
                      ("cons@k", f"test cons@{k} (majority vote)")):
        before, after = float(base[key]), float(final[key])
        rows[key] = {"name": name, "before": before, "after": after,
                     "ratio": _ratio(before, after), "gain_points": 100 * (after - before)}
    rows["pass@1"]["target"] = ">= 2x and >= +30 points"
    rows["pass@1"]["met"] = bool(rows["pass@1"]["ratio"] >= 2
                                 and rows["pass@1"]["gain_points"] >= 30)
    for key, name, threshold in (
            ("length/mean", "mean response length, tokens (train)", 2),
            ("reflect/rate", "reflective words per response (train)", 3),
            ("reflect/wait_rate", '"wait" per response (train)', None)):
        before, after = _edge_means(records, key)
        ratio = _ratio(before, after)
        rows[key] = {"name": name, "before": before, "after": after, "ratio": ratio}
        if threshold is not None:
            rows[key]["target"] = f">= {threshold}x"
            rows[key]["met"] = bool(ratio >= threshold)
    for row in rows.values():
        row.setdefault("target", None)
        row.setdefault("met", None)
    return rows


def _fmt(x, digits, sign="", suffix=""):
    if math.isnan(x):
        return "n/a"
    return "inf" if math.isinf(x) else f"{x:{sign}.{digits}f}{suffix}"


def results_table(metrics, evals):
    """run_summary as a markdown table: base model vs final for the test metrics, first vs last
    10% of RL steps for the training metrics, with ratios and the issue-7 targets."""
    rows = run_summary(metrics, evals)
    header = ("| metric | before (base model / first 10% of steps) | "
              "after (final model / last 10% of steps) | ratio after/before | change | target | "
              "met |")
    lines = [header, "|---|---:|---:|---:|---:|---|---|"]
    for key, row in rows.items():
        digits = 1 if key == "length/mean" else 3
        change = (_fmt(row["gain_points"], 1, "+", " points") if "gain_points" in row
                  else _fmt(row["after"] - row["before"], digits, "+"))
        met = {None: "", True: "yes", False: "no"}[row["met"]]
        lines.append(f"| {row['name']} | {_fmt(row['before'], digits)} | "
                     f"{_fmt(row['after'], digits)} | {_fmt(row['ratio'], 2, suffix='x')} | "
                     f"{change} | "
                     f"{row['target'] or ''} | {met} |")
    return "\n".join(lines) + "\n"


def write_report(workdir, base_eval: dict, final_eval: dict) -> None:
    """A finished run's plots and markdown results table (comparing the base and final
    evaluations, when both are given), written into its workdir and printed."""
    history = metrics_lib.read_metrics(epath.Path(workdir) / "metrics.jsonl")
    evals = [{"step": h["step"], **{k.removeprefix("eval/"): v for k, v in h.items()
                                    if k.startswith("eval/")}}
             for h in history if "eval/pass@1" in h]
    strip = {name: {k.removeprefix("eval/"): v for k, v in e.items()}
             for name, e in (("base", base_eval), ("final", final_eval)) if e}
    if "base" in strip:
        evals.insert(0, {"step": 0, **strip["base"]})
    paths = plot_run(history, evals, workdir)
    print("plots: " + ", ".join(paths))
    if len(strip) == 2:
        table = results_table(history, strip)
        (epath.Path(workdir) / "results.md").write_text(table + "\n")
        print(table)


def compare(runs, keys, out_path=None) -> Figure:
    """Several runs on shared axes: a panel per metric key, a line per run (the same colour in
    every panel), each key's values by step, unsmoothed as `plot_run` draws them (steps without a
    value, such as eval/ keys between evaluations, are skipped). ``runs``: an
    `r1jax.sweep.SweepResult` or its ``metrics`` frame (columns variant, step and the metrics).
    Returns the figure (a notebook shows it) and writes it as a PNG to ``out_path`` when given.
    A key no run logged is an error naming it."""
    frame = getattr(runs, "metrics", runs)
    missing = [key for key in keys if key not in frame or frame[key].isna().all()]
    if missing:
        raise ValueError(f"compare: no run logged {', '.join(map(repr, missing))}")
    columns = min(len(keys), 2)
    rows = math.ceil(len(keys) / columns)
    fig = Figure(figsize=(FIGSIZE[0] * columns, FIGSIZE[1] * rows), layout="constrained")
    names = list(dict.fromkeys(frame["variant"]))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, columns, i + 1)
        ax.set_title(key)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
        for j, name in enumerate(names):
            logged = frame[frame["variant"] == name][["step", key]].dropna().sort_values("step")
            if len(logged):
                ax.plot(logged["step"], logged[key], label=name, color=f"C{j}", lw=1.3)
        ax.legend(fontsize=8)
    if out_path is not None:
        _write_png(fig, out_path)
    return fig


def reflective_words(metrics, out_path=None) -> Figure:
    """Each reflective word's occurrences per response over training (the R1 paper's figure of
    word frequencies over steps; "reflect/word/<w>" of `metrics.rollout_stats`), one line per
    word, from a run's metrics.jsonl records or its path; the PNG at ``out_path`` when given."""
    records = _records(metrics)
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.set(title="Reflective words per response, by word", xlabel="RL step",
           ylabel="occurrences per response")
    ax.grid(alpha=0.3)
    for i, word in enumerate(metrics_lib.REFLECTIVE_WORDS):
        steps, values = _series(records, f"reflect/word/{word}")
        if len(steps) and np.nanmax(values) > 0:  # words the run never wrote stay off
            ax.plot(steps, values, label=word, color=f"C{i}", lw=1.3)
    ax.legend(fontsize=8, ncol=2)
    if out_path is not None:
        _write_png(fig, out_path)
    return fig
