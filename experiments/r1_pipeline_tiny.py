"""The DeepSeek-R1 pipeline on the toy world, one command (job "pipeline", r1jax/stages.py):

    python -m r1jax.main --config=experiments/r1_pipeline_tiny.py --workdir=runs/r1_pipeline_tiny
    python -m r1jax.main --config=experiments/r1_pipeline_tiny.py:smoke --workdir=/tmp/r1_smoke

aha_tiny's world of sums, posed in English or in the toy world's made-up language Kalo
(r1jax/data/languages.py), with a base model whose chains of thought switch language phrase by
phrase (corpus ``mixing``), as R1-Zero's do. The stages, each in workdir/<stage>:

    base             the bilingual tokenizer and base model (job pretrain)
    r1_zero          R1-Zero from the base: accuracy + format (the row the others compare to)
    r1_zero_language the same + the language reward: its effect on a base that mixes languages
    cold_start_data  readable long chains of thought in the question's language, then a summary
    cold_start       SFT of the base on them (R1 §2.3.1)
    reasoning_rl     RL from the cold start: accuracy + summary format + language consistency,
                     summed as R1 sums them (§2.3.2)
    rejection        samples of reasoning_rl kept when correct and clean (§2.3.3)
    general_data     general prompts ("Repeat 4 9 1"), their SFT records (some unhelpful, some
                     leaking a secret) and preference pairs (r1jax/data/chat.py)
    sft              SFT of the base on the rejection set and the general records: 2 epochs,
                     cosine to a tenth (§2.3.3)
    helpfulness_rm   a reward model from the SFT model, trained on pairs of summaries
    harmlessness_rm  one trained on pairs of whole responses (§2.3.4)
    rl_all           RL from the SFT model at T 0.7: rule rewards on the reasoning prompts, and
                     from its last 20 steps on, general prompts scored by the two reward models
                     (§2.3.4); the rules the models should learn are logged beside them

Every stage that makes a model is evaluated on the same held-out problems (pass@1 over k=4 at
T 0.6 / top-p 0.95) and the run ends with workdir/results.md, one row per stage. The stages are
sized for the whole command to take under 30 minutes on 2 CPU cores (28 in the README's run).
Override any stage's key as --config.stages.cold_start.sft.lr=1e-3.
"""

import copy
import os

import ml_collections

from r1jax import rejection, reward_model, sft
from r1jax.cli import load_experiment

LANGUAGES = ("en", "kalo")


