"""Sweeps: variants' overrides (a dotted key sets a value, a section given a dict is replaced
whole, an unknown key names the variant), two variants of aha_tiny's smoke run from one shared
base model, a rerun that reads instead of training, a stale folder named by its differing keys,
the no-override variant equal to the experiment run directly, and the comparison figure."""

import copy
import json
import os

import ml_collections
import pandas
import pytest

from r1jax import main, metrics, plots, sweep
from r1jax.cli import load_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {"plain": {}, "accuracy_only": {"rewards": {"arithmetic": 1.0}}}


def smoke_config():
    """aha_tiny's smoke run, shortened as the pipeline test shortens it. The 20-step base earns
    neither reward, so the DAPO overlong penalty makes rewards differ within groups: the updates
    move the params, and the runs compared below differ if anything in them does."""
    config = load_experiment(os.path.join(REPO, "experiments", "aha_tiny.py"), "smoke")
    config.pretrain.update(steps=20, checkpoint_every=20)
    config.eval.update(n_problems=4, max_new_tokens=16)
    config.rl.update(steps=2, checkpoint_every=2, eval_every=2, max_new_tokens=16,
                     prompts_per_step=8,  # over the 8 test devices
                     warmup_steps=0, overlong_cache_len=8)
    return config


def untimed(values: dict) -> dict:
    """``values`` without the timings (seconds and rates), which differ from run to run."""
    return {k: v for k, v in values.items()
            if not k.startswith(("time/", "throughput/")) and not k.endswith("_s")}


def files(folder) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    return workdir, sweep.run(smoke_config(), VARIANTS, str(workdir))


def test_overrides_set_values_replace_sections_and_name_unknown_keys():
    config = ml_collections.ConfigDict({
        "rewards": {"arithmetic": 1.0, "format": 1.0}, "rl": {"lr": 1e-4, "normalize_std": True}})
    variant = sweep.overridden(config, "v", {"rewards": {"arithmetic": 1.0}, "rl.lr": 3e-4,
                                             "rl.normalize_std": False})
    assert variant.rewards.to_dict() == {"arithmetic": 1.0}  # the format term is gone
    assert (variant.rl.lr, variant.rl.normalize_std) == (3e-4, False)
    assert sweep.overridden(config, "v", {"rewards.format": 2.0}).rewards.to_dict() == {
        "arithmetic": 1.0, "format": 2.0}
    assert config.rl.lr == 1e-4 and "format" in config.rewards  # the config is left as it was
    for key in ("rl.lrr", "rll.lr", "rl.lr.x", "rewards.language"):
        with pytest.raises(ValueError, match=f"variant 'v': the config has no key '{key}'"):
            sweep.overridden(config, "v", {key: 1.0})
    with pytest.raises(ValueError, match="variant 'v': 'rl.lr' cannot be set to 'fast'"):
        sweep.overridden(config, "v", {"rl.lr": "fast"})


