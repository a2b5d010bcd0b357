"""The pipeline job: stage references resolve to earlier stages' outputs, a reference to a later
or unknown stage is an error before anything runs, a missing output names the stage that makes
it, done stages are skipped, and the toy pipeline runs end to end in smoke mode."""

import json
import os

import ml_collections
import pytest

from r1jax import metrics, stages

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stage(job, **fields):
    return ml_collections.ConfigDict({"job": job, "export": "hf", **fields})


def three_stages():
    return ml_collections.ConfigDict({
        "base": stage("pretrain"),
        "data": stage("cold_start_data"),
        "tuned": stage("sft", model={"hf_path": "stage:base"},
                       tokenizer="stage:base/tokenizer.model",
                       sft={"data": ("stage:data", "general.jsonl")})})


def pipeline(stage_configs, order=("base", "data", "tuned")):
    return ml_collections.ConfigDict({"stages": stage_configs, "order": order})


def test_references_resolve_to_the_outputs_of_earlier_stages(tmp_path):
    config = three_stages()
    paths = {name: (stages.output_path(tmp_path, name, s), tmp_path / name)
             for name, s in config.items()}
    assert paths["base"][0] == tmp_path / "base" / "base"
    assert paths["data"][0] == tmp_path / "data" / "data.jsonl"
    assert paths["tuned"][0] == tmp_path / "tuned" / "hf"
    tuned = stages.resolved(config.tuned, paths)
    assert tuned.model.hf_path == str(tmp_path / "base" / "base")
    assert tuned.tokenizer == str(tmp_path / "base" / "tokenizer.model")
    assert tuned.sft.data == (str(tmp_path / "data" / "data.jsonl"), "general.jsonl")
    assert config.tuned.model.hf_path == "stage:base"  # the pipeline's own config is unchanged


@pytest.mark.parametrize("target, where", [("tuned", "a later stage"), ("bsae", "no stage")])
def test_a_reference_to_a_later_or_unknown_stage_is_an_error_before_anything_runs(
        tmp_path, target, where):
    config = three_stages()
    config.data.model = {"hf_path": f"stage:{target}"}
    with pytest.raises(ValueError, match=f"stage 'data' reads 'stage:{target}', but "
                                         f"'{target}' is {where}"):
        stages.job(pipeline(config), str(tmp_path))
    assert not (tmp_path / "base").exists()


def test_a_missing_input_names_the_stage_that_makes_it_and_done_stages_are_skipped(
        tmp_path, capsys):
    config = three_stages()
    (tmp_path / "base" / "base").mkdir(parents=True)  # base is done, and evaluated
    (tmp_path / "base" / "evaluation.json").write_text('{"eval/pass@1": 0.25}')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data.jsonl").write_text("")  # data is done
    with pytest.raises(FileNotFoundError, match=r"stage 'tuned' reads stage:base/tokenizer.model "
                                                r"\(.*\), which stage 'base' makes"):
        stages.job(pipeline(config), str(tmp_path))
    out = capsys.readouterr().out
    assert "stage 'base' is done" in out and "stage 'data' is done" in out


def test_a_stage_without_an_output_is_named():
    with pytest.raises(ValueError, match="stage 'x': job 'evaluate' has no output"):
        stages.output_path("/w", "x", stage("evaluate"))
    with pytest.raises(ValueError, match="stage 'y' \\(job rl\\) has no export"):
        stages.output_path("/w", "y", stage("rl", export=""))


def test_the_order_lists_every_stage_once():
    with pytest.raises(ValueError, match=r"missing \['tuned'\], unknown \['tunde'\]"):
        stages.ordered(pipeline(three_stages(), ("base", "data", "tunde")))
    with pytest.raises(ValueError, match="each stage of config.stages once"):
        stages.ordered(pipeline(three_stages(), ("base", "data", "tuned", "data")))
    assert [name for name, _ in stages.ordered(pipeline(three_stages()))] == [
        "base", "data", "tuned"]