def get_config(arg: str = ""):
    if arg not in ("", "smoke"):
        raise ValueError(f"unknown config argument {arg!r}; use '' or 'smoke'")
    world = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "aha_tiny.py"), arg)
    world.data.languages = LANGUAGES
    # About one phrase in seven in the other language. At 0.3 one 1,500-step base did not learn
    # to follow the question's language at all (consistency 0.51, chance), another did (0.68):
    # the cue is worth too little to the loss to be learned reliably.
    world.corpus.update(dict(languages=LANGUAGES, mixing=0.15))
    world.eval.languages = LANGUAGES
    if arg != "smoke":  # readable completions (work, then a summary) run to about 120 tokens
        world.rl.max_new_tokens = world.eval.max_new_tokens = 128
    pretrain = world.pretrain
    del world.pretrain  # only the base stage pretrains

    def stage(job, **sections):
        config = copy.deepcopy(world)
        config.job = job
        for name, section in sections.items():
            config[name] = section
        return config

    def reads(config, model):  # a stage starting from another stage's HF checkpoint
        config.model.update(name="", hf_path=f"stage:{model}")
        return config

    smoke = arg == "smoke"
    base = stage("pretrain", pretrain=pretrain)
    r1_zero = reads(stage("rl"), "base")
    if not smoke:  # aha_tiny's R1-Zero is at test pass@1 0.99 by its step 40 of 80
        r1_zero.rl.steps = 50
    r1_zero.rewards.language = 0.0  # logged beside the rewards (at the sampling temperature)
    r1_zero_language = copy.deepcopy(r1_zero)
    r1_zero_language.rewards.language = 1.0

    cold_start_data = stage("cold_start_data", cold_start=ml_collections.ConfigDict(dict(
        examples=64 if smoke else 1000, seed=1, slip_fraction=0.3)))

    cold_start = reads(stage("sft", sft=sft.default_config()), "base")
    cold_start.sft.update(dict(data=("stage:cold_start_data",), epochs=2, batch_size=8,
                               seq_len=256, lr=1e-3,
                               warmup_steps=10, end_lr_fraction=0.1, checkpoint_every=100))

    # The language reward's effect shows from the mixing base (r1_zero_language); the cold start
    # already writes in the question's language, so the ablation is not repeated from it.
    reasoning_rl = reads(stage("rl"), "cold_start")
    if not smoke:  # from the cold start, already at test pass@1 ~0.93
        reasoning_rl.rl.steps = 30
    reasoning_rl.rewards = ml_collections.ConfigDict(
        {"arithmetic": 1.0, "summary_format": 1.0, "language": 1.0})

    rejection_stage = reads(stage("rejection", rejection=rejection.default_config()),
                            "reasoning_rl")
    rejection_stage.rewards = reasoning_rl.rewards
    rejection_stage.rejection.update(dict(samples_per_prompt=4, prompts=32 if smoke else 500,
                                          max_new_tokens=world.rl.max_new_tokens))
    if smoke:  # minutes of training give no correct samples: the SFT set would be empty
        rejection_stage.rejection.general_data = ("stage:cold_start_data",)

    general_data = stage("general_data", general_data=ml_collections.ConfigDict(dict(
        prompts=200, sft=64 if smoke else 400, pairs=64 if smoke else 1000, seed=0,
        unhelpful_fraction=0.2, harmful_fraction=0.2)))

    sft_stage = reads(stage("sft", sft=copy.deepcopy(cold_start.sft)), "base")
    sft_stage.sft.data = ("stage:rejection", "stage:general_data/sft.jsonl")

    def reward_model_stage(aspect):  # R1 §2.3.4: a model per aspect, from the SFT model
        config = reads(stage("reward_model", reward_model=reward_model.default_config()), "sft")
        config.reward_model.update(dict(data=(f"stage:general_data/{aspect}.jsonl",),
                                        epochs=1, batch_size=16, seq_len=160, lr=1e-3,
                                        warmup_steps=10, held_out=16 if smoke else 100))
        return config

    rl_all = reads(stage("rl"), "sft")
    if not smoke:
        rl_all.rl.steps = 25
    rl_all.rewards = ml_collections.ConfigDict({
        **reasoning_rl.rewards, "helpfulness": 1.0, "harmlessness": 1.0,
        "toy_helpful": 0.0, "toy_harmless": 0.0})  # the rules, logged beside the models
    rl_all.reward_models = ml_collections.ConfigDict({
        "helpfulness": {"path": "stage:helpfulness_rm", "on": "summary"},
        "harmlessness": {"path": "stage:harmlessness_rm", "on": "response"}})
    rl_all.general = ml_collections.ConfigDict(dict(
        source={"path": "stage:general_data", "format": "general", "lang": "en",
                "reward": ("helpfulness", "harmlessness", "toy_helpful", "toy_harmless")},
        from_step=rl_all.rl.steps - (5 if smoke else 20), prompts_per_step=2))
    rl_all.rl.temperature = 0.7  # R1 §2.3.4: higher temperatures gave incoherent text

    if not smoke:  # each RL stage is evaluated where it starts and where it ends
        for rl_stage in (r1_zero, r1_zero_language, reasoning_rl, rl_all):
            rl_stage.rl.eval_every = rl_stage.rl.steps

    config = copy.deepcopy(world)
    config.job = "pipeline"
    config.stages = ml_collections.ConfigDict({
        "base": base, "r1_zero": r1_zero, "r1_zero_language": r1_zero_language,
        "cold_start_data": cold_start_data,
        "cold_start": cold_start, "reasoning_rl": reasoning_rl, "rejection": rejection_stage,
        "general_data": general_data, "sft": sft_stage,
        "helpfulness_rm": reward_model_stage("helpfulness"),
        "harmlessness_rm": reward_model_stage("harmlessness"), "rl_all": rl_all})
    config.order = ("base", "r1_zero", "r1_zero_language", "cold_start_data", "cold_start",
                    "reasoning_rl", "rejection", "general_data", "sft",
                    "helpfulness_rm", "harmlessness_rm", "rl_all")
    return config
