import json
import random
import string

import numpy as np
import pytest
import tokenizers as hf
from hypothesis import given, settings
from hypothesis import strategies as st

from r1jax import tokenizers as tk

TEXTS = [
    "Ann has 123 apples and gets 45 more.",
    "<think>We add 123 + 45 = 168.</think> <answer>168</answer>",
    "  two  spaces, a tab\tand a newline\n2024-01-09",
    "",
]


# ---------------------------------------------------------------- HF tokenizer.json


def write_hf_tokenizer(directory, **configs):
    """A byte-level BPE (Qwen's kind) with specials, R1 tags as plain added tokens, and a
    post-processor that adds <s> the way Llama-3's does; `configs` become the JSON files."""
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_end|>", "<s>"],
        initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS * 5, trainer)
    tok.add_tokens(list(tk.R1_TAGS))
    tok.post_processor = hf.processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", 2)]
    )
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    for name, config in configs.items():
        (directory / f"{name}.json").write_text(json.dumps(config))
    return directory


@pytest.fixture
def hf_dir(tmp_path):
    return write_hf_tokenizer(
        tmp_path / "ckpt",
        tokenizer_config={
            "bos_token": "<s>",
            "eos_token": {"content": "<|im_end|>", "special": True},
            "pad_token": "<|endoftext|>",
        },
        generation_config={"eos_token_id": [0]},  # tokenizer_config.json wins
    )


def test_hf_specials_vocab_and_token_to_id(hf_dir):
    tok = tk.load_tokenizer(hf_dir)
    assert isinstance(tok, tk.HFTokenizer)
    assert (tok.pad_id, tok.eos_id, tok.bos_id) == (0, 1, 2)
    assert tok.token_to_id("<|im_end|>") == 1
    assert tok.token_to_id("not a token") is None
    raw = hf.Tokenizer.from_file(str(hf_dir / "tokenizer.json"))
    assert tok.vocab_size == raw.get_vocab_size(with_added_tokens=True)
    assert tok.token_to_id("</answer>") == tok.vocab_size - 1


def test_token_bytes_spell_what_decode_writes(hf_dir, tmp_path):
    """Joining the ids' bytes gives decode's text, for byte-level BPE (multi-byte characters
    split over tokens included) and SentencePiece with byte fallback, specials giving none."""
    spm_tok = tk.train_sentencepiece(TEXTS * 5, tmp_path / "sp", vocab_size=400)
    texts = TEXTS + ["héllo wörld 日本語 </answer>\n\n  x", "\t<think>é</think>"]
    for tok in (tk.load_tokenizer(hf_dir), spm_tok):
        pieces = tok.token_bytes()
        assert len(pieces) == tok.vocab_size and pieces[tok.eos_id] == b""
        for text in texts:
            ids = tok.encode(text)
            assert b"".join(pieces[i] for i in ids) == tok.decode(ids).encode() == text.encode()
        ids = tok.encode(texts[-2]) + [tok.eos_id]
        assert b"".join(pieces[i] for i in ids) == tok.decode(ids).encode()


def test_hf_round_trip_and_specials(hf_dir):
    tok = tk.load_tokenizer(hf_dir / "tokenizer.json")
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text
    ids = tok.encode("<think>hi</think>")
    assert ids[0] == tok.token_to_id("<think>") and ids[-1] == tok.token_to_id("</think>")
    assert tok.encode("hi", add_bos=True) == [tok.bos_id] + tok.encode("hi")  # bos once, not twice
    full = np.array(tok.encode("hi", add_bos=True) + [tok.eos_id, tok.pad_id], np.int32)
    assert tok.decode(full) == "hi"
    assert tok.decode(full, skip_special=False) == "<s>hi<|im_end|><|endoftext|>"


def test_hf_generation_config_eos_and_pad_fallback(tmp_path):
    tok = tk.HFTokenizer(
        write_hf_tokenizer(tmp_path, generation_config={"eos_token_id": [1, 0]}) / "tokenizer.json"
    )
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (None, 1, 1)
    assert tok.encode("hi", add_bos=True) == tok.encode("hi")


def test_hf_special_tokens_map(tmp_path):
    write_hf_tokenizer(tmp_path, special_tokens_map={"eos_token": "<|endoftext|>"})
    tok = tk.load_tokenizer(tmp_path)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (None, 0, 0)


