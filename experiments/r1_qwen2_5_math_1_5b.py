"""The DeepSeek-R1 pipeline on Qwen2.5-Math-1.5B (job "pipeline", r1jax/stages.py):

    python -m r1jax.main --config=experiments/r1_qwen2_5_math_1_5b.py \\
        --config.paths.base_model=/models/Qwen2.5-Math-1.5B \\
        --config.paths.cold_start_data=/data/cold_start.jsonl \\
        --config.paths.math=/data/MATH/train \\
        --config.paths.general_data=/data/general.jsonl \\
        --config.paths.general_prompts=/data/general_prompts.jsonl \\
        --config.paths.helpfulness_pairs=/data/helpfulness.jsonl \\
        --config.paths.harmlessness_pairs=/data/harmlessness.jsonl \\
        --config.paths.eval_data=/data/benchmarks --workdir=runs/r1_qwen2_5_math_1_5b

The paths are the user's, each given once for every stage that reads it ("path:NAME"): the base
checkpoint; the cold-start set, JSONL records {"prompt", "completion"} whose prompts are in the
R1-Zero template (R1's own cold-start data is not public: long chains of thought in a readable
format, e.g. correct samples of a published R1 distillation set); MATH's training problems;
non-reasoning SFT records that join the rejection-sampled set (R1: about a quarter of it);
general prompts for the last RL stage (JSONL {"prompt"}) and preference pairs to train its two
reward models on (JSONL {"prompt", "chosen", "rejected"}: chosen and rejected summaries for
helpfulness, whole responses for harmlessness; R1's are not public, e.g. an open preference set
in the R1-Zero template); the evaluation sets (math500.jsonl, aime24.parquet). The stages, each
in WORKDIR/<stage>:

    cold_start    SFT of the base on the cold-start set (R1 §2.3.1)
    reasoning_rl  RL from it with accuracy + format + language consistency (§2.3.2) and the
                  R1-Zero settings of experiments/r1_zero_qwen2_5_math_1_5b.py
    rejection     4 samples per MATH problem from reasoning_rl, the correct and clean ones kept
                  and the general records added (§2.3.3)
    sft           SFT of the base on that set: 2 epochs, lr 5e-6, cosine to 1/10 (§2.3.3)
    helpfulness_rm, harmlessness_rm
                  reward models from the SFT model, one epoch on their preference pairs
    rl_all        RL from it at T 0.7 (§2.3.4): the rule rewards on MATH, and in its last
                  400/1700 of the steps (R1's share) a quarter of each batch general prompts,
                  scored by the helpfulness model on the summary and the harmlessness model on
                  the whole response

MATH problems are English (the source's "lang": "en"), which the language reward reads. The
format is R1-Zero's (<think> then <answer>), the one the R1-Zero template asks for. SFT runs in
4,096-token windows (the model's positions) of 64 rows, as the RL stages' memory settings, sized
for a TPU v5e:2x4 slice. ``:smoke`` runs every stage in seconds on the tiny checkpoint that
tests/test_real_configs.py writes.
"""

import copy
import os

import ml_collections
from ml_collections import config_dict

from r1jax import rejection, reward_model, sft
from r1jax.cli import load_experiment

PATHS = ("base_model", "cold_start_data", "math", "general_data", "general_prompts",
         "helpfulness_pairs", "harmlessness_pairs", "eval_data")


def get_config(arg: str = ""):
    rl_stage = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "r1_zero_qwen2_5_math_1_5b.py"), arg)
    rl_stage.model.hf_path = "path:base_model"
    rl_stage.data.sources.math.update(dict(path="path:math", lang="en"))
    rl_stage.eval.data_dir = "path:eval_data"
    rl_stage.rewards = ml_collections.ConfigDict({"accuracy": 1.0, "format": 1.0,
                                                  "language": 1.0})

    def stage(job, model, **sections):
        config = copy.deepcopy(rl_stage)
        config.job = job
        config.model.hf_path = model
        for name, section in sections.items():
            config[name] = section
        return config

    def sft_section(data):
        section = sft.default_config()
        section.update(dict(data=data, epochs=2, batch_size=64, seq_len=4096, lr=5e-6,
                            warmup_steps=20, schedule="cosine", end_lr_fraction=0.1,
                            microbatches=64, logprob_chunk=512, layers="remat",
                            checkpoint_every=100))
        if arg == "smoke":
            section.update(dict(epochs=1, batch_size=16, seq_len=128, microbatches=2,
                                logprob_chunk=8, lr=1e-4, warmup_steps=1))
        return section

    rejection_section = rejection.default_config()
    rejection_section.update(dict(samples_per_prompt=4, prompts_per_batch=32,
                                  max_new_tokens=rl_stage.rl.max_new_tokens,
                                  general_data=("path:general_data",)))
    if arg == "smoke":
        rejection_section.update(dict(samples_per_prompt=2, prompts_per_batch=8,
                                      max_new_tokens=12))
    def reward_model_stage(pairs):
        section = reward_model.default_config()
        section.update(dict(data=(pairs,), epochs=1, batch_size=64, seq_len=4096, lr=1e-6,
                            microbatches=64, layers="remat", held_out=512,
                            checkpoint_every=100))
        if arg == "smoke":
            section.update(dict(batch_size=8, seq_len=128, microbatches=1, lr=1e-4,
                                warmup_steps=1, held_out=2))
        return stage("reward_model", "stage:sft", reward_model=section)

    rl_all = stage("rl", "stage:sft")
    rl_all.rl.temperature = 0.7  # R1 §2.3.4: higher temperatures gave incoherent text
    rl_all.rewards.update({"helpfulness": 1.0, "harmlessness": 1.0})
    rl_all.reward_models = ml_collections.ConfigDict({
        "helpfulness": {"path": "stage:helpfulness_rm", "on": "summary"},
        "harmlessness": {"path": "stage:harmlessness_rm", "on": "response"}})
    rl_all.general = ml_collections.ConfigDict(dict(
        source={"path": "path:general_prompts", "format": "general", "lang": "en",
                "reward": ("helpfulness", "harmlessness")},
        from_step=rl_all.rl.steps - max(1, rl_all.rl.steps * 400 // 1700),
        prompts_per_step=rl_all.rl.prompts_per_step // 4))

    config = copy.deepcopy(rl_stage)
    config.job = "pipeline"
    config.paths = ml_collections.ConfigDict(
        {name: config_dict.placeholder(str) for name in PATHS})
    config.stages = ml_collections.ConfigDict({
        "cold_start": stage("sft", "path:base_model",
                            sft=sft_section(("path:cold_start_data",))),
        "reasoning_rl": stage("rl", "stage:cold_start"),
        "rejection": stage("rejection", "stage:reasoning_rl", rejection=rejection_section),
        "sft": stage("sft", "path:base_model", sft=sft_section(("stage:rejection",))),
        "helpfulness_rm": reward_model_stage("path:helpfulness_pairs"),
        "harmlessness_rm": reward_model_stage("path:harmlessness_pairs"),
        "rl_all": rl_all})
    config.order = ("cold_start", "reasoning_rl", "rejection", "sft", "helpfulness_rm",
                    "harmlessness_rm", "rl_all")
    return config