def test_the_toy_pipeline_runs_every_stage_and_tabulates_them(tmp_path):
    """experiments/r1_pipeline_tiny.py:smoke, shortened: every stage runs in order on its
    predecessors' outputs, each model is evaluated, and a rerun skips every stage."""
    from r1jax.cli import load_experiment

    config = load_experiment(os.path.join(REPO, "experiments", "r1_pipeline_tiny.py"), "smoke")
    for _, stage in stages.ordered(config):
        stage.eval.update(n_problems=4, max_new_tokens=16)
        stage.rl.update(steps=2, checkpoint_every=2, eval_every=2, max_new_tokens=16,
                        prompts_per_step=8)  # over the 8 test devices
        if "pretrain" in stage:
            stage.pretrain.update(steps=20, checkpoint_every=20)
        if "general" in stage:  # general prompts from the second of the two steps
            stage.general.from_step = 1
    config.eval.update(n_problems=4, max_new_tokens=16)
    assert stages.job(config, str(tmp_path))
    assert (tmp_path / "rejection" / "data.jsonl").read_text()
    # RL for all scenarios: the reward models scored the general prompts of its last step only.
    steps = metrics.read_metrics(tmp_path / "rl_all" / "metrics.jsonl")
    assert steps[0]["reward/helpfulness"] == 0.0 != steps[1]["reward/helpfulness"]  # 0: unscored
    assert steps[0]["reward/harmlessness"] == 0.0 != steps[1]["reward/harmlessness"]
    assert "reward/toy_harmless" in steps[1]
    assert steps[0]["tokens"] > 0
    table = (tmp_path / "results.md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| base", "| r1_zero", "| r1_zero_language", "| cold_start",
        "| reasoning_rl", "| sft", "| rl_all"]  # reward models are no policies: not evaluated
    assert all("-" not in row.split(" | ")[1] for row in table[2:])  # pass@1 of every stage
    before = {p: p.stat().st_mtime for p in tmp_path.rglob("*") if p.is_file()}
    assert stages.job(config, str(tmp_path))  # done: nothing runs again
    assert {p: p.stat().st_mtime for p in tmp_path.rglob("*") if p.is_file()
            if p.name != "results.md"} == {p: t for p, t in before.items()
                                           if p.name != "results.md"}


def test_user_paths_are_given_once_and_resolved_everywhere(tmp_path):
    config = pipeline(three_stages())
    config.stages.data.data = {"file": "path:prompts"}
    with pytest.raises(ValueError, match="reads 'path:prompts', but config.paths has no"):
        stages.user_paths(config)
    config.paths = {"prompts": "/data/p.jsonl"}
    paths = stages.user_paths(config)
    assert stages.resolved(config.stages.data, paths).data.file == "/data/p.jsonl"


def test_training_tokens_are_summed_from_each_stages_log(tmp_path):
    """The "training tokens" column: the logged "tokens" of every step (pretraining's in its
    pretrain/ folder), '-' for a stage whose log has none."""
    for folder, tokens in (("sft", [100, 250]), ("base/pretrain", [7, 8, 9]), ("old", [None])):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "metrics.jsonl").write_text("".join(
            json.dumps({"step": i + 1, "loss": 1.0, **({"tokens": n} if n else {})}) + "\n"
            for i, n in enumerate(tokens)))
    rows = {name: {"eval/pass@1": 0.5, **stages.training_tokens(tmp_path / folder, job)}
            for name, folder, job in (("sft", "sft", "sft"), ("base", "base", "pretrain"),
                                      ("old", "old", "rl"), ("none", "none", "rl"))}
    table = stages.results_table(rows).splitlines()
    assert [row.split(" | ")[-1] for row in table[2:]] == ["350 |", "24 |", "- |", "- |"]
    assert table[2].startswith("| sft | 0.500 |")
