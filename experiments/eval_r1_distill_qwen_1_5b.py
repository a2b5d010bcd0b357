"""DeepSeek-R1-Distill-Qwen-1.5B on MATH-500, AIME 2024 and GPQA Diamond at the R1 paper's protocol.

    python -m r1jax.main --config=experiments/eval_r1_distill_qwen_1_5b.py \\
        --config.model.hf_path=/models/DeepSeek-R1-Distill-Qwen-1.5B \\
        --config.eval.data_dir=/data/benchmarks --workdir=runs/eval_r1_distill_qwen_1_5b

Writes WORKDIR/eval/NAME.json (the summary) and NAME.problems.jsonl (every sample, its answer and
verdict) per benchmark, and WORKDIR/results.md with pass@1 beside the figures DeepSeek published
(R1 paper, Table 5): MATH-500 83.9, AIME 2024 28.9 (cons@64 52.7), GPQA Diamond 33.8. A rerun
skips the benchmarks already written.

The protocol (docs/recipe.md, "Evaluation protocol"): k = 16 samples per problem on MATH-500 and
64 on AIME 2024 and GPQA Diamond, T 0.6, top-p 0.95, 32,768 new tokens at most; the R1 usage
prompt (the question and "Please reason step by step, and put your final answer within
\\boxed{}." as the only user message of the checkpoint's chat template, the response opened with
"<think>\\n"); maths answers found by math-verify's extraction, as public evaluators find them.
Parameters in bf16 on accelerators (float32 on CPU), sampling with float32 logits.

``:smoke`` runs the same path on the tiny checkpoint tests/test_real_configs.py writes, with two
problems of MATH-500 and AIME 2024, 2 samples and 8 tokens.
"""

import os

import ml_collections
from ml_collections import config_dict

from r1jax.cli import load_experiment


def get_config(arg: str = ""):
    config = load_experiment(os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.py"))
    config.job = "evaluate"
    # Qwen2.5-Math-1.5B's architecture (R1-Distill-Qwen-1.5B is distilled from it).
    config.model.update(name="qwen2.5-math-1.5b", hf_path=config_dict.placeholder(str))
    config.tokenizer = ""  # the checkpoint's
    config.mesh.update(data=-1, fsdp=1, tensor=1)
    config.eval = ml_collections.ConfigDict(dict(
        benchmark="math500", also=("aime24", "gpqa_diamond"),
        data_dir=config_dict.placeholder(str), n_problems=0,
        k=0, max_new_tokens=32768,  # k 0: each benchmark's (16, 64, 64)
        template="r1_usage", temperature=0.6, top_p=0.95, extraction="math_verify",
        dtype="auto", samples_per_batch=256, seed=0,
        published={"math500": 83.9, "aime24": 28.9, "gpqa_diamond": 33.8}))
    if arg == "smoke":
        config.model.name = ""  # the test's tiny checkpoint is no named model
        config.eval.update(also=("aime24",), n_problems=2, k=2, max_new_tokens=8,
                           samples_per_batch=8)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use '' or 'smoke'")
    return config
