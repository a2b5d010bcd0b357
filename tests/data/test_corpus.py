import dataclasses
import hashlib
import random
import re
from fractions import Fraction

import numpy as np
import pytest

from r1jax import rewards, tokenizers
from r1jax.data import corpus, tasks
from r1jax.data.languages import EN, KALO, is_kalo_word, translate
from r1jax.metrics import REFLECTIVE_WORDS
from r1jax.templates import r1_zero_prompt

SLIPS = r"(Wait|But that|However, that)"
N = 4000
ALL_TASKS = corpus.CorpusConfig(tasks=tasks.TASKS)


def parse(doc):
    """(example dict rebuilt from the document's question, completion)."""
    prompt, completion = doc.split(" Assistant:")
    question = prompt.split("User: ")[1][:-1]
    assert r1_zero_prompt(question).endswith(prompt + " Assistant:")
    assert prompt.startswith(("A conversation", "User: "))
    if m := re.fullmatch(r"Compute (\d+) ([-+*]) (\d+)", question):
        a, op, b = int(m[1]), m[2], int(m[3])
        problem = tasks.Arithmetic(a, op, b, level=0)
        example = {"task": "arithmetic", "answer": str(problem.result)}
    elif question.startswith("Add "):
        problem = tasks.Sums(tuple(int(t) for t in question[4:].split(" + ")), level=0)
        example = {"task": "sums", "answer": str(problem.result)}
    else:
        numbers, target = re.fullmatch(
            r"Using the numbers \[(.*)\], create an equation that equals (\d+)\. .*", question
        ).groups()
        numbers = tuple(int(n) for n in numbers.split(", "))
        problem = tasks.Countdown(numbers, int(target), solution=None, level=0)
        example = {"task": "countdown", "numbers": list(numbers), "target": int(target)}
    return problem, example, completion


def score(example, completion):
    return rewards.get(tasks.REWARDS[example["task"]])([completion], [example])[0]


def is_long(completion):
    return "The answer is easy." not in completion


@pytest.fixture(scope="module")
def docs():
    return list(corpus.corpus_documents(seed=0, n=N, config=ALL_TASKS))


def test_documents_are_deterministic_single_lines_in_the_r1_zero_format(docs):
    assert docs[:50] == list(corpus.corpus_documents(seed=0, n=50, config=ALL_TASKS))
    assert docs[:50] != list(corpus.corpus_documents(seed=1, n=50, config=ALL_TASKS))
    assert not any("\n" in d for d in docs)
    completions = [parse(d)[2] for d in docs]
    np.testing.assert_array_equal(rewards.format_reward(completions), 1.0)


def test_documents_come_from_the_train_split_only(docs):
    assert {tasks.split_of(parse(d)[0]) for d in docs} == {"train"}
    assert {parse(d)[1]["task"] for d in docs} == set(tasks.TASKS)


def test_template_fraction_long_fractions_and_split_prompt():
    config = corpus.CorpusConfig(tasks=tasks.TASKS, template_fraction=0.2, long_fraction=0.1,
                                 untemplated_long_fraction=0.7)
    docs = list(corpus.corpus_documents(0, 4000, config))
    templated = np.array([d.startswith(r1_zero_prompt("")[:40]) for d in docs])
    long = np.array([is_long(corpus.split_prompt(d)[1]) for d in docs])
    assert abs(templated.mean() - 0.2) < 0.03
    assert abs(long[templated].mean() - 0.1) < 0.04 and abs(long[~templated].mean() - 0.7) < 0.03
    assert all(d.startswith("User: ") for d in docs if not d.startswith("A conversation"))
    for doc in docs[:200]:
        prompt, completion = corpus.split_prompt(doc)
        assert prompt + completion == doc
        assert prompt.endswith("Assistant:") and completion.startswith(" <think> ")
        parse(doc)


def test_long_fraction_and_every_long_document_ends_right(docs):
    long = [parse(d) for d in docs if is_long(parse(d)[2])]
    assert abs(len(long) / N - corpus.CorpusConfig().long_fraction) < 0.02
    assert all(score(example, completion) == 1.0 for _, example, completion in long)


def test_short_answers_right_at_level_1_and_mostly_wrong_at_level_4():
    config = corpus.CorpusConfig(level_mix=(1, 0, 0, 0), long_fraction=0.0)
    parsed = [parse(d) for d in corpus.corpus_documents(0, 300, config)]
    assert all(score(e, c) == 1.0 for _, e, c in parsed)
    config = corpus.CorpusConfig(level_mix=(0, 0, 0, 1), long_fraction=0.0)
    parsed = [parse(d) for d in corpus.corpus_documents(0, 1000, config)]
    accuracy = np.mean([score(e, c) == 1.0 for _, e, c in parsed])
    assert abs(accuracy - config.short_accuracy[3]) < 0.04
    # Wrong countdown answers still use every number once (reward 0.1, not 0).
    assert {score(e, c) for _, e, c in parsed if e["task"] == "countdown"} == {0.1, 1.0}


