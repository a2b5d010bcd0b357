"""Evaluation: the estimators, majority voting, benchmark loaders and judges, prompt templates,
batching, and the command line end to end on a tiny HF checkpoint and a tiny r1jax workdir."""

import csv
import functools
import itertools
import json
import math
import os

import jax
import numpy as np
import pytest

from r1jax import (
    cli,
    evaluate,
    main,
    models,
    policy,
    rewards,
    sampling,
    stopping,
    templates,
    tokenizers,
)
from r1jax.checkpoint import Checkpointer
from r1jax.data import CorpusConfig, corpus_documents
from r1jax.data import benchmarks as benchmarks_data
from r1jax.data.benchmarks import BENCHMARKS, LETTERS
from r1jax.mesh import make_mesh
from r1jax.optim import make_optimizer
from r1jax.rewards.judging import same_string
from r1jax.templates import r1_zero_prompt

TESTS = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(TESTS, "fixtures", "eval")
SMOKE_CONFIG = os.path.join(os.path.dirname(TESTS), "experiments", "r1_zero_toy.py")
CFG = models.get_config("tiny", vocab_size=512)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIRED_KEYS = {"pass@1", "cons@k", "pass@k", "length/mean", "truncated_frac", "n_problems", "k"}
# A chat template in the style of Qwen's, for the r1_usage template through jinja2.
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


# --- Estimators and voting -----------------------------------------------------------------


