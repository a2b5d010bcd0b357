"""Tests for r1jax.plots: PNG curves from metrics records or metrics.jsonl, and the numbers of
the results table on a synthetic run."""

import math
import os

import numpy as np
import pytest

from r1jax import metrics, plots
from r1jax.metrics import REFLECTIVE_WORDS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STEPS = 50  # first/last 10% = 5 steps each


def synthetic_run():
    recs = []
    for s in range(STEPS):
        r = {"step": s, "reward/total": 0.1 + 0.015 * s, "accuracy": 0.1 + 0.015 * s,
             "format_rate": 0.9, "length/mean": 100.0 + 10 * s, "length/std": 20.0,
             "length/max": 200.0 + 10 * s, "length/incorrect": 90.0 + 8 * s,
             "reflect/rate": 0.2 + 0.05 * s, "reflect/wait_rate": 0.01 * s}
        if s % 7:  # some steps have no correct response: the key is absent
            r["length/correct"] = 120.0 + 12 * s
        recs.append(r)
    return recs


EVALS = [{"step": 0, "pass@1": 0.1, "cons@k": 0.2, "k": 4},
         {"step": 25, "pass@1": 0.3, "cons@k": 0.4, "k": 4},
         {"step": 50, "pass@1": 0.5, "cons@k": 0.6, "k": 4}]


def _check_pngs(paths, names):
    assert sorted(os.path.basename(p) for p in paths) == sorted(names)
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == PNG_MAGIC
        assert 1_000 < os.path.getsize(p) < 100_000


def test_plot_run_writes_small_pngs(tmp_path):
    paths = plots.plot_run(synthetic_run(), EVALS, tmp_path / "plots")
    _check_pngs(paths, ["eval.png", "length.png", "reflection.png", "reward.png"])


def test_plot_run_from_metrics_file_with_nulls_and_no_eval(tmp_path):
    with metrics.MetricsWriter(tmp_path) as w:
        for r in synthetic_run():
            step = r.pop("step")
            w.write(step, {**r, "length/std": math.nan if step == 3 else r["length/std"]})
    paths = plots.plot_run(tmp_path / "metrics.jsonl", [], tmp_path / "plots")
    _check_pngs(paths, ["length.png", "reflection.png", "reward.png"])


def test_run_summary_numbers():
    rows = plots.run_summary(synthetic_run(), {"base": EVALS[0], "final": EVALS[-1]})
    first, last = np.arange(5), np.arange(45, 50)
    length = rows["length/mean"]
    assert length["before"] == pytest.approx(np.mean(100 + 10 * first))  # 120
    assert length["after"] == pytest.approx(np.mean(100 + 10 * last))  # 570
    assert length["ratio"] == pytest.approx(570 / 120) and length["met"] is True
    reflect = rows["reflect/rate"]
    assert reflect["before"] == pytest.approx(0.3) and reflect["after"] == pytest.approx(2.55)
    assert reflect["ratio"] == pytest.approx(8.5) and reflect["met"] is True
    wait = rows["reflect/wait_rate"]
    assert wait["before"] == pytest.approx(0.02) and wait["met"] is None
    p1 = rows["pass@1"]
    assert (p1["before"], p1["after"]) == (0.1, 0.5)
    assert p1["ratio"] == pytest.approx(5) and p1["gain_points"] == pytest.approx(40)
    assert p1["met"] is True
    assert rows["cons@k"]["ratio"] == pytest.approx(3) and rows["cons@k"]["met"] is None


def test_pass_at_1_target_needs_both_ratio_and_points():
    run = synthetic_run()
    doubled_small = plots.run_summary(run, {"base": {"pass@1": 0.1, "cons@k": 0},
                                            "final": {"pass@1": 0.3, "cons@k": 0}})
    assert doubled_small["pass@1"]["met"] is False  # 3x but only +20 points
    assert doubled_small["cons@k"]["ratio"] != doubled_small["cons@k"]["ratio"]  # 0/0 -> NaN
    from_zero = plots.run_summary(run, {"base": {"pass@1": 0.0, "cons@k": 0.0},
                                        "final": {"pass@1": 0.4, "cons@k": 0.5}})
    assert from_zero["pass@1"]["ratio"] == math.inf and from_zero["pass@1"]["met"] is True


def test_results_table_text():
    table = plots.results_table(synthetic_run(), {"base": EVALS[0], "final": EVALS[-1]})
    lines = table.strip().splitlines()
    assert len(lines) == 2 + 5
    assert all(line.count("|") == 8 for line in lines)
    row = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
           for line in lines[2:]}
    assert row["test pass@1 (mean over k=4 samples)"] == [
        "0.100", "0.500", "5.00x", "+40.0 points", ">= 2x and >= +30 points", "yes"]
    assert row["test cons@4 (majority vote)"][:4] == ["0.200", "0.600", "3.00x", "+40.0 points"]
    assert row["mean response length, tokens (train)"] == [
        "120.0", "570.0", "4.75x", "+450.0", ">= 2x", "yes"]
    assert row["reflective words per response (train)"] == [
        "0.300", "2.550", "8.50x", "+2.250", ">= 3x", "yes"]
    assert row['"wait" per response (train)'][-2:] == ["", ""]


def test_run_summary_needs_base_and_final():
    with pytest.raises(ValueError, match="'base'"):
        plots.run_summary(synthetic_run(), {"final": EVALS[-1]})


def test_reflective_words_draws_each_word_the_run_wrote(tmp_path):
    records = [{"step": s, **{f"reflect/word/{w}": 0.0 for w in REFLECTIVE_WORDS},
                "reflect/word/wait": 0.1 * s, "reflect/word/check": 0.5} for s in range(1, 6)]
    fig = plots.reflective_words(records, tmp_path / "words.png")
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    assert sorted(lines) == ["check", "wait"]  # words never written are left off
    np.testing.assert_allclose(lines["wait"].get_ydata(), [0.1, 0.2, 0.3, 0.4, 0.5])
    np.testing.assert_array_equal(lines["check"].get_xdata(), [1, 2, 3, 4, 5])
    assert (tmp_path / "words.png").read_bytes()[:8] == PNG_MAGIC
