"""Every experiment config builds with both arguments: a known model config, registered rewards,
a valid corpus, a known benchmark; an unknown argument is an error naming it."""

import glob
import os

import pytest

from r1jax import main, models, scenarios, stages, toy
from r1jax.data import benchmarks as benchmarks_data
from r1jax.rewards import registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every experiment file but common.py, the base the others build on (it takes no argument).
EXPERIMENTS = sorted(p for p in glob.glob(os.path.join(REPO, "experiments", "*.py"))
                     if os.path.basename(p) != "common.py")


def test_the_experiments_are_found():
    assert {"aha_tiny.py", "aha_small.py", "r1_zero_toy.py"} <= set(
        map(os.path.basename, EXPERIMENTS))


@pytest.mark.parametrize("arg", ["", "smoke"])
@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_config_builds(path, arg):
    config = main.load_experiment(path, arg)
    check_config(config)
    if config.job == "pipeline":  # and each stage is a config of its own
        stages.user_paths(config)  # every "path:NAME" is one of config.paths
        for _, stage in stages.ordered(config):
            check_config(stage)


def check_config(config):
    assert config.job in main.JOBS
    if config.model.name:  # "" for a checkpoint that is no named model (real configs' smoke)
        models.get_config(config.model.name)
    for name in scenarios.rule_weights(config, scenarios.model_specs(config)):
        registry.get(name)  # the others are reward models' terms, checked by model_specs
    registry.get(config.rl.correctness_reward)
    for benchmark in (config.eval.benchmark, *config.eval.also):
        assert benchmark in benchmarks_data.BENCHMARKS
    if "corpus" in config:
        toy.corpus_config(config)  # CorpusConfig validates its probabilities and level mix
    if "pretrain" in config:
        assert config.pretrain.documents > 0 and config.pretrain.steps > 0


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_an_unknown_argument_is_an_error_naming_it(path):
    with pytest.raises(ValueError, match="smok"):
        main.load_experiment(path, "smok")
