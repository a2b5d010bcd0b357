"""RL prompt sources: each format's gold answers, malformed rows named by file and line, tfds
sources, the templates, the reward field, an exactly resumable iterator, the toy world kept when
no source is configured, and the data layer not importing the rewards."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow_datasets as tfds

from r1jax import cli, policy, rl, templates, toy
from r1jax.data import pipeline, prompts
from r1jax.data.benchmarks import read_records
from r1jax.data.languages import translate

EXPERIMENTS = Path(__file__).parent.parent.parent / "experiments"
COUNTDOWN_QUESTION = ("Using the numbers [3, 5, 7], create an equation that equals 22. Use +, -, "
                      "* or / and each number exactly once")


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_parquet(path: Path, rows) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def golds(spec):
    return [(e["question"], e["answer"]) for e in prompts.load_source(spec)]


def test_math_gold_is_the_last_balanced_box_or_the_answer_column(tmp_path):
    path = write_jsonl(tmp_path / "math.jsonl", [
        {"problem": "Half?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "unique_id": "a/1"},
        {"problem": "Two?", "solution": "First \\boxed{3}, then \\boxed{x^{2}+1}."},
        {"problem": "Given?", "solution": "No box here.", "answer": "7"}])
    examples = prompts.load_source({"path": path, "format": "math", "reward": "accuracy"})
    assert [(e["id"], e["question"], e["answer"]) for e in examples] == [
        ("a/1", "Half?", "\\frac{1}{2}"), ("math/1", "Two?", "x^{2}+1"), ("math/2", "Given?", "7")]


def test_gsm8k_deepscaler_and_prompt_golds(tmp_path):
    gsm8k = write_parquet(tmp_path / "gsm8k.parquet", [
        {"question": "How many?", "answer": "3 * 411 = 1233 +1\n#### 1,234"},
        {"question": "And now?", "answer": "#### 5 is wrong\nso\n#### 42"}])
    assert golds({"path": gsm8k, "format": "gsm8k", "reward": "accuracy"}) == [
        ("How many?", "1234"), ("And now?", "42")]
    deepscaler = write_jsonl(tmp_path / "deepscaler.jsonl", [
        {"problem": "Find $x$.", "answer": "\\sqrt{2}", "solution": "..."}])
    assert golds({"path": deepscaler, "format": "deepscaler", "reward": "accuracy"}) == [
        ("Find $x$.", "\\sqrt{2}")]
    plain = tmp_path / "plain.csv"
    plain.write_text("prompt,answer\nWhat is 2 + 2?,4\n")
    assert golds({"path": plain, "format": "prompt", "reward": "accuracy"}) == [
        ("What is 2 + 2?", "4")]


def test_countdown_raw_and_tinyzero_rows_in_the_benchmark_wording(tmp_path):
    write_jsonl(tmp_path / "a_raw.jsonl", [{"nums": [3, 5, 7], "target": 22}])
    write_parquet(tmp_path / "b_tinyzero.parquet", [
        {"prompt": [{"role": "user", "content": "..."}],
         "reward_model": {"ground_truth": {"numbers": [3, 5, 7], "target": 22}}}])
    examples = prompts.load_source({"path": tmp_path, "format": "countdown",
                                    "reward": "countdown"})
    assert examples == [{"id": f"{stem}/0", "question": COUNTDOWN_QUESTION, "answer": "",
                         "numbers": [3, 5, 7], "target": 22, "reward": "countdown"}
                        for stem in ("a_raw", "b_tinyzero")]


@pytest.mark.parametrize("format_, rows, message", [
    ("math", [{"problem": "x", "solution": "\\boxed{1}"}, {"solution": "\\boxed{2}"}],
     "line 3: no column 'problem'"),
    ("math", [{"problem": "x", "solution": "\\boxed{1}"}, {"problem": "y", "solution": "2"}],
     "line 3: the solution has no \\\\boxed"),
    ("math", [{"problem": "x", "solution": "\\boxed{1}"}, {"problem": "y", "solution": "\\boxed{"}],
     "line 3: the solution has no \\\\boxed"),
    ("gsm8k", [{"question": "q", "answer": "#### 1"}, {"question": "q", "answer": "it is 4"}],
     "line 3: the answer has no '#### <number>' line"),
    ("gsm8k", [{"question": "q", "answer": "#### 1"}, {"question": "q", "answer": "#### "}],
     "line 3: the answer has no '#### <number>' line"),
    ("deepscaler", [{"problem": "p", "answer": "1"}, {"problem": "p", "answer": " "}],
     "line 3: column 'answer' is empty"),
    ("countdown", [{"nums": [1, 2], "target": 3}, {"nums": [1, "x"], "target": 3}],
     "line 3: invalid literal for int"),
    ("countdown", [{"nums": [1, 2], "target": 3}, {"target": 3}],
     "line 3: no column 'nums' or 'numbers'"),
    ("prompt", [{"prompt": "p", "answer": "1"}, [1, 2]], "line 3: a JSON list, not an object"),
])
def test_a_malformed_row_is_an_error_naming_file_and_line(tmp_path, format_, rows, message):
    path = tmp_path / "source.jsonl"  # a blank first line: the second row is on line 3
    path.write_text("\n" + "".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}, {message}"):
        prompts.load_source({"path": path, "format": format_, "reward": "accuracy"})


def test_json_and_parquet_errors_name_the_line_and_row(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"prompt": "p", "answer": "1"}\n{"prompt": \n')
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}, line 2: not JSON"):
        prompts.load_source({"path": path, "format": "prompt", "reward": "accuracy"})
    path = write_parquet(tmp_path / "gsm8k.parquet", [{"question": "q", "answer": "#### 1"}] * 2
                         + [{"question": "q", "answer": "no marker"}])
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}, row 3: the answer has no"):
        prompts.load_source({"path": path, "format": "gsm8k", "reward": "accuracy"})


def test_bad_specs_are_errors_naming_what_is_wrong(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "answer": "1"}])
    cases = [({"path": path, "format": "alpaca", "reward": "accuracy"}, "unknown format 'alpaca'"),
             ({"path": path, "format": "prompt"}, r"missing \['reward'\]"),
             ({"path": path, "format": "prompt", "reward": "accuracy", "split": "train"},
              r"unknown \['split'\]")]
    for spec, message in cases:
        with pytest.raises(ValueError, match=message):
            prompts.load_source(spec)
    with pytest.raises(FileNotFoundError, match="no_such.jsonl: no such file"):
        prompts.load_source({"path": tmp_path / "no_such.jsonl", "format": "prompt",
                             "reward": "accuracy"})
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="holds no rows"):
        prompts.load_source({"path": tmp_path / "empty.jsonl", "format": "prompt",
                             "reward": "accuracy"})


def test_a_directory_is_read_in_name_order_and_n_keeps_the_first_rows(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"prompt": "b0", "answer": "1"}])
    write_jsonl(tmp_path / "a.jsonl", [{"prompt": "a0", "answer": "1"}, {"prompt": "a1",
                                                                         "answer": "1"}])
    (tmp_path / "notes.txt").write_text("not a source")
    spec = {"path": tmp_path, "format": "prompt", "reward": "accuracy"}
    assert [e["id"] for e in prompts.load_source(spec)] == ["a/0", "a/1", "b/0"]
    assert [e["question"] for e in prompts.load_source({**spec, "n": 2})] == ["a0", "a1"]


@dataclasses.dataclass
class RowsConfig(tfds.core.BuilderConfig):
    file: str = ""


class PromptRows(tfds.core.GeneratorBasedBuilder):
    """A JSONL file as a tfds dataset with its columns (str, int64 or a sequence of int64),
    written as tests/test_benchmarks_tfds.py writes published rows."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None

    def _rows(self):
        return read_records(Path(self.builder_config.file))

    def _info(self):
        kinds = {str: tfds.features.Text(), int: np.int64, list: tfds.features.Sequence(np.int64)}
        features = {k: kinds[type(v)] for k, v in self._rows()[0].items()}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features),
                                     disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield from enumerate(self._rows())