def words(text):
    return set(re.findall(r"[a-z]+", text.lower()))


def test_reflective_words_only_in_long_work_and_all_ten_used(docs):
    long_words = set()
    for d in docs:
        _, _, completion = parse(d)
        found = words(completion) & set(REFLECTIVE_WORDS)
        if is_long(completion):
            assert found  # every long work checks itself
            long_words |= found
        else:
            assert not found
        assert not words(d.split(" Assistant:")[0]) & set(REFLECTIVE_WORDS)
    assert long_words == set(REFLECTIVE_WORDS)


def _value(expression):
    return eval(re.sub(r"\d+", lambda m: f"Fraction({m[0]})", expression), {"Fraction": Fraction})


def test_every_step_is_true_except_the_slips_that_are_then_corrected():
    config = corpus.CorpusConfig(tasks=tasks.TASKS, long_fraction=1.0, slip_fraction=0.5)
    slips = 0
    for doc in corpus.corpus_documents(0, 1000, config):
        _, example, completion = parse(doc)
        statements = list(re.finditer(r"(\(?\d[\d+\-*/() ]*) = (\d+)", completion))
        for m, following in zip(statements, [*statements[1:], None], strict=True):
            between = completion[m.end() : following.start() if following else None]
            slipped = re.search(SLIPS, between) is not None
            assert (_value(m[1]) == int(m[2])) != slipped, (m[0], doc)
            slips += slipped
        if example["task"] == "arithmetic":  # the written digits (slips dropped) make the answer
            writes = re.findall(r"write (\d+)(?:[^.]*)\.( " + SLIPS + ")?", completion)
            digits = [w for w, slip, _ in writes if not slip]
            assert digits[-1] + "".join(reversed(digits[:-1])) == example["answer"].zfill(
                len(digits[-1]) + len(digits) - 1
            )
    assert 400 < slips < 600


def test_long_work_fits_a_tiny_model(tmp_path):
    tok = tokenizers.train_sentencepiece(corpus.corpus_documents(0, 2000), tmp_path / "t", 512)
    config = corpus.CorpusConfig(long_fraction=0.5)
    lengths = {True: [], False: []}
    for doc in corpus.corpus_documents(1, 1000, config):
        prompt, completion = doc.split(" Assistant:")
        lengths[is_long(completion)].append(len(tok.encode(completion)))
        # RL samples after the prompt's tokens: they must be the document's own first tokens.
        assert tok.encode(prompt + " Assistant:") + tok.encode(completion) == tok.encode(doc)
    assert max(lengths[False]) <= 32
    assert 40 <= np.mean(lengths[True]) <= 130 and max(lengths[True]) <= 220


@pytest.mark.parametrize(
    "bad",
    [{"tasks": ()}, {"tasks": ("sudoku",)}, {"level_mix": (1, 1)}, {"short_accuracy": (1,)},
     {"long_fraction": 1.5}, {"template_fraction": -0.1}, {"short_accuracy": (1, 1, 1, 2)}],
)
def test_bad_config_is_named(bad):
    with pytest.raises(ValueError, match=r"tasks|level|fraction|accuracy"):
        corpus.CorpusConfig(**bad)


def test_write_corpus_one_document_per_line(tmp_path):
    corpus.write_corpus(tmp_path / "c.txt", seed=3, n=20)
    assert (tmp_path / "c.txt").read_text().splitlines() == list(corpus.corpus_documents(3, 20))


# The reference run's corpus (experiments/aha_tiny.py's corpus section) and the default one.
AHA_TINY = corpus.CorpusConfig(tasks=("sums",), level_mix=(0.5, 0.5, 0.0, 0.0), long_fraction=0.1,
                               untemplated_long_fraction=0.7, slip_fraction=0.3,
                               short_accuracy=(0.25, 0.15, 0.1, 0.05), template_fraction=0.2)
BILINGUAL = corpus.CorpusConfig(tasks=tasks.TASKS, long_fraction=0.5, slip_fraction=0.5,
                                languages=(EN, KALO))
DOC = re.compile(r"(.*User: )(.*)\. Assistant: <think> (.*) </think> <answer> (.*) </answer>")


def language_of(question):
    return KALO if is_kalo_word(question.split()[0]) else EN


@pytest.mark.parametrize("config, digest", [
    (corpus.CorpusConfig(), "ead8243b8e013075eea87e7571c8efa1d89afc3673bc8685025e4f3061a2c049"),
    (AHA_TINY, "a36b04fcf3228236fdba144e3edc703f0840fd29e61e1283db3ab3d5d90c9466")])
def test_english_alone_is_the_corpus_as_it_was_before_languages(config, digest):
    """sha256 of the first 1000 documents as the code before languages wrote them: one random
    number more or less anywhere would change them."""
    docs = list(corpus.corpus_documents(0, 1000, config))
    assert hashlib.sha256("\n".join(docs).encode()).hexdigest() == digest
    explicit = dataclasses.replace(config, languages=(EN,), mixing=0.0)
    assert list(corpus.corpus_documents(0, 1000, explicit)) == docs


