from collections import Counter

import numpy as np
import pytest

from r1jax import tokenizers
from r1jax.data import corpus, pipeline, tasks


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_prompt_batches_cover_each_epoch_reshuffled():
    examples = tasks.make_split("arithmetic", "train", 120, seed=0)
    batches = take(iter(pipeline.prompt_dataset(examples, batch_size=40, seed=0)), 6)
    assert all(len(b) == 40 and isinstance(b[0], dict) for b in batches)
    epochs = [[e["id"] for b in batches[i : i + 3] for e in b] for i in (0, 3)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(e["id"] for e in examples)
    assert epochs[0] != epochs[1]
    unshuffled = take(iter(pipeline.prompt_dataset(examples, 40, seed=0, shuffle=False)), 3)
    assert [e["id"] for b in unshuffled for e in b] == [e["id"] for e in examples]


@pytest.mark.parametrize("k, m", [(0, 3), (5, 7)])
def test_prompt_iterator_resumes_exactly(k, m):
    examples = tasks.make_split("countdown", "train", 100, seed=0)
    ds = pipeline.prompt_dataset(examples, batch_size=32, seed=7)
    it = iter(ds)
    take(it, k)
    state = it.get_state()
    expected = take(it, m)
    fresh = iter(pipeline.prompt_dataset(examples, batch_size=32, seed=7))
    fresh.set_state(state)
    assert take(fresh, m) == expected
    other_seed = take(iter(pipeline.prompt_dataset(examples, batch_size=32, seed=8)), k + m)
    assert other_seed[k:] != expected


class CharTokenizer:
    eos_id, pad_id = 1, 0

    def encode(self, text):
        return [ord(ch) for ch in text]


def test_pack_pairs_keeps_documents_whole_and_masks_prompts_and_padding():
    pairs = [("ab", "xyz"), ("cd", "uv"), ("e", "w"), ("f" * 9, "g" * 9)]
    tokens, mask, segments = pipeline.pack_pairs(pairs, CharTokenizer(), seq_len=10)
    text = ["".join(chr(t) if t > 1 else "|" if t == 1 else "." for t in row) for row in tokens]
    assert text == ["abxyz|cduv|", "ew|........", "fffffffffgg"]  # the last one truncated
    assert segments.tolist() == [[1] * 6 + [2] * 5, [1] * 3 + [0] * 8, [1] * 11]
    assert [m.astype(int).tolist() for m in mask] == [
        [0, 1, 1, 1, 1, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0], [0] * 8 + [1, 1]]
    _, unmasked, _ = pipeline.pack_pairs(pairs, CharTokenizer(), seq_len=10, mask_prompt=False)
    # Every token is a target but the first of each document: "c" follows the first document's
    # eos, which is no context for it.
    assert unmasked[0].astype(int).tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1, 1]
    assert unmasked[1].tolist() == [True, True] + [False] * 8


@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory):
    documents = list(corpus.corpus_documents(0, 300))
    path = tmp_path_factory.mktemp("tok") / "toy"
    return documents, tokenizers.train_sentencepiece(documents, path, vocab_size=400)


def test_sft_batches_draw_packed_windows_and_resume(toy_tokenizer):
    documents, tok = toy_tokenizer
    pairs = [corpus.split_prompt(doc) for doc in documents]
    packed = pipeline.pack_pairs(pairs, tok, seq_len=64)
    ds = pipeline.sft_dataset(packed, batch_size=4, seed=0)
    it = iter(ds)
    first = take(it, 3)
    assert first[0]["tokens"].shape == (4, 65) and first[0]["tokens"].dtype == np.int32
    assert first[0]["loss_mask"].shape == (4, 64)
    windows = packed[0]
    # An epoch's batches draw the packed windows without replacement.
    epoch = np.concatenate([b["tokens"] for b in take(iter(ds), len(windows) // 4)])
    assert not Counter(map(tuple, epoch.tolist())) - Counter(map(tuple, windows.tolist()))
    assert tok.decode(windows[0]).startswith(documents[0][:40])
    state = it.get_state()
    expected = take(it, 5)
    fresh = iter(pipeline.sft_dataset(packed, batch_size=4, seed=0))
    fresh.set_state(state)
    for a, b in zip(take(fresh, 5), expected, strict=True):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
        np.testing.assert_array_equal(a["loss_mask"], b["loss_mask"])
        np.testing.assert_array_equal(a["segments"], b["segments"])


@pytest.mark.parametrize("count", [2, 4])
def test_process_shards_together_read_the_batches_of_one_process(count):
    examples = tasks.make_split("arithmetic", "train", 50, seed=0)
    whole = take(iter(pipeline.prompt_dataset(examples, batch_size=8, seed=3)), 9)
    shards = [iter(pipeline.prompt_dataset(examples, 8, seed=3, shard=(i, count)))
              for i in range(count)]
    for step, batch in enumerate(whole):
        parts = [next(shard) for shard in shards]
        assert [len(p) for p in parts] == [8 // count] * count
        assert [e for p in parts for e in p] == batch, step
    with pytest.raises(ValueError, match="does not split"):
        pipeline.prompt_dataset(examples, batch_size=6, seed=3, shard=(0, 4))