def test_a_tfds_source_is_parsed_as_its_file_is(tmp_path):
    rows = {"gsm8k": [{"question": "How many?", "answer": "so\n#### 1,234"}] * 3,
            "countdown": [{"nums": [3, 5, 7], "target": 22}]}
    for name, table in rows.items():
        file = write_jsonl(tmp_path / f"{name}.jsonl", table)
        PromptRows(config=RowsConfig(name=name, file=str(file)),
                   data_dir=os.fspath(tmp_path / "tfds"),
                   file_format="array_record").download_and_prepare()
    spec = {"path": "tfds:prompt_rows/gsm8k", "format": "gsm8k", "reward": "accuracy",
            "data_dir": str(tmp_path / "tfds"), "n": 2}
    assert prompts.load_source(spec) == [
        {"id": f"gsm8k:train/{i}", "question": "How many?", "answer": "1234", "reward": "accuracy"}
        for i in (0, 1)]
    countdown = {**spec, "path": "tfds:prompt_rows/countdown:train", "format": "countdown"}
    assert [(e["question"], e["numbers"], e["target"])
            for e in prompts.load_source(countdown)] == [(COUNTDOWN_QUESTION, [3, 5, 7], 22)]
    with pytest.raises(FileNotFoundError, match="no data for prompt source 'tfds:no_such': no "
                                                "prepared tfds dataset 'no_such'"):
        prompts.load_source({**spec, "path": "tfds:no_such"})
    assert "tensorflow" not in sys.modules