def test_hf_errors_name_the_file(tmp_path):
    write_hf_tokenizer(tmp_path / "a")
    with pytest.raises(ValueError, match="No eos token for .*a/tokenizer.json"):
        tk.load_tokenizer(tmp_path / "a")
    write_hf_tokenizer(tmp_path / "b", tokenizer_config={"eos_token": "<eos>"})
    with pytest.raises(ValueError, match="tokenizer_config.json names eos_token '<eos>'"):
        tk.load_tokenizer(tmp_path / "b")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="d/tokenizer.json is not a tokenizer.json"):
        tk.load_tokenizer(tmp_path / "d")
    (tmp_path / "d" / "tokenizer_config.json").write_text("{")
    write_hf_tokenizer(tmp_path / "d")
    with pytest.raises(ValueError, match="d/tokenizer_config.json is not valid JSON"):
        tk.load_tokenizer(tmp_path / "d")
    write_hf_tokenizer(tmp_path / "c", generation_config={"eos_token_id": 10**6})
    with pytest.raises(ValueError, match="generation_config.json has eos_token_id 1000000"):
        tk.load_tokenizer(tmp_path / "c")


# ---------------------------------------------------------------- SentencePiece


def toy_corpus(n, seed):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        name = rng.choice(["Ann", "Bob", "Cleo"])
        lines.append(
            f"{name} has {a} pens and gets {b} more. How many? "
            f"<think>{a} + {b} = {a + b}</think> <answer>{a + b}</answer>"
        )
    return lines


@pytest.fixture(scope="module")
def sp_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sp")
    tk.train_sentencepiece(toy_corpus(2000, seed=0), directory / "toy", vocab_size=512)
    return directory


def test_sentencepiece_round_trip_tags_digits_specials(sp_dir):
    tok = tk.load_tokenizer(sp_dir)
    assert isinstance(tok, tk.SentencePieceTokenizer)
    assert (
        260 < tok.vocab_size <= 512
    )  # 256 bytes + specials + tags + merges; a narrow corpus stops early
    for text in TEXTS + ["Ünïcode 中文 and emoji 😀 fall back to bytes"]:
        assert tok.decode(tok.encode(text)) == text
    for tag in tk.R1_TAGS:
        assert tok.encode(tag) == [tok.token_to_id(tag)]
    assert len(tok.encode("2024")) == 4
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, 2)  # sentencepiece has no pad: pad = eos
    assert tok.token_to_id("</s>") == tok.eos_id and tok.token_to_id("no such piece") is None
    ids = tok.encode("Ann", add_bos=True) + [tok.eos_id, tok.vocab_size + 3]
    assert ids[0] == tok.bos_id
    assert tok.decode(np.array(ids)) == "Ann"
    assert tok.decode(ids, skip_special=False) == "<s>Ann</s>"
    # no dummy prefix: a prompt and its completion, encoded apart, decode to their concatenation
    assert tok.decode(tok.encode("How many?") + tok.encode(" <think>")) == "How many? <think>"


def test_sentencepiece_training_is_deterministic(tmp_path, monkeypatch):
    models = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)  # the model file records its prefix; keep it the same
        tk.train_sentencepiece(toy_corpus(500, seed=1), "toy", vocab_size=400, model_type="unigram")
        models.append((tmp_path / run / "toy.model").read_bytes())
    assert models[0] == models[1]


def test_load_tokenizer_paths(sp_dir, tmp_path):
    assert (
        tk.load_tokenizer(sp_dir / "toy.model").vocab_size == tk.load_tokenizer(sp_dir).vocab_size
    )
    with pytest.raises(FileNotFoundError, match="nowhere/tokenizer.json does not exist"):
        tk.load_tokenizer(tmp_path / "nowhere" / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match=f"No tokenizer in {tmp_path}: .*found neither"):
        tk.load_tokenizer(tmp_path)
    (tmp_path / "x.model").write_bytes(b"")
    (tmp_path / "y.model").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="found x.model, y.model"):
        tk.load_tokenizer(tmp_path)
    (tmp_path / "vocab.txt").write_text("")
    with pytest.raises(ValueError, match="vocab.txt is neither"):
        tk.load_tokenizer(tmp_path / "vocab.txt")


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=string.printable, max_size=80), cut=st.integers(0, 80))
def test_sentencepiece_round_trips_printable_ascii(sp_dir, text, cut):
    tok = tk.load_tokenizer(sp_dir)
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text[:cut]) + tok.encode(text[cut:])) == text
