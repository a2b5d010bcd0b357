"""Distillation against RL on a small student (R1 Table 6's question) in the toy world, as a
pipeline (job "pipeline", r1jax/stages.py):

    python -m r1jax.main --config=experiments/distill_tiny.py --workdir=runs/distill_tiny
    python -m r1jax.main --config=experiments/distill_tiny.py:smoke --workdir=/tmp/distill_smoke

    teacher        aha_tiny: the toy-1m base pretrained, then R1-Zero (the main job's run)
    student_base   the smaller student ("tiny", about 1/8 of the teacher's parameters)
                   pretrained on the same corpus
    distill_data   the teacher's samples of the training prompts, kept when correct and clean
                   (the rejection job)
    student_sft    the student fine-tuned on them, SFT alone (R1 §2.4: 2 epochs, cosine to 1/10)
    student_rl     the student trained by R1-Zero RL instead, from the same base, for about
                   the tokens student_sft trains on (2 epochs of ~300k completion tokens; at
                   ~3k sampled tokens a step, 200 steps)

Every model is evaluated on the same held-out problems (pass@1 over k=4 at T 0.6 / top-p 0.95);
results.md holds one row per stage, with the tokens each trained on ("training tokens": the
completion tokens of SFT's loss, the sampled tokens of RL's). R1 found the distilled student
ahead of the one trained by RL; the table says what this world shows.
"""

import copy
import os

from r1jax import rejection, sft
from r1jax.cli import load_experiment


def get_config(arg: str = ""):
    if arg not in ("", "smoke"):
        raise ValueError(f"unknown config argument {arg!r}; use '' or 'smoke'")
    teacher = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "aha_tiny.py"), arg)
    world = copy.deepcopy(teacher)
    del world.pretrain

    def stage(job, model="", **sections):
        config = copy.deepcopy(world)
        config.job = job
        for name, section in sections.items():
            config[name] = section
        if model:
            config.model.update(name="", hf_path=f"stage:{model}")
        return config

    student_base = stage("pretrain", pretrain=copy.deepcopy(teacher.pretrain))
    student_base.model.update(name="tiny")

    distill_data = stage("rejection", "teacher", rejection=rejection.default_config())
    distill_data.rejection.update(dict(samples_per_prompt=4, prompts=64 if arg else 2000,
                                       max_new_tokens=world.rl.max_new_tokens))

    student_sft = stage("sft", "student_base", sft=sft.default_config())
    student_sft.sft.update(dict(data=("stage:distill_data",), epochs=2, batch_size=8,
                                seq_len=256, lr=1e-3, warmup_steps=10, end_lr_fraction=0.1,
                                checkpoint_every=100))

    student_rl = stage("rl", "student_base")
    if not arg:
        student_rl.rl.steps = 200

    config = copy.deepcopy(world)
    config.job = "pipeline"
    config.stages = {"teacher": teacher, "student_base": student_base,
                     "distill_data": distill_data, "student_sft": student_sft,
                     "student_rl": student_rl}
    config.order = ("teacher", "student_base", "distill_data", "student_sft", "student_rl")
    return config