def toy_config(**data):
    """The base experiment config with a tiny toy world, and `data` in its data section."""
    config = cli.load_experiment(str(EXPERIMENTS / "common.py"))
    config.data.update(train_size=40, **data)
    config.rewards = ml_collections.ConfigDict({"accuracy": 1.0, "countdown": 1.0})
    return config


def batches_for(config, batch_size, seed):
    """The RL job's prompt batches of ``config``."""
    return iter(pipeline.prompt_dataset(prompts.prompt_examples(config), batch_size, seed))


def test_mixed_sources_record_their_reward_and_resume_exactly(tmp_path):
    math = write_jsonl(tmp_path / "math.jsonl", [
        {"problem": f"P{i}", "solution": f"\\boxed{{{i}}}"} for i in range(7)])
    countdown = write_parquet(tmp_path / "countdown.parquet", [{"nums": [3, 5, 7], "target": 22}])
    config = toy_config(sources=[
        {"path": str(math), "format": "math", "reward": "accuracy"},
        {"path": str(countdown), "format": "countdown", "reward": "countdown"}])
    batches = batches_for(config, batch_size=3, seed=5)
    seen = [next(batches) for _ in range(2)]
    state = batches.get_state()
    expected = [next(batches) for _ in range(4)]
    resumed = batches_for(config, batch_size=3, seed=5)
    resumed.set_state(state)
    assert [next(resumed) for _ in range(4)] == expected
    examples = {e["id"]: e for batch in seen + expected for e in batch}
    assert len(examples) == 8  # 6 batches of 3 from 8 examples: every one seen
    assert {e["reward"] for i, e in examples.items() if i.startswith("math/")} == {"accuracy"}
    assert examples["countdown/0"]["reward"] == "countdown"
    assert all(e["prompt"] == templates.r1_zero_prompt(e["question"]) for e in examples.values())


def test_a_source_reward_must_be_a_configured_term(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "answer": "1"}])
    config = toy_config(sources=[{"path": str(path), "format": "prompt",
                                            "reward": "acuracy"}])
    with pytest.raises(ValueError, match="reward 'acuracy' is not in config.rewards"):
        batches_for(config, 2, 0)


def test_templates_r1_zero_by_default_and_the_chat_template_for_r1_usage(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "What is 2 + 2?", "answer": "4"}])
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    (checkpoint / "chat_template.jinja").write_text(
        "{% for m in messages %}<user>{{ m['content'] }}{% endfor %}<bot>")
    config = toy_config(sources=[{"path": str(path), "format": "prompt",
                                            "reward": "accuracy"}])
    prompt = next(batches_for(config, 2, 0))[0]["prompt"]
    assert prompt == templates.r1_zero_prompt("What is 2 + 2?")
    config.data.template = "auto"  # the toy world's tokenizer: no chat template
    assert next(batches_for(config, 2, 0))[0]["prompt"] == prompt
    config.tokenizer = str(checkpoint)
    for template in ("auto", "r1_usage"):
        config.data.template = template
        assert next(batches_for(config, 2, 0))[0]["prompt"] == (
            "<user>What is 2 + 2?\n" + templates.R1_USAGE_INSTRUCTION + "<bot><think>\n")
    config.tokenizer = ""
    with pytest.raises(ValueError, match="template 'r1_usage' needs a checkpoint's chat template"):
        batches_for(config, 2, 0)


def test_without_sources_the_toy_world_is_unchanged(tmp_path):
    config = toy_config()
    assert prompts.prompt_examples(config) == toy.train_examples(config.data)