def test_a_bilingual_corpus_is_the_english_one_each_document_in_its_language():
    english = corpus.corpus_documents(0, 2000, dataclasses.replace(BILINGUAL, languages=(EN,)))
    langs = []
    for en, doc in zip(english, corpus.corpus_documents(0, 2000, BILINGUAL), strict=True):
        head, question, think, answer = DOC.fullmatch(en).groups()
        lang = language_of(DOC.fullmatch(doc)[2])
        assert doc == (f"{head}{translate(question, lang)}. Assistant: <think> "
                       f"{translate(think, lang)} </think> <answer> {answer} </answer>")
        langs.append(lang)
    # Uniform: the Kalo share of 2000 draws is 1/2 within 4 standard deviations (0.011 each).
    assert abs(np.mean(np.array(langs) == KALO) - 0.5) < 4 * (0.25 / 2000) ** 0.5


def test_without_mixing_the_reasoning_is_in_the_questions_language_alone():
    for doc in corpus.corpus_documents(1, 400, BILINGUAL):
        _, question, think, _ = DOC.fullmatch(doc).groups()
        lang = language_of(question)
        other = KALO if lang == EN else EN
        assert rewards.language_consistency([think], lang)[0] == 1.0
        assert rewards.language_consistency([think], other)[0] < 0.05


def test_mixing_writes_that_share_of_the_phrases_in_the_other_language():
    """Each phrase (a sentence: its words sit between . and :) stays in the question's language
    with probability 1 - mixing, so a document whose phrases hold w_i of its W words has expected
    share 1 - mixing and variance mixing (1 - mixing) sum(w_i^2) / W^2; the mean over documents is
    checked to 4 of its standard deviations."""
    mixing = 0.3
    config = dataclasses.replace(BILINGUAL, long_fraction=1.0, mixing=mixing)
    shares, variance = [], 0.0
    for doc in corpus.corpus_documents(2, 600, config):
        _, question, think, _ = DOC.fullmatch(doc).groups()
        phrases = [p.split() for p in re.split(r"[.:]", re.sub(r"[^A-Za-z.: ]", "", think))]
        phrases = [p for p in phrases if p]
        assert all(len({is_kalo_word(w) for w in p}) == 1 for p in phrases)  # one language each
        w = np.array([len(p) for p in phrases])
        variance += mixing * (1 - mixing) * (w**2).sum() / w.sum() ** 2
        shares.append(rewards.language_consistency([think], language_of(question))[0])
    tolerance = 4 * variance**0.5 / len(shares)
    assert abs(np.mean(shares) - (1 - mixing)) < tolerance
    assert 0.01 < tolerance < 0.05


@pytest.mark.parametrize("bad", [{"languages": ()}, {"languages": ("fr",)},
                                 {"languages": (EN, EN)}, {"mixing": 0.3},
                                 {"languages": (EN, KALO), "mixing": 1.5}])
def test_bad_languages_or_mixing_are_named(bad):
    with pytest.raises(ValueError, match=r"CorpusConfig: languages|mixing=.* needs two languages"):
        corpus.CorpusConfig(**bad)


# --- R1's cold-start completions ---------------------------------------------------------------

READABLE = re.compile(r" <think> (.*) </think> (.*) <answer> (.*) </answer>")


def test_readable_completions_are_long_work_in_one_language_a_summary_and_the_answer():
    problem_rng, slips = random.Random(0), []
    for i in range(600):
        task, level = tasks.TASKS[i % 3], tasks.LEVELS[i % 4]
        p = tasks.sample_problem(task, "train", level, problem_rng)
        example = p.example(f"test/{i}")
        english = corpus.readable_completion(p, EN, random.Random(i), slip_fraction=0.3)
        kalo = corpus.readable_completion(p, KALO, random.Random(i), slip_fraction=0.3)
        for lang, completion in ((EN, english), (KALO, kalo)):
            assert rewards.get("summary_format")([completion], [example])[0] == 1.0
            assert score(example, completion) == 1.0
            think, summary, answer = READABLE.fullmatch(completion).groups()
            assert rewards.language_consistency([think], lang)[0] == 1.0  # no mixing
            # The summary restates the solution as an equation, without words.
            equation, value = re.fullmatch(r"([\d+\-*/() ]+) = (\d+)\.", summary).groups()
            assert _value(equation) == int(value) == _value(example["answer"])
            if task != "countdown":
                assert re.findall(r"\d+", equation) == re.findall(r"\d+", example["question"])
        assert READABLE.fullmatch(kalo)[1] == translate(READABLE.fullmatch(english)[1], KALO)
        slips.append(re.search(SLIPS, english) is not None)
    assert abs(np.mean(slips) - 0.3) < 4 * (0.3 * 0.7 / 600) ** 0.5