def brute_force_pass_at_k(n, c, k):
    """The share of the k-subsets of n samples (c of them correct) holding a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumerating_every_subset():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                expected = brute_force_pass_at_k(n, c, k)
                assert evaluate.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
                assert expected == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_special_cases():
    assert evaluate.pass_at_k(64, 5, 1) == pytest.approx(5 / 64)  # pass@1 = c / n
    assert evaluate.pass_at_k(64, 61, 4) == 1.0  # n - c < k
    assert evaluate.pass_at_k(1000, 0, 100) == 0.0
    # No overflow where C(n, k) would: one correct sample of n is in a k-subset k/n of the time.
    assert evaluate.pass_at_k(10_000, 1, 10) == pytest.approx(10 / 10_000, rel=1e-12)
    with pytest.raises(ValueError, match="got n=4 c=5 k=1"):
        evaluate.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="got n=4 c=1 k=5"):
        evaluate.pass_at_k(4, 1, 5)


def test_majority_vote_groups_equivalent_answers_written_differently():
    answers = ["3", "1/2", None, "0.5", "3", "\\frac{1}{2}", None, "\\dfrac12"]
    assert evaluate.majority_vote(answers) == 1  # 1/2 x4 beats 3 x2; unanswered do not vote
    assert evaluate.majority_vote([None, None]) is None


def test_majority_vote_tie_goes_to_the_earliest_sampled_group():
    assert evaluate.majority_vote(["7", "0.5", "1/2", "7"]) == 0
    assert evaluate.majority_vote([None, "1/2", "7", "0.5", "7"]) == 1
    assert evaluate.majority_vote(["b", "a"], same_string) == 0


def test_summary_from_records():
    def record(correct, answers, cons_correct):
        return {"completions": ["wait, check"] * len(correct), "correct": correct,
                "answers": answers, "lengths": [4] * len(correct),
                "truncated": [False] * len(correct), "cons_correct": cons_correct}

    records = [record([True, False, False, True], ["1", "2", "2", "1"], True),
               record([False] * 4, [None, "5", None, "6"], False)]
    summary = evaluate.summarize(records, 4, pass_ks=(1, 2))
    assert summary["pass@1"] == pytest.approx(0.25)
    assert summary["cons@k"] == pytest.approx(0.5)
    assert summary["pass@k"] == pytest.approx(0.5)
    assert summary["pass@2"] == pytest.approx((1 - 1 / 6 + 0) / 2)
    assert summary["answered_frac"] == pytest.approx(6 / 8)
    assert summary["reflect/rate"] == 2.0
    assert REQUIRED_KEYS <= set(summary)


# Completions whose format and language are known by construction: the reasoning of KALO_THINK
# is Kalo, of EN_THINK English, and MIXED_THINK has 3 Kalo words of 6.
KALO_THINK = "Ke fenako ezu 12. Zirok."
EN_THINK = "The result is 12. Let me verify it again."
MIXED_THINK = "Sami nemi veziro: 12 - 2 = 10. The result is 12."


def test_summary_format_shares_and_language_consistency_from_records():
    def record(lang, completions):
        n = len(completions)
        return {"lang": lang, "completions": completions, "correct": [True] * n,
                "answers": ["12"] * n, "lengths": [9] * n, "truncated": [False] * n,
                "cons_correct": True}

    records = [
        record("kalo", [f"<think> {KALO_THINK} </think> 10 + 2 = 12. <answer> 12 </answer>",
                        f"<think> {MIXED_THINK} </think> <answer> 12 </answer>",
                        f"<think> {EN_THINK} </think> <answer> 12 </answer> and more",
                        "<think> 10 + 2 ="]),  # truncated: reasoning without a word
        record("en", [f"<think> {EN_THINK} </think> 10 + 2 = 12. <answer> 12 </answer>",
                      f"<think> {EN_THINK} </think>\n<answer> 12 </answer>",
                      f"<think> {KALO_THINK} </think> <answer>12</answer>",
                      f"<answer> 12 </answer> <think> {EN_THINK} </think>"]),
    ]
    summary = evaluate.summarize(records, 4)
    assert summary["summary_format_frac"] == pytest.approx(2 / 8)
    assert summary["format_frac"] == pytest.approx(3 / 8)
    # Kalo: 1, 1/2, 0, 0 (no words); English: 1, 1, 0, 1 (the <think> block of a completion in
    # the wrong order is still its reasoning).
    assert summary["language/consistency"] == pytest.approx((1.5 + 3) / 8)
    assert summary["pass@1"] == 1.0 and REQUIRED_KEYS <= set(summary)
    for r in records:
        r["lang"] = None  # problems posed in no language: no language number
    assert "language/consistency" not in evaluate.summarize(records, 4)
    assert evaluate.summarize(records, 4)["summary_format_frac"] == pytest.approx(2 / 8)


def test_records_carry_their_problems_language():
    def judge(text, problem):
        return text == problem["answer"], text

    record = evaluate._problem_record({"id": "p", "prompt": "P", "answer": "1", "lang": "kalo"},
                                      ["1", "2"], [1, 1], [False, False], judge,
                                      rewards.equivalence("arithmetic"), 2)
    assert record["lang"] == "kalo" and record["pass@1"] == 0.5
    assert evaluate._problem_record({"prompt": "P", "answer": "1"}, ["1"], [1], [False], judge,
                                    rewards.equivalence("arithmetic"), 1)["lang"] is None


def scripted_sampler(tokenizer, problems, completions):
    """A stand-in for `sampling.generate` whose k samples of a prompt are the texts
    ``completions[i]`` of the problem i whose question the prompt holds; a text without
    "</answer>" ran out of tokens (truncated)."""
    def generate(cfg, params, prompts, rng, *, num_samples, max_new_tokens, pad_id, **kwargs):
        texts = []
        for prompt in prompts:
            (i,) = [i for i, p in enumerate(problems) if p["question"] in tokenizer.decode(prompt)]
            assert len(completions[i]) == num_samples
            texts += completions[i]
        ids = [tokenizer.encode(text) for text in texts]
        lengths = np.array([len(x) for x in ids], np.int32)
        assert 0 < lengths.min() and lengths.max() <= max_new_tokens
        tokens = np.full((len(ids), max_new_tokens), pad_id, np.int32)
        for row, x in zip(tokens, ids):
            row[:len(x)] = x
        return sampling.SampleOutput(
            tokens, np.zeros(tokens.shape, np.float32),
            np.arange(max_new_tokens) < lengths[:, None], lengths,
            np.array(["</answer>" not in text for text in texts]))
    return generate


def test_cons_at_k_per_problem_from_hand_worked_answers(monkeypatch, tokenizer, params):
    problems = [{**p, "prompt": r1_zero_prompt(p["question"])}
                for p in benchmarks_data.load("toy_arithmetic", n=3)]
    assert [p["answer"] for p in problems] == ["4", "680", "1309"]

    def answer(x):
        return f"<think> so </think> <answer> {x} </answer>"

    completions = [
        [answer(5), answer(4), answer(5), answer(4)],  # a 2-2 tie: the first group, 5, is wrong
        ["<think> 85 * 8 is", "...", "no answer", "<answer> </answer>"],  # nothing extracted
        [answer(1309), answer(1308), answer("1,309"), "<think> 984 + 325"],  # 1309 twice wins
    ]
    monkeypatch.setattr(sampling, "generate", scripted_sampler(tokenizer, problems, completions))
    # Two problems per sampler call: the second call holds the third problem and a padding copy.
    summary, records = evaluate.run(CFG, params, tokenizer, problems, k=4, max_new_tokens=16,
                                    reward=BENCHMARKS["toy_arithmetic"].reward,
                                    rng=jax.random.key(0), prompts_per_batch=2, pass_ks=(2,))
    assert [r["id"] for r in records] == [p["id"] for p in problems]
    assert [r["completions"] for r in records] == completions  # each problem's own rows
    assert [r["answers"] for r in records] == [["5", "4", "5", "4"], [None] * 4,
                                               ["1309", "1308", "1,309", None]]
    assert [r["correct"] for r in records] == [[False, True, False, True], [False] * 4,
                                               [True, False, True, False]]
    assert [(r["cons_answer"], r["cons_correct"]) for r in records] == [
        ("5", False), (None, False), ("1309", True)]
    assert [r["truncated"] for r in records] == [[False] * 4, [True, True, True, False],
                                                 [False, False, False, True]]
    expected = {"pass@1": 1 / 3, "cons@k": 1 / 3, "pass@k": 2 / 3,
                "pass@2": (5 / 6 + 0 + 5 / 6) / 3,  # 1 - C(2, 2) / C(4, 2) with 2 of 4 right
                "answered_frac": 7 / 12, "truncated_frac": 4 / 12}
    assert {key: summary[key] for key in expected} == pytest.approx(expected)


# --- Loaders and judges --------------------------------------------------------------------


def test_loaders_read_the_published_formats():
    math500 = benchmarks_data.load("math500", FIXTURES)
    assert [p["answer"] for p in math500] == ["\\frac{1}{2}", "4", "[0, 1)"]
    assert math500[0]["id"] == "test/prealgebra/1.json"
    aime24 = benchmarks_data.load("aime24", FIXTURES)  # parquet, integer Answer column
    assert [(p["id"], p["answer"]) for p in aime24] == [("2024-I-1", "80"), ("2024-II-4", "9")]
    aime25 = benchmarks_data.load("aime25", FIXTURES)  # a directory of two JSONL files
    assert [p["answer"] for p in aime25] == ["10", "32", "24"]
    assert len({p["id"] for p in aime25}) == 3
    assert [p["answer"] for p in benchmarks_data.load("gsm8k", FIXTURES)] == ["12", "2500"]
    countdown = benchmarks_data.load("countdown", FIXTURES)  # TinyZero's nested ground truth
    assert [(p["numbers"], p["target"]) for p in countdown] == [([3, 5, 7], 22),
                                                                ([2, 9, 10, 4], 72)]
    assert len(benchmarks_data.load("math500", FIXTURES, n=2)) == 2
    toy = benchmarks_data.load("toy_countdown", n=6, seed=1, levels=(1,))
    assert len(toy) == 6 and all(p["level"] == 1 for p in toy)
    assert toy == benchmarks_data.load("toy_countdown", n=6, seed=1, levels=(1,))


def test_toy_benchmarks_in_two_languages_are_the_same_problems():
    english = benchmarks_data.load("toy_sums", n=40, seed=1)
    bilingual = benchmarks_data.load("toy_sums", n=40, seed=1, languages=("en", "kalo"))
    assert [p["id"] for p in bilingual] == [p["id"] for p in english]
    assert {p["lang"] for p in bilingual} == {"en", "kalo"}
    config = cli.load_experiment(SMOKE_CONFIG, "smoke")
    config.eval.update(n_problems=8, languages=("en", "kalo"))
    expected = benchmarks_data.load(config.eval.benchmark, n=8, levels=config.data.levels,
                                    languages=("en", "kalo"))
    assert evaluate.held_out_problems(config, config.eval.benchmark) == [
        {**p, "prompt": r1_zero_prompt(p["question"])} for p in expected]


def test_a_missing_file_is_an_error_naming_it_and_the_format(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        benchmarks_data.load("aime24", tmp_path)
    assert str(tmp_path / "aime24.parquet") in str(e.value)
    assert "ID, Problem, Answer" in str(e.value)
    with pytest.raises(ValueError, match="R1JAX_DATA_DIR"):
        benchmarks_data.load("math500", None)
    (tmp_path / "math500.jsonl").write_text('{"problem": "x", "answer": "1"}\n{oops\n')
    with pytest.raises(ValueError, match="line 2"):
        benchmarks_data.load("math500", tmp_path)
    (tmp_path / "gsm8k.jsonl").write_text('{"question": "x"}\n')
    with pytest.raises(ValueError, match="'answer'"):
        benchmarks_data.load("gsm8k", tmp_path)


def test_gpqa_options_are_shuffled_with_a_fixed_seed_and_the_gold_letter_follows():
    problems = benchmarks_data.load("gpqa_diamond", FIXTURES)
    with open(os.path.join(FIXTURES, "gpqa_diamond.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(problems) == len(rows)
    for problem, row in zip(problems, rows):
        letter = problem["answer"]
        assert problem["options"][LETTERS.index(letter)] == row["Correct Answer"]
        assert sorted(problem["options"]) == sorted(
            [row["Correct Answer"]] + [row[f"Incorrect Answer {j}"] for j in (1, 2, 3)])
        assert f"\n{letter}) {row['Correct Answer']}" in problem["question"]
        right, answer = rewards.judge("choice", f"so \\boxed{{{letter}}}", problem)
        assert right and answer == letter
        wrong = LETTERS[(LETTERS.index(letter) + 1) % 4]
        assert rewards.judge("choice", f"<answer>({wrong})</answer>", problem) == (
            False, wrong)
    assert len({p["answer"] for p in problems}) > 1  # the released order (correct first) is gone
    assert problems == benchmarks_data.load("gpqa_diamond", FIXTURES)


def test_judges():
    math_judge = functools.partial(rewards.judge, BENCHMARKS["math500"].reward)
    assert math_judge("... \\boxed{0.5}", {"answer": "\\frac{1}{2}"}) == (True, "0.5")
    assert math_judge("no answer", {"answer": "1"}) == (False, None)
    arithmetic = functools.partial(rewards.judge, BENCHMARKS["toy_arithmetic"].reward)
    assert arithmetic("<think>x</think> <answer> 1,309 </answer>", {"answer": "1309"}) == (
        True, "1,309")
    countdown = functools.partial(rewards.judge, BENCHMARKS["countdown"].reward)
    problem = {"numbers": [3, 5, 7], "target": 22}
    assert countdown("<answer>3 * 5 + 7</answer>", problem) == (True, "3 * 5 + 7")
    assert countdown("<answer>3 * 7 + 5</answer>", problem)[0] is False


# --- Prompt templates ------------------------------------------------------------------------


def write_chat_config(directory):
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": CHAT_TEMPLATE, "bos_token": {"content": "<s>"}, "eos_token": "</s>"}))


def test_prompt_templates(tmp_path):
    assert templates.prompt_function("auto", tmp_path)[0] == "r1_zero"
    with pytest.raises(ValueError, match="chat template"):
        templates.prompt_function("r1_usage", tmp_path)
    write_chat_config(tmp_path)
    name, prompt = templates.prompt_function("auto", tmp_path)
    assert name == "r1_usage"
    assert prompt("What is 1+1?") == (
        "<s><|user|>What is 1+1?\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.\n<|assistant|><think>\n")
    # DeepSeek-R1-Distill's template already ends the generation prompt with <think>\n.
    (tmp_path / "chat_template.jinja").write_text("{{ messages[0]['content'] }}{{ '|<think>\\n' }}")
    assert templates.prompt_function("r1_usage", tmp_path)[1]("Q").endswith("boxed{}.|<think>\n")


# --- Running a model -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    """A SentencePiece tokenizer trained on the toy world's corpus, as r1jax.main trains it."""
    prefix = tmp_path_factory.mktemp("tok") / "tokenizer"
    tokenizers.train_sentencepiece(corpus_documents(0, 200, CorpusConfig()), prefix, 400)
    return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def tokenizer(tokenizer_file):
    tok = tokenizers.load_tokenizer(tokenizer_file)
    assert tok.vocab_size <= CFG.vocab_size
    return tok


