"""The real-model experiments end to end through `python -m r1jax.main`, on what a user brings:
a tiny random Qwen2 checkpoint with a byte-level BPE tokenizer (so </answer> is several tokens),
a MATH-style training file and the benchmark files. Bad input stops the job before a model is
loaded or compiled, with an error naming what is wrong."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
import tokenizers as hf

from r1jax import main, metrics, models, policy
from r1jax.cli import load_experiment
from r1jax.models import ModelConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R1_ZERO = os.path.join(REPO, "experiments", "r1_zero_qwen2_5_math_1_5b.py")
R1_ZERO_7B = os.path.join(REPO, "experiments", "r1_zero_qwen2_5_math_7b.py")
EVAL = os.path.join(REPO, "experiments", "eval_r1_distill_qwen_1_5b.py")
R1_PIPELINE = os.path.join(REPO, "experiments", "r1_qwen2_5_math_1_5b.py")
DISTILL = os.path.join(REPO, "experiments", "distill_qwen2_5_math_1_5b.py")
EVAL_FILES = os.path.join(REPO, "tests", "fixtures", "eval")
PROBLEMS = [("What is 2 + 3?", "5"), ("Compute $7 \\cdot 6$.", "42"), ("Solve $x + 1 = 4$.", "3"),
            ("What is $\\frac{1}{2} + \\frac{1}{4}$?", "\\frac{3}{4}"), ("Find 10 - 8.", "2"),
            ("What is 9 squared?", "81"), ("How many sides has a hexagon?", "6"),
            ("What is 100 / 4?", "25")]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
                 "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")


def write_tokenizer(directory):
    """A byte-level BPE as Qwen's, trained on maths text, with no R1 tags of its own."""
    texts = [f"{q} <think> reason </think> <answer> \\boxed{{{a}}} </answer>" for q, a in PROBLEMS]
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    tok.train_from_iterator(texts * 10, hf.trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|endoftext|>", "chat_template": CHAT_TEMPLATE}))
    return tok.get_vocab_size()


def write_checkpoint(directory, vocab_size: int, seed: int = 0):
    """A random Qwen2 of the real family's shape rules (tied embeddings off, qkv bias), its
    embedding padded past the tokenizer's ids as Qwen's is."""
    cfg = ModelConfig(family="qwen2", vocab_size=vocab_size, d_model=32, num_layers=2,
                      num_heads=4, num_kv_heads=2, head_dim=8, ffn_dim=64, qkv_bias=True,
                      max_position=1024)
    models.save_hf(cfg, models.init(cfg, jax.random.key(seed)), str(directory))
    return cfg


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """(checkpoint dir, MATH train file, benchmark dir) as a user would have them."""
    root = tmp_path_factory.mktemp("user")
    checkpoint = root / "Qwen2.5-Math-tiny"
    checkpoint.mkdir()
    vocab = write_tokenizer(checkpoint)
    write_checkpoint(checkpoint, -(-vocab // 64) * 64)
    train = root / "math_train.jsonl"
    train.write_text("".join(json.dumps({"problem": q, "solution": f"So \\boxed{{{a}}}.",
                                         "level": "Level 1", "type": "Algebra"}) + "\n"
                             for q, a in PROBLEMS))
    return checkpoint, train, EVAL_FILES


def run_main(config: str, workdir, **overrides):
    main.main([f"--config={config}", f"--workdir={workdir}",
               *(f"--config.{key}={value}" for key, value in overrides.items())])


def r1_zero_overrides(user_files, **more):
    checkpoint, train, benchmarks = user_files
    return {"model.hf_path": checkpoint, "data.sources.math.path": train,
            "eval.data_dir": benchmarks, **more}


def test_r1_zero_smoke_trains_evaluates_and_exports(user_files, tmp_path):
    workdir = tmp_path / "run"
    run_main(R1_ZERO + ":smoke", workdir, **r1_zero_overrides(user_files))
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    final = records[-1]
    assert {"eval/pass@1", "eval/aime24/pass@1", "kl"} <= final.keys()
    assert np.isfinite(final["loss"]) and final["updates/skipped"] == 0
    assert (workdir / "results.md").is_file()
    # The policy as an HF checkpoint: what the last checkpoint holds, with the run's tokenizer.
    cfg, exported = models.load_hf(str(workdir / "hf"))
    _, trained = policy.load_policy(workdir)
    jax.tree.map(np.testing.assert_array_equal, exported, trained)
    assert (workdir / "hf" / "tokenizer.json").read_bytes() == (
        user_files[0] / "tokenizer.json").read_bytes()


def test_the_7b_smoke_is_the_1_5b_smoke_and_the_full_configs_differ_in_the_model():
    assert load_experiment(R1_ZERO_7B, "smoke") == load_experiment(R1_ZERO, "smoke")
    big, small = load_experiment(R1_ZERO_7B), load_experiment(R1_ZERO)
    assert (big.model.name, small.model.name) == ("qwen2.5-math-7b", "qwen2.5-math-1.5b")
    big.model.name, big.rl.microbatches = small.model.name, small.rl.microbatches
    assert big == small


def test_evaluation_smoke_writes_each_benchmark_and_compares_with_the_published(user_files,
                                                                              tmp_path):
    checkpoint, _, benchmarks = user_files
    workdir = tmp_path / "eval"
    run_main(EVAL + ":smoke", workdir, **{"model.hf_path": checkpoint,
                                         "eval.data_dir": benchmarks})
    summaries = {name: json.loads((workdir / "eval" / f"{name}.json").read_text())
                 for name in ("math500", "aime24")}
    assert all(s["n_problems"] == 2 and s["k"] == 2 and s["template"] == "r1_usage"
               for s in summaries.values())
    table = (workdir / "results.md").read_text()
    assert "| math500 | 2 |" in table and "| 83.9 |" in table and "| 28.9 |" in table
    written = (workdir / "eval" / "math500.json").stat().st_mtime_ns
    run_main(EVAL + ":smoke", workdir, **{"model.hf_path": checkpoint,
                                         "eval.data_dir": benchmarks})
    assert (workdir / "eval" / "math500.json").stat().st_mtime_ns == written  # skipped


def bad_input(user_files, tmp_path, **overrides):
    """The error the smoke run stops with, and that it stopped before any checkpoint."""
    workdir = tmp_path / "bad"
    with pytest.raises((ValueError, SystemExit)) as error:
        run_main(R1_ZERO + ":smoke", workdir, **r1_zero_overrides(user_files, **overrides))
    assert not (workdir / "checkpoints").exists()
    return str(error.value)


def test_a_key_only_the_user_can_give_is_required(tmp_path):
    with pytest.raises(SystemExit, match="config.data.sources.math.path, config.eval.data_dir, "
                                         "config.model.hf_path"):
        run_main(R1_ZERO, tmp_path)


def test_a_checkpoint_that_is_not_the_named_model(user_files, tmp_path):
    message = bad_input(user_files, tmp_path, **{"model.name": "qwen2.5-math-1.5b"})
    assert "is not the model the config names ('qwen2.5-math-1.5b')" in message
    assert "num_layers 2 (named: 28)" in message


def test_a_tokenizer_with_more_ids_than_the_embedding(user_files, tmp_path):
    small = tmp_path / "small"
    shutil.copytree(user_files[0], small)
    write_checkpoint(small, 128)
    message = bad_input(user_files, tmp_path, **{"model.hf_path": small})
    assert "ids but the model's embedding has 128 rows" in message


def test_a_prompt_longer_than_the_maximum(user_files, tmp_path):
    message = bad_input(user_files, tmp_path, **{"data.max_prompt_tokens": 20,
                                                 "data.drop_long_prompts": False})
    assert "8 of 8 prompts are longer than data.max_prompt_tokens=20" in message


def test_a_file_without_the_columns_its_format_needs(user_files, tmp_path):
    broken = tmp_path / "broken.jsonl"
    rows = [{"problem": "What is 1 + 1?", "solution": "\\boxed{2}"}, {"solution": "\\boxed{3}"}]
    broken.write_text("".join(json.dumps(row) + "\n" for row in rows))
    message = bad_input(user_files, tmp_path, **{"data.sources.math.path": broken})
    assert f"{broken}, line 2" in message and "problem" in message


def test_the_r1_pipeline_smoke_runs_every_stage_on_the_users_files(user_files, tmp_path):
    """experiments/r1_qwen2_5_math_1_5b.py:smoke: cold start, reasoning RL with the language
    reward (MATH's "lang": "en"), rejection sampling with general data, SFT of the base, RL; each
    path given once; every model evaluated; a rerun skips every stage."""
    from r1jax.templates import r1_zero_prompt

    checkpoint, train, benchmarks = user_files
    cold_start = tmp_path / "cold_start.jsonl"
    cold_start.write_text("".join(json.dumps(
        {"prompt": r1_zero_prompt(q), "completion": f" <think> reason </think> <answer> "
                                                    f"\\boxed{{{a}}} </answer>"}) + "\n"
        for q, a in PROBLEMS))
    general = tmp_path / "general.jsonl"
    general.write_text(json.dumps({"prompt": "Say hi.", "completion": " Hi."}) + "\n")
    general_prompts = tmp_path / "general_prompts.jsonl"
    general_prompts.write_text("".join(json.dumps({"prompt": f"Say hi {i} times."}) + "\n"
                                       for i in range(4)))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": q, "chosen": f" {a}.", "rejected": " No."})
                             + "\n" for q, a in PROBLEMS * 2))
    paths = {"paths.base_model": checkpoint, "paths.math": train, "paths.eval_data": benchmarks,
             "paths.cold_start_data": cold_start, "paths.general_data": general,
             "paths.general_prompts": general_prompts, "paths.helpfulness_pairs": pairs,
             "paths.harmlessness_pairs": pairs}
    workdir = tmp_path / "pipeline"
    run_main(R1_PIPELINE + ":smoke", workdir, **paths)
    table = (workdir / "results.md").read_text()
    for stage in ("cold_start", "reasoning_rl", "sft", "rl_all"):
        assert f"| {stage} | " in table
        assert (workdir / stage / "hf" / "config.json").is_file()
    for stage in ("helpfulness_rm", "harmlessness_rm"):
        config = json.loads((workdir / stage / "hf" / "config.json").read_text())
        assert config["architectures"] == ["Qwen2ForSequenceClassification"]
    last = metrics.read_metrics(workdir / "rl_all" / "metrics.jsonl")[-1]
    assert last["reward/helpfulness"] != 0.0  # the general prompts of the last step, scored
    data = [json.loads(line) for line in (workdir / "rejection" / "data.jsonl").read_text()
            .splitlines()]
    assert data[-1]["source"]["stage"] == "general"  # the general record joins the set
    resolved = json.loads((workdir / "sft" / "config.json").read_text())
    assert resolved["model"]["hf_path"] == str(checkpoint)  # SFT starts again from the base
    assert resolved["sft"]["data"] == [str(workdir / "rejection" / "data.jsonl")]
    run_main(R1_PIPELINE + ":smoke", workdir, **paths)  # done: every stage skipped


def test_the_distillation_smoke_runs_on_the_users_files(user_files, tmp_path):
    """experiments/distill_qwen2_5_math_1_5b.py:smoke: the teacher's samples of the user's
    problems filtered into an SFT set with the general records, the student trained on it and
    evaluated; a rerun skips both stages."""
    checkpoint, train, benchmarks = user_files
    general = tmp_path / "general.jsonl"
    general.write_text(json.dumps({"prompt": "Say hi.", "completion": " Hi."}) + "\n")
    paths = {"paths.teacher": checkpoint, "paths.student": checkpoint, "paths.math": train,
             "paths.general_data": general, "paths.eval_data": benchmarks}
    workdir = tmp_path / "distill"
    run_main(DISTILL + ":smoke", workdir, **paths)
    assert "| student | " in (workdir / "results.md").read_text()
    resolved = json.loads((workdir / "student" / "config.json").read_text())
    assert resolved["sft"]["data"] == [str(workdir / "distill_data" / "data.jsonl")]
    teacher = json.loads((workdir / "distill_data" / "config.json").read_text())
    assert teacher["model"]["hf_path"] == str(checkpoint)
    written = (workdir / "student" / "hf" / "config.json").stat().st_mtime_ns
    run_main(DISTILL + ":smoke", workdir, **paths)  # done: both stages skipped
    assert (workdir / "student" / "hf" / "config.json").stat().st_mtime_ns == written
