"""Tests for r1jax.metrics: reflective-word counting, rollout statistics against numpy formulas,
the JSONL/TensorBoard writer (nulls, resume truncation, events), samples and the progress bar."""

import glob
import io
import json
import math
import os
import struct
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from r1jax import files, metrics


def counts(text):
    c = metrics.reflection_counts([text])
    return int(c["total"][0]), int(c["wait"][0])


@pytest.mark.parametrize("text, total, wait", [
    ("Wait, that is wrong.", 2, 1),
    ("WAIT. wait! wAiT?", 3, 3),
    ("waiting for an await; awaited", 0, 0),
    ("checks checked checking errors verifying mistakes", 0, 0),  # exact word forms only
    ("butter, rebut, debut", 0, 0),
    ("re-check the error: it's (wrong)", 3, 0),
    ("wait's over.\nHowever,\tbut", 3, 1),
    ("check_x wait2 _wait", 0, 0),  # letters, digits and "_" are word characters
    ("Let me verify and evaluate; retry if there is a mistake, but check.", 6, 0),
    ("", 0, 0),
])
def test_reflection_counts_cases(text, total, wait):
    assert counts(text) == (total, wait)


def test_reflection_counts_per_word_columns():
    c = metrics.reflection_counts(["check check but", "wait"])
    assert c["words"].shape == (2, 10)
    assert c["words"][0, metrics.REFLECTIVE_WORDS.index("check")] == 2
    assert c["words"][0, metrics.REFLECTIVE_WORDS.index("but")] == 1
    np.testing.assert_array_equal(c["total"], [3, 1])
    np.testing.assert_array_equal(c["wait"], [0, 1])


def test_reflective_words_are_the_papers_ten():
    assert metrics.REFLECTIVE_WORDS == ("wait", "mistake", "however", "but", "retry", "error",
                                        "verify", "wrong", "evaluate", "check")


_TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789.,;:!?'()-_", min_size=1,
                 max_size=8)
_CASE = st.sampled_from([str.lower, str.upper, str.title])


@settings(max_examples=150, deadline=None)
@given(tokens=st.lists(_TOKEN, max_size=30), word=st.sampled_from(metrics.REFLECTIVE_WORDS),
       case=_CASE, punct=st.sampled_from(["", ",", ".", "!", ":", "?"]),
       positions=st.lists(st.integers(0, 30), min_size=0, max_size=6))
def test_inserting_a_word_n_times_adds_n(tokens, word, case, punct, positions):
    before = metrics.reflection_counts([" ".join(tokens)])
    for p in positions:
        tokens.insert(min(p, len(tokens)), case(word) + punct)
    after = metrics.reflection_counts([" ".join(tokens)])
    j = metrics.REFLECTIVE_WORDS.index(word)
    assert after["words"][0, j] - before["words"][0, j] == len(positions)
    assert after["total"][0] - before["total"][0] == len(positions)


_VOCAB = ["the", "answer", "is", "Wait,", "check", "Check.", "but", "waiting", "checks", "42",
          "However,", "wrong!", "verify", "error", "mistake", "evaluate", "retry", "x+y"]


def _random_batch(rng, n):
    token_lists = [list(rng.choice(_VOCAB, size=rng.integers(0, 40))) for _ in range(n)]
    texts = [" ".join(t) for t in token_lists]
    # Independent expectation: each vocabulary token is one word; strip punctuation, lowercase.
    expected = np.array([[sum(t.lower().strip(",.!") == w for t in toks)
                          for w in metrics.REFLECTIVE_WORDS] for toks in token_lists])
    lengths = rng.integers(0, 200, size=n)
    correct = rng.random(n) < 0.4
    truncated = rng.random(n) < 0.2
    formatted = rng.random(n) < 0.7
    return texts, expected, lengths, correct, truncated, formatted