@pytest.fixture(scope="module")
def params():
    return models.init(CFG, jax.random.key(0))


def test_all_samples_of_a_batch_of_problems_go_to_the_sampler_in_one_call(
        monkeypatch, tokenizer, params):
    calls, outputs = [], []
    generate = sampling.generate

    def counting_generate(cfg, params, prompts, rng, **kwargs):
        calls.append((len(prompts), kwargs["num_samples"]))
        outputs.append(generate(cfg, params, prompts, rng, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(sampling, "generate", counting_generate)
    # The shapes of the workdir test's command line (8 devices, k=2, 8 tokens): one compilation.
    mesh = make_mesh()
    params = models.shard_params(CFG, params, mesh)
    problems = [{**p, "prompt": r1_zero_prompt(p["question"])}
                for p in benchmarks_data.load("toy_arithmetic", n=10)]
    kwargs = {"k": 2, "max_new_tokens": 8, "reward": BENCHMARKS["toy_arithmetic"].reward,
              "prompts_per_batch": 5, "mesh": mesh,
              "stop": stopping.stop_condition(tokenizer, ("</answer>",))}
    summary, records = evaluate.run(CFG, params, tokenizer, problems, rng=jax.random.key(0),
                                    **kwargs)
    # 5 prompts per call, rounded up to the 8 data-parallel devices: 2 calls, the last padded.
    assert calls == [(8, 2)] * 2
    assert [r["id"] for r in records] == [p["id"] for p in problems]
    assert all(len(r["completions"]) == 2 and len(r["lengths"]) == 2 for r in records)
    assert summary["n_problems"] == 10 and summary["k"] == 2
    # Truncated: 8 tokens with neither eos nor "</answer>" among them (the padding rows dropped).
    tokens, lengths = (np.concatenate([np.asarray(getattr(out, name)) for out in outputs[:2]])
                       [:10 * 2] for name in ("tokens", "lengths"))
    expected = [n == 8 and tokenizer.eos_id not in row[:n] and "</answer>" not in
                tokenizer.decode(row[:n]) for row, n in zip(tokens, lengths)]
    assert 0 < sum(expected) and [t for r in records for t in r["truncated"]] == expected
    assert summary["truncated_frac"] == pytest.approx(np.mean(expected))

    hook = evaluate.training_hook(CFG, tokenizer, problems, **kwargs)
    metrics = hook(7, params)
    assert len(calls) == 4 and metrics["eval/n_problems"] == 10
    assert {k: v for k, v in metrics.items() if "_s" not in k} == {
        k: v for k, v in hook(7, params).items() if "_s" not in k}  # the rng follows the step


def test_the_experiment_hook_evaluates_a_step_once(monkeypatch, tokenizer, params):
    calls = []
    generate = sampling.generate
    monkeypatch.setattr(sampling, "generate", lambda *args, **kwargs: calls.append(args[3])
                        or generate(*args, **kwargs))
    config = cli.load_experiment(os.path.join(REPO, "experiments", "r1_zero_toy.py"), "smoke")
    config.eval.update(n_problems=2, k=1, max_new_tokens=4)
    hook = evaluate.hook_from_config(config, CFG, tokenizer, None)
    first = hook(5, params)
    assert len(calls) == 1 and hook(5, params) is first  # the final evaluation of the last step
    assert hook(6, params) is not first and len(calls) == 2


def check_outputs(out, capsys, benchmark, n_problems, k):
    summary = json.loads(out.read_text())
    assert REQUIRED_KEYS <= set(summary)
    assert summary["benchmark"] == benchmark
    assert (summary["n_problems"], summary["k"]) == (n_problems, k)
    records = [json.loads(line) for line in out.with_suffix(".problems.jsonl").open()]
    assert len(records) == n_problems and all(len(r["completions"]) == k for r in records)
    table = capsys.readouterr().out
    assert "| metric | value |" in table and f"| pass@1 | {summary['pass@1']:.4f} |" in table
    return summary


def test_cli_on_a_tiny_hf_checkpoint(tmp_path, tokenizer_file, tokenizer, params, capsys,
                                     monkeypatch):
    checkpoint = tmp_path / "hf"
    models.save_hf(CFG, params, str(checkpoint))
    (checkpoint / "tokenizer.model").write_bytes(tokenizer_file.read_bytes())
    write_chat_config(checkpoint)
    # Scripted completions, so the scores are known: golds 1/2, 4 and [0, 1).
    completions = [["so <answer> \\boxed{0.5} </answer>", "<answer> \\boxed{3} </answer>"],
                   ["<answer> \\boxed{5} </answer>", "no answer"],
                   ["<answer> \\boxed{[0, 1)} </answer>", "<answer> \\boxed{[0,1)} </answer>"]]
    monkeypatch.setattr(sampling, "generate", scripted_sampler(
        tokenizer, benchmarks_data.load("math500", FIXTURES), completions))
    out = tmp_path / "results" / "math500.json"
    summary = evaluate.main([f"--checkpoint={checkpoint}", "--benchmark=math500",
                             f"--data_dir={FIXTURES}", "--k=2", "--max_new_tokens=32",
                             f"--out={out}", "--pass_k=1"])
    assert summary["template"] == "r1_usage" and summary["max_new_tokens"] == 32
    assert check_outputs(out, capsys, "math500", 3, 2) == summary
    # pass@1 (1/2 + 0 + 1) / 3; the 0.5-3 tie goes to 0.5, sampled first: cons@2 2/3.
    expected = {"pass@1": 0.5, "cons@k": 2 / 3, "pass@k": 2 / 3, "answered_frac": 5 / 6}
    assert {key: summary[key] for key in expected} == pytest.approx(expected)


def make_workdir(workdir, params, tokenizer_file):
    """An r1jax workdir as `python -m r1jax.main --config=experiments/r1_zero_toy.py:smoke` leaves
    it: config.json, tokenizer.model, checkpoints/<step> with policy, reference and optimizer."""
    config = main.load_experiment(SMOKE_CONFIG, "smoke")
    config.model.update(name="tiny", vocab_size=CFG.vocab_size)
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(config.to_dict(), default=str))
    (workdir / "tokenizer.model").write_bytes(tokenizer_file.read_bytes())
    state = {"params": params, "ref_params": jax.tree.map(lambda x: x * 0, params),
             "opt_state": make_optimizer(1e-3, 10).init(params)}
    ckpt = Checkpointer(str(workdir))
    ckpt.save(2, state, {"step": 2, "data": {}, "nonfinite_in_row": 0})
    ckpt.close()


def test_cli_on_an_r1jax_workdir(tmp_path, tokenizer_file, params, capsys):
    workdir = tmp_path / "run"
    make_workdir(workdir, params, tokenizer_file)
    cfg, restored = policy.load_policy(workdir)
    tokenizer = tokenizers.load_tokenizer(policy.tokenizer_source(workdir))
    assert cfg == CFG and tokenizer.vocab_size <= cfg.vocab_size
    jax.tree.map(np.testing.assert_array_equal, restored, params)  # the policy, not the reference
    out = tmp_path / "toy.json"
    summary = evaluate.main([f"--checkpoint={workdir}", "--benchmark=toy_arithmetic",
                             "--n_problems=5", "--k=2", "--max_new_tokens=8", f"--out={out}"])
    assert summary["template"] == "r1_zero"
    check_outputs(out, capsys, "toy_arithmetic", 5, 2)


def test_cli_errors_are_one_sentence(tmp_path):
    with pytest.raises(SystemExit, match="no data for benchmark 'gsm8k'"):
        evaluate.main([f"--checkpoint={tmp_path}", "--benchmark=gsm8k", f"--data_dir={tmp_path}",
                       f"--out={tmp_path / 'x.json'}"])
    with pytest.raises(SystemExit, match="neither an r1jax workdir"):
        evaluate.main([f"--checkpoint={tmp_path}", "--benchmark=gsm8k",
                       f"--data_dir={FIXTURES}", f"--out={tmp_path / 'x.json'}"])
    with pytest.raises(SystemExit, match="--cpu_devices must be at least 1, got 0"):
        evaluate.main([f"--checkpoint={tmp_path}", "--benchmark=gsm8k", "--cpu_devices=0",
                       f"--data_dir={FIXTURES}", f"--out={tmp_path / 'x.json'}"])
