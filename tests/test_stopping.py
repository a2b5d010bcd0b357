"""Stop strings of any length: the on-device matcher and the sampler against a host reference
that decodes the completion token by token, with a byte-level BPE in which </answer> is several
tokens spelt differently in different contexts."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers as hf

from r1jax import models, sampling, stopping
from r1jax import tokenizers as tk

CORPUS = ["<answer> 42 </answer>", "so x = 3.</answer>\n", "the answer is 7</answer>",
          "We answer </ans </a", "答案：5。答案是 6"] * 20
# Pieces a model could sample, in any order: canonical and non-canonical spellings of the stop
# strings, prefixes that lead nowhere, a multi-byte character split over byte-level tokens.
FRAGMENTS = ["</", "answer", ">", "</answer>", ".</", "ans", "wer>", "</a", "<", "/", " ", "\n",
             "x", "答", "案", "：", "答案", "é"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A Qwen-style byte-level BPE with eos <|im_end|> and no R1 tags of its own."""
    directory = tmp_path_factory.mktemp("bpe")
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, hf.trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>", "<|im_end|>"],
        initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text('{"eos_token": "<|im_end|>"}')
    return tk.load_tokenizer(directory)


def first_stop(pieces, ids, strings) -> int | None:
    """Host reference: the first t whose decoded completion ids[:t+1] contains a string."""
    text = b""
    for t, i in enumerate(ids):
        text += pieces[i]
        if any(s.encode() in text for s in strings):
            return t
    return None


def test_answer_end_is_several_tokens_split_by_context(tokenizer):
    splits = {tuple(tokenizer._tok.encode(prefix + "</answer>").tokens[-3:-1])
              for prefix in ("", ".", " ")}
    assert len(tokenizer.encode("</answer>")) > 1 and len(splits) == 3


@pytest.mark.parametrize("strings", [("</answer>",), ("</answer>", "\n"), ("答案：",), ("x",),
                                     ("wer>", "</answer>"), ("nsw",), ("e",)])
def test_advance_stops_where_the_decoded_text_first_contains_a_string(tokenizer, strings):
    stop = stopping.stop_condition(tokenizer, strings)
    pieces = tokenizer.token_bytes()
    rng = np.random.default_rng(0)
    sequences = []
    for _ in range(256):
        fragments = [str(f) for f in rng.choice(FRAGMENTS, 12)]
        if rng.random() < 0.5:  # a stop string somewhere, split at a random character
            string = strings[rng.integers(len(strings))]
            cut = rng.integers(len(string) + 1)
            at = rng.integers(13)
            fragments[at:at] = [string[:cut], string[cut:]]
        ids = [i for f in fragments for i in tokenizer.encode(f)]
        sequences.append((ids + [tokenizer.pad_id] * 64)[:40])
    width = stopping.history_width(stop.strings)

    @jax.jit
    def first_hits(tokens_BT):
        def step(history, token_B):
            hit, history = stopping.advance(token_B, history, stop.table, stop.strings)
            return history, hit
        _, hits = jax.lax.scan(step, stopping.initial_history(len(tokens_BT), width),
                               tokens_BT.T)
        return jnp.where(hits.any(0), jnp.argmax(hits, 0), -1)

    got = np.asarray(first_hits(jnp.asarray(sequences, jnp.int32)))
    expected = [first_stop(pieces, ids, strings) for ids in sequences]
    assert got.tolist() == [-1 if e is None else e for e in expected]
    assert sum(e is not None for e in expected) > 64  # the cases are not mostly misses


def test_stop_condition_sends_special_tokens_to_ids_and_refuses_empty_strings(tokenizer):
    stop = stopping.stop_condition(tokenizer, ("<|im_end|>", "</answer>"), token_ids=(0,))
    assert stop.token_ids == (tokenizer.eos_id, 0) and stop.strings == (b"</answer>",)
    assert stopping.stop_condition(tokenizer).table is None
    with pytest.raises(ValueError, match="empty stop string"):
        stopping.stop_condition(tokenizer, ("",))


def test_sampler_stops_at_a_multi_token_string_as_the_host_would(tokenizer):
    # A model with more embedding rows than the tokenizer has ids (padded vocabularies).
    cfg = dataclasses.replace(models.get_config("tiny"), vocab_size=tokenizer.vocab_size + 7)
    params = jax.tree.map(lambda x: x * 4.0 if x.ndim == 2 else x,
                          models.init(cfg, jax.random.key(0)))
    prompts = [tokenizer.encode(text) for text in ("so x =", "the answer", "答案", "<")]
    pieces, N, G = tokenizer.token_bytes() + [b""] * 7, 24, 4  # padded rows decode to nothing
    kwargs = dict(num_samples=G, max_new_tokens=N, pad_id=tokenizer.pad_id)
    free = sampling.generate(cfg, params, prompts, jax.random.key(1), **kwargs)
    # Stop strings taken from what the free run wrote, across token boundaries and starting
    # inside a token, so some rows stop at them and others run on.
    strings = []
    for row in np.asarray(free.tokens):
        text = b"".join(pieces[i] for i in row[3:6])[1:]
        if len(text) >= 3 and len(row[3:6]) == 3 and text.isascii() and not strings:
            strings.append(text.decode())
    strings.append("\n")
    assert len(strings) == 2
    stop = stopping.stop_condition(tokenizer, strings)
    out = sampling.generate(cfg, params, prompts, jax.random.key(1), stop=stop, **kwargs)
    stopped = 0
    for row in range(len(prompts) * G):
        free_row = np.asarray(free.tokens[row]).tolist()
        hit = first_stop(pieces, free_row, strings)
        length = N if hit is None else hit + 1
        assert int(out.lengths[row]) == length
        assert out.tokens[row, :length].tolist() == free_row[:length]  # the same draws
        assert out.mask[row].tolist() == [True] * length + [False] * (N - length)
        assert (out.tokens[row, length:] == tokenizer.pad_id).all()
        assert bool(out.truncated[row]) == (hit is None)
        stopped += hit is not None
    assert 0 < stopped < len(prompts) * G