def test_variants_are_checked_before_anything_runs(tmp_path):
    config = smoke_config()
    with pytest.raises(ValueError, match="variant 'x': the config has no key 'rl.lrr'"):
        sweep.run(config, {"plain": {}, "x": {"rl.lrr": 1.0}}, str(tmp_path))
    with pytest.raises(ValueError, match="variant 'x' overrides pretrain.steps, which only the "
                                         "shared base"):
        sweep.run(config, {"x": {"pretrain.steps": 5}}, str(tmp_path))
    for name in ("a/b", "..", "", "base"):
        with pytest.raises(ValueError, match=f"variant name '{name}' is not a folder name"):
            sweep.run(config, {name: {}}, str(tmp_path))
    unset = copy.deepcopy(config)
    unset.tokenizer = ml_collections.config_dict.placeholder(str)
    with pytest.raises(ValueError, match="variant 'plain': the experiment needs config.tokenizer"):
        sweep.run(unset, {"plain": {}}, str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_two_variants_share_one_pretrained_base(swept):
    workdir, result = swept
    base = workdir / "base" / "base"
    assert sorted(p.name for p in workdir.iterdir()) == ["accuracy_only", "base", "plain"]
    assert (workdir / "base" / "pretrain" / "metrics.jsonl").exists()  # pretrained there, once
    for name in VARIANTS:
        ran = json.loads((workdir / name / "config.json").read_text())
        assert ran["model"]["hf_path"] == str(base) and "pretrain" not in ran
        assert not (workdir / name / "pretrain").exists()
    assert json.loads((workdir / "accuracy_only" / "config.json").read_text())["rewards"] == {
        "arithmetic": 1.0}
    assert result.workdirs == {name: str(workdir / name) for name in VARIANTS}
    frame = result.metrics
    assert list(frame.columns[:2]) == ["variant", "step"]
    assert list(zip(frame["variant"], frame["step"])) == [
        ("plain", 1), ("plain", 2), ("accuracy_only", 1), ("accuracy_only", 2)]
    assert (frame["grad_norm"] > 0).all()  # the updates moved the params
    assert frame.groupby("variant")["reward/format"].count().to_dict() == {
        "accuracy_only": 0, "plain": 2}  # the replaced rewards left the format term out
    evaluations = result.evaluations
    assert list(evaluations.index) == list(VARIANTS) and evaluations.index.name == "variant"
    assert evaluations["eval/k"].tolist() == [4, 4]
    assert {"eval/pass@1", "eval/cons@k", "base/eval/pass@1", "base/eval/cons@k"} <= set(
        evaluations.columns)
    base_evaluations = [untimed(json.loads((workdir / name / sweep.BASE_EVALUATION).read_text()))
                        for name in VARIANTS]
    assert base_evaluations[0] == base_evaluations[1]  # one base, one evaluation set


def test_a_rerun_reads_finished_runs_and_resumes_unfinished_ones(swept, tmp_path):
    workdir, result = swept
    before = files(workdir)
    again = sweep.run(smoke_config(), VARIANTS, str(workdir))
    assert files(workdir) == before  # nothing trained, evaluated or written again
    pandas.testing.assert_frame_equal(again.metrics, result.metrics)
    pandas.testing.assert_frame_equal(again.evaluations, result.evaluations)
    # A run stopped after its last checkpoint, before its final evaluation and export: run again,
    # it resumes at its last step (no step is trained again) and ends as it would have.
    plain = workdir / "plain"
    evaluation = json.loads((plain / "evaluation.json").read_text())
    (plain / "evaluation.json").unlink()
    os.rename(plain / "hf", tmp_path / "hf")
    checkpoints = files(plain / "checkpoints")
    resumed = sweep.run(smoke_config(), VARIANTS, str(workdir))
    assert files(plain / "checkpoints") == checkpoints
    assert (plain / "hf" / "model.safetensors").read_bytes() == (
        tmp_path / "hf" / "model.safetensors").read_bytes()
    assert untimed(json.loads((plain / "evaluation.json").read_text())) == untimed(evaluation)
    pandas.testing.assert_frame_equal(resumed.metrics, result.metrics)


def test_a_folder_of_another_config_is_an_error_naming_the_keys(swept):
    workdir, _ = swept
    before = files(workdir)
    with pytest.raises(ValueError, match=r"sweep: variant 'plain' in .* is a run of another "
                                         r"config: rl.lr \(0.0003 there, 0.001 now\)"):
        sweep.run(smoke_config(), {**VARIANTS, "plain": {"rl.lr": 1e-3}}, str(workdir))
    with pytest.raises(ValueError, match=r"sweep: variant 'accuracy_only' in .* rewards.format "
                                         r"\(absent there, 1.0 now\)"):
        sweep.run(smoke_config(), {"accuracy_only": {}}, str(workdir))
    changed = smoke_config()
    changed.pretrain.steps = 30
    with pytest.raises(ValueError, match=r"sweep: the shared base model in .* "
                                         r"pretrain.steps \(20 there, 30 now\)"):
        sweep.run(changed, VARIANTS, str(workdir))
    assert files(workdir) == before


def test_the_variant_without_overrides_is_the_experiment_run_directly(swept, tmp_path):
    workdir, _ = swept
    assert main.run_job(smoke_config(), str(tmp_path))  # pretrains in its own workdir, then RL
    direct = metrics.read_metrics(tmp_path / "metrics.jsonl")
    swept_steps = metrics.read_metrics(workdir / "plain" / "metrics.jsonl")
    assert [untimed(step) for step in swept_steps] == [untimed(step) for step in direct]
    assert untimed(json.loads((workdir / "plain" / "evaluation.json").read_text())) == untimed(
        json.loads((tmp_path / "evaluation.json").read_text()))


def test_compare_draws_a_line_per_variant_in_each_panel(swept, tmp_path):
    _, result = swept
    keys = ["reward/total", "accuracy", "length/mean", "eval/pass@1"]
    fig = plots.compare(result, keys, tmp_path / "figures" / "compare.png")
    assert [ax.get_title() for ax in fig.axes] == keys
    for ax in fig.axes:
        assert [line.get_label() for line in ax.get_lines()] == list(VARIANTS)
        assert [line.get_color() for line in ax.get_lines()] == ["C0", "C1"]
    assert [len(line.get_xdata()) for line in fig.axes[-1].get_lines()] == [1, 1]  # step 2 only
    assert (tmp_path / "figures" / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(plots.compare(result.metrics, ["accuracy"]).axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="no run logged 'reflect/rat'"):
        plots.compare(result, ["accuracy", "reflect/rat"])