@pytest.mark.parametrize("seed", range(5))
def test_rollout_stats_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    texts, words, lengths, correct, truncated, formatted = _random_batch(rng, 64)
    s = metrics.rollout_stats(texts, lengths, correct, truncated, formatted)
    expected = {
        "accuracy": correct.mean(), "format_rate": formatted.mean(),
        "length/mean": lengths.mean(), "length/max": lengths.max(),
        "length/std": np.std(lengths), "length/truncated_frac": truncated.mean(),
        "length/correct": lengths[correct].mean(), "length/incorrect": lengths[~correct].mean(),
        "reflect/rate": words.sum(1).mean(), "reflect/wait_rate": words[:, 0].mean(),
        "reflect/per_1k_tokens": 1000 * words.sum() / lengths.sum(),
    }
    expected.update({f"reflect/word/{w}": words[:, j].mean()
                     for j, w in enumerate(metrics.REFLECTIVE_WORDS)})
    assert s.keys() == expected.keys()
    for k, v in expected.items():
        assert isinstance(s[k], float)
        assert s[k] == pytest.approx(v, rel=1e-12), k


def test_rollout_stats_omits_empty_subsets():
    texts = ["wait", "but"]
    all_right = metrics.rollout_stats(texts, [3, 5], [1.0, 1.0], [0, 0], [1, 1])
    assert "length/incorrect" not in all_right and all_right["length/correct"] == 4.0
    all_wrong = metrics.rollout_stats(texts, [3, 5], [False, False], [True, False], [0, 1])
    assert "length/correct" not in all_wrong and all_wrong["length/incorrect"] == 4.0
    no_tokens = metrics.rollout_stats(["", ""], [0, 0], [0, 0], [0, 0], [0, 0])
    assert "reflect/per_1k_tokens" not in no_tokens
    assert all(math.isfinite(v) for d in (all_right, all_wrong, no_tokens) for v in d.values())


def test_rollout_stats_rejects_bad_shapes():
    with pytest.raises(ValueError, match="`lengths`"):
        metrics.rollout_stats(["a", "b"], [1], [0, 0], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="at least one"):
        metrics.rollout_stats([], [], [], [], [])


def _strict_lines(path):
    def reject(name):
        raise ValueError(f"non-standard JSON constant {name}")
    with open(path) as f:
        return [json.loads(line, parse_constant=reject) for line in f]


def test_writer_jsonl_is_valid_with_nulls(tmp_path):
    with metrics.MetricsWriter(tmp_path) as w:
        w.write(0, {"b": np.float32(1.5), "a": float("nan"), "c": float("inf"), "d": 3})
        w.write(1, {"a": 2.0})
    lines = _strict_lines(tmp_path / "metrics.jsonl")
    assert lines == [{"step": 0, "a": None, "b": 1.5, "c": None, "d": 3.0}, {"step": 1, "a": 2.0}]
    assert list(lines[0]) == ["step", "a", "b", "c", "d"]
    back = metrics.read_metrics(tmp_path / "metrics.jsonl")
    assert math.isnan(back[0]["a"]) and math.isnan(back[0]["c"]) and back[0]["b"] == 1.5


def test_writer_rejects_repeated_steps_and_non_numbers(tmp_path):
    with metrics.MetricsWriter(tmp_path) as w:
        w.write(3, {"a": 1.0})
        with pytest.raises(ValueError, match="steps must increase"):
            w.write(3, {"a": 1.0})
        with pytest.raises(ValueError, match="'name'"):
            w.write(4, {"name": "abc"})


def test_writer_resume_drops_steps_from_restart(tmp_path):
    with metrics.MetricsWriter(tmp_path) as w:
        for s in range(10):
            w.write(s, {"x": float(s), "y": float("nan")})
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 10, "x": 1')  # a line cut short by a kill
    with metrics.MetricsWriter(tmp_path, start_step=6) as w:
        with pytest.raises(ValueError):
            w.write(5, {"x": 0.0})
        for s in range(6, 8):
            w.write(s, {"x": 100.0 + s})
    records = metrics.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(8))
    assert [r["x"] for r in records] == [0, 1, 2, 3, 4, 5, 106, 107]
    assert math.isnan(records[0]["y"])
    _strict_lines(tmp_path / "metrics.jsonl")
    # A fresh run (start_step=0) in the same workdir starts an empty file.
    metrics.MetricsWriter(tmp_path).close()
    assert metrics.read_metrics(tmp_path / "metrics.jsonl") == []


