"""Distillation into Qwen2.5-Math-1.5B (R1 §2.4; job "pipeline", r1jax/stages.py): a teacher
writes the SFT set, the student learns it by SFT alone.

    python -m r1jax.main --config=experiments/distill_qwen2_5_math_1_5b.py \\
        --config.paths.teacher=runs/r1_qwen2_5_math_1_5b/rl_all/hf \\
        --config.paths.student=/models/Qwen2.5-Math-1.5B \\
        --config.paths.math=/data/MATH/train \\
        --config.paths.general_data=/data/general.jsonl \\
        --config.paths.eval_data=/data/benchmarks --workdir=runs/distill_qwen2_5_math_1_5b

    distill_data  4 samples per MATH problem from the teacher (an HF checkpoint: the R1
                  pipeline's final model, or a published one of the same tokenizer's family),
                  the correct and clean ones kept, the general records added (the rejection job)
    student       SFT of the student base on that set: R1-Distill-Qwen-1.5B's recipe, lr 1e-4,
                  2 epochs (R1: 2-3), batch 64, cosine to 1/10; evaluated like every other model

The student must read the teacher's text with its own tokenizer: the SFT records are text, so
any teacher works, but a teacher whose template differs from the student's RL template (here
R1-Zero's) teaches that template. ``:smoke`` is the same on tiny checkpoints.
"""

import copy
import os

import ml_collections
from ml_collections import config_dict

from r1jax.cli import load_experiment

PATHS = ("teacher", "student", "math", "general_data", "eval_data")


def get_config(arg: str = ""):
    pipeline = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "r1_qwen2_5_math_1_5b.py"), arg)
    distill_data = copy.deepcopy(pipeline.stages.rejection)
    distill_data.model.update(dict(name="", hf_path="path:teacher"))  # any teacher model
    student = copy.deepcopy(pipeline.stages.sft)
    student.model.hf_path = "path:student"
    student.sft.update(dict(data=("stage:distill_data",), lr=1e-4 if not arg else student.sft.lr))

    config = copy.deepcopy(pipeline)
    config.model.hf_path = "path:student"
    config.paths = ml_collections.ConfigDict(
        {name: config_dict.placeholder(str) for name in PATHS})
    config.stages = ml_collections.ConfigDict({"distill_data": distill_data, "student": student})
    config.order = ("distill_data", "student")
    return config