def test_the_rl_job_stops_at_a_malformed_row_before_loading_a_model(tmp_path, monkeypatch):
    path = tmp_path / "gsm8k.jsonl"
    path.write_text('{"question": "q", "answer": "no final line"}\n')
    config = toy_config(sources=[{"path": str(path), "format": "gsm8k",
                                            "reward": "accuracy"}], tokenizer_documents=50)
    monkeypatch.setattr(policy, "load_policy", lambda *args, **kwargs: pytest.fail("loaded"))
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}, line 1: the answer has no"):
        rl.job(config, str(tmp_path / "run"))


def test_toy_prompts_are_posed_in_the_configured_languages():
    english = toy.train_examples(toy_config().data)
    batch = toy.train_examples(toy_config(languages=("en", "kalo")).data)
    assert not any("lang" in e for e in english) and {e["lang"] for e in batch} == {"en", "kalo"}
    for en, ex in zip(english, batch, strict=True):
        assert ex["id"] == en["id"] and ex["answer"] == en["answer"]
        assert ex["prompt"] == templates.r1_zero_prompt(translate(en["question"], ex["lang"]))


def test_the_rl_job_stops_at_a_reward_field_the_data_lacks_before_loading_a_model(tmp_path,
                                                                                 monkeypatch):
    config = toy_config(tokenizer_documents=50)
    config.rewards = ml_collections.ConfigDict({"arithmetic": 1.0, "language": 1.0})
    config.rl.eval_every = 0
    monkeypatch.setattr(policy, "load_policy", lambda *args, **kwargs: pytest.fail("loaded"))
    with pytest.raises(ValueError, match="reward 'language' .* field 'lang', which example "
                                         "'arithmetic/train/0/"):
        rl.job(config, str(tmp_path / "run"))
    config.data.languages = ("en", "kalo")  # the check passes; the job goes on to load the model
    with pytest.raises(pytest.fail.Exception, match="loaded"):
        rl.job(config, str(tmp_path / "run"))


def test_the_data_layer_does_not_import_the_rewards(tmp_path):
    path = write_jsonl(tmp_path / "math.jsonl", [{"problem": "p", "solution": "\\boxed{1}"}])
    code = ("import sys\n"
            "from r1jax.data import prompts\n"
            "prompts.load_source({'path': sys.argv[1], 'format': 'math', 'reward': 'accuracy'})\n"
            "assert 'r1jax.rewards' not in sys.modules, sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)


def test_a_source_language_reaches_its_examples_and_satisfies_the_language_reward(tmp_path):
    """Without "lang" the language reward's field check stops the run; with it every example of
    that source carries it, and only that source's."""
    from r1jax import rewards

    english = write_jsonl(tmp_path / "en.jsonl", [{"prompt": "What is 2 + 2?", "answer": "4"}])
    spanish = write_jsonl(tmp_path / "es.jsonl", [{"prompt": "¿Cuánto es 2 + 3?", "answer": "5"}])
    sources = [{"path": str(english), "format": "prompt", "reward": "accuracy"},
               {"path": str(spanish), "format": "prompt", "reward": "accuracy", "lang": "es"}]
    examples = prompts.prompt_examples(toy_config(sources=sources))
    assert [e.get("lang") for e in examples] == [None, "es"]
    with pytest.raises(ValueError, match="reads example field 'lang'"):
        rewards.check_fields({"accuracy": 1.0, "language": 1.0}, examples)
    sources[0]["lang"] = "en"
    examples = prompts.prompt_examples(toy_config(sources=sources))
    rewards.check_fields({"accuracy": 1.0, "language": 1.0}, examples)
    assert [e["lang"] for e in examples] == ["en", "es"]


def test_the_longest_prompt_and_the_new_tokens_must_fit_the_models_positions(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "answer": "1"}])
    config = toy_config(sources=[{"path": str(path), "format": "prompt", "reward": "accuracy"}],
                        max_prompt_tokens=512)
    config.rl.max_new_tokens = 3072
    prompts.check_room(config, 512 + 3072, "rl.max_new_tokens")  # exactly full: fits
    with pytest.raises(ValueError, match=r"data.max_prompt_tokens=512 \+ rl.max_new_tokens=3072 "
                                         r"exceed the model's max_position 3583"):
        prompts.check_room(config, 512 + 3072 - 1, "rl.max_new_tokens")