def test_writer_in_cloud_storage_rewrites_the_file_each_step(tmp_path, monkeypatch):
    # Objects in cloud storage cannot be appended to; a local directory stands in for a bucket.
    monkeypatch.setattr(files, "is_cloud_path", lambda path: True)
    with metrics.MetricsWriter(tmp_path) as w:
        assert w._file is None
        for s in range(4):
            w.write(s, {"x": float(s)})
            assert [r["step"] for r in metrics.read_metrics(tmp_path / "metrics.jsonl")] == \
                list(range(s + 1))
    with metrics.MetricsWriter(tmp_path, start_step=2) as w:
        w.write(2, {"x": 20.0})
    assert [r["x"] for r in metrics.read_metrics(tmp_path / "metrics.jsonl")] == [0, 1, 20]


def test_read_metrics_names_a_bad_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        metrics.read_metrics(path)


def _tb_events(workdir):
    """The Event protos of the one TFRecord event file in ``workdir``/tb, in order."""
    from tensorboardX.proto import event_pb2

    (path,) = glob.glob(str(Path(workdir) / "tb" / "events.out.tfevents.*"))
    out, data, pos = [], Path(path).read_bytes(), 0
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        out.append(event_pb2.Event.FromString(data[pos + 12:pos + 12 + n]))
        pos += 12 + n + 4
    return out


def test_writer_tensorboard_events(tmp_path):
    with metrics.MetricsWriter(tmp_path) as w:
        w.write(0, {"length/mean": 12.0, "accuracy": 0.25})
        w.write(1, {"length/mean": 20.0})
    scalars = [(v.tag, e.step, v.simple_value) for e in _tb_events(tmp_path)
               for v in e.summary.value]
    assert sorted(scalars) == [("accuracy", 0, 0.25), ("length/mean", 0, 12.0),
                               ("length/mean", 1, 20.0)]


def test_a_resumed_writer_tells_tensorboard_to_purge_the_later_steps(tmp_path):
    from tensorboardX.proto import event_pb2

    with metrics.MetricsWriter(tmp_path, start_step=3) as w:
        w.write(3, {"accuracy": 0.5})
    starts = [e.step for e in _tb_events(tmp_path)
              if e.session_log.status == event_pb2.SessionLog.START]
    assert starts == [3]


def test_a_full_disk_is_an_error_naming_the_file_and_closing_returns(small_disk):
    writer = metrics.MetricsWriter(small_disk)
    with pytest.raises(OSError):  # fill the disk
        (small_disk / "filler").write_bytes(b"x" * (2 << 20))
    with pytest.raises(OSError, match=r"writing .* failed \(No space left on device\)"):
        for step in range(1, 10_000):  # the TensorBoard file's or the JSONL's buffer fills
            writer.write(step, {f"metric/{i}": float(i) for i in range(64)})
    with pytest.raises(OSError, match="No space left on device"):
        writer.close()  # the bytes that did not fit; tensorboardX's writer would block here


def test_write_samples(tmp_path):
    recs = [{"prompt": "1+1=", "completion": "<answer>2</answer>", "reward": np.float32(1.0),
             "correct": np.bool_(True), "tokens": np.arange(3)}]
    path = metrics.write_samples(tmp_path, 42, recs)
    assert path == os.path.join(tmp_path, "samples", "step_000042.jsonl")
    (line,) = Path(path).read_text().splitlines()
    assert json.loads(line) == {"prompt": "1+1=", "completion": "<answer>2</answer>",
                                "reward": 1.0, "correct": True, "tokens": [0, 1, 2]}


def test_progress_plain_lines_when_not_a_tty():
    out = io.StringIO()
    with metrics.progress(100, start_step=40, file=out) as bar:
        for s in range(41, 101):
            bar.update(s, {"reward/total": 0.5, "accuracy": 0.25, "length/mean": 123.4})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("step 41/100 | reward 0.500 | acc 0.250 | len 123 | eta ")
    assert lines[-1].startswith("step 100/100") and lines[-1].endswith("eta 0:00:00")
    # 60 steps to go, a line every 60 // 20 = 3 of them, and one after the first: steps 41, 43,
    # 46, ..., 100.
    assert [int(line.split()[1].split("/")[0]) for line in lines] == [41, *range(43, 101, 3)]


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_on_a_tty():
    out = _Tty()
    with metrics.progress(10, file=out) as bar:
        for s in range(1, 11):
            bar.update(s, {"reward/total": 0.75, "length/mean": 8.0})
    text = out.getvalue()
    assert "10/10" in text and "reward=0.750" in text and "len=8" in text
