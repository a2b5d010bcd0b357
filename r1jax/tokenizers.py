"""Tokenizers: HF `tokenizer.json` and SentencePiece models behind one small interface.

    tok = load_tokenizer(path)       # checkpoint dir, tokenizer.json, or a SentencePiece .model
    ids = tok.encode(text)           # list[int], no special tokens unless add_bos=True
    text = tok.decode(ids)           # special tokens dropped; the caller strips padding first
    stop = tok.token_to_id("</answer>")   # None where the string is not a single token
    pieces = tok.token_bytes()       # each id's UTF-8 bytes as decode writes them (stop strings)

`train_sentencepiece` trains the toy world's tokenizer.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import sentencepiece as spm
import tokenizers as hf_tokenizers

R1_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


class Tokenizer(Protocol):
    bos_id: int | None
    eos_id: int
    pad_id: int
    vocab_size: int  # 1 + the largest id the tokenizer can produce

    def encode(self, text: str, add_bos: bool = False) -> list[int]: ...

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str: ...

    def token_to_id(self, piece: str) -> int | None: ...

    def token_bytes(self) -> list[bytes]: ...


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet (Qwen's, Llama-3's): the character standing for each
    byte. Printable Latin-1 bytes stand for themselves; the others are shifted past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    shifted = (b for b in range(256) if b not in printable)
    chars = {chr(b): b for b in printable}
    chars.update({chr(256 + i): b for i, b in enumerate(shifted)})
    return chars


def _piece_bytes(piece: str, byte_level: dict[str, int] | None) -> bytes:
    """The bytes a vocabulary piece decodes to: through the byte-level alphabet, or as
    SentencePiece writes pieces ("▁" for a space, "<0x0A>" for a byte of byte fallback)."""
    if byte_level is not None:
        return bytes(byte_level[c] for c in piece)
    if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", piece):
        return bytes([int(piece[3:5], 16)])
    return piece.replace("▁", " ").encode()


def _as_list(ids) -> list[int]:
    return np.asarray(ids, dtype=np.int64).reshape(-1).tolist()


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


class HFTokenizer:
    """A `tokenizer.json` (the tokenizers library), special tokens from the files beside it.

    transformers keeps bos/eos/pad outside tokenizer.json. They are looked up, first hit wins, in
    tokenizer_config.json and special_tokens_map.json (`"eos_token": "<|im_end|>"` or
    `{"content": ...}`), then generation_config.json (`eos_token_id`, an int or a list whose first
    entry is taken). No bos is fine (Qwen has none); no pad means pad = eos, as Qwen does.
    """

    def __init__(self, path: str | os.PathLike):
        path = Path(path)
        try:
            self._tok = hf_tokenizers.Tokenizer.from_file(str(path))
        except Exception as e:  # the library raises a bare Exception that does not name the file
            raise ValueError(
                f"{path} is not a tokenizer.json the tokenizers library reads: {e}"
            ) from e
        self.vocab_size = max(self._tok.get_vocab(with_added_tokens=True).values()) + 1
        names = ("tokenizer_config.json", "special_tokens_map.json")
        configs = [(path.parent / name, _read_json(path.parent / name)) for name in names]
        generation = path.parent / "generation_config.json"
        generation_config = _read_json(generation)

        def special_id(role: str) -> int | None:
            for file, config in configs:
                entry = config.get(f"{role}_token")
                if isinstance(entry, dict):
                    entry = entry.get("content")
                if entry is not None:
                    token_id = self._tok.token_to_id(entry)
                    if token_id is None:
                        raise ValueError(
                            f"{file} names {role}_token {entry!r}, which is not in {path}."
                        )
                    return token_id
            token_id = generation_config.get(f"{role}_token_id")
            if isinstance(token_id, list):
                token_id = token_id[0] if token_id else None
            if token_id is not None and not 0 <= token_id < self.vocab_size:
                raise ValueError(
                    f"{generation} has {role}_token_id {token_id}, outside {path}'s vocabulary."
                )
            return token_id

        self.bos_id = special_id("bos")
        eos_id = special_id("eos")
        if eos_id is None:
            raise ValueError(
                f"No eos token for {path}: expected eos_token in tokenizer_config.json or "
                f"special_tokens_map.json, or eos_token_id in generation_config.json, beside it."
            )
        self.eos_id = eos_id
        pad_id = special_id("pad")
        self.pad_id = eos_id if pad_id is None else pad_id

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        """Token ids of `text`; with `add_bos`, bos first where the tokenizer has one.

        The post-processor (e.g. Llama-3's automatic bos) is not applied: specials are explicit.
        """
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return [self.bos_id] + ids if add_bos and self.bos_id is not None else ids

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return self._tok.decode(_as_list(ids), skip_special_tokens=skip_special)

    def token_to_id(self, piece: str) -> int | None:
        return self._tok.token_to_id(piece)

    def token_bytes(self) -> list[bytes]:
        """Each id's bytes as ``decode`` writes them: special tokens none, other added tokens
        their text, vocabulary pieces through the decoder (byte-level or SentencePiece-style)."""
        byte_level = (_byte_level_alphabet() if '"ByteLevel"' in json.dumps(
            json.loads(self._tok.to_str()).get("decoder")) else None)
        pieces = [b""] * self.vocab_size
        for piece, i in self._tok.get_vocab(with_added_tokens=False).items():
            pieces[i] = _piece_bytes(piece, byte_level)
        for i, added in self._tok.get_added_tokens_decoder().items():
            pieces[i] = b"" if added.special else added.content.encode()
        return pieces


class SentencePieceTokenizer:
    """A SentencePiece `.model`; bos/eos/pad from the model, pad = eos where it has none (-1)."""

    def __init__(self, path: str | os.PathLike):
        self._sp = spm.SentencePieceProcessor(model_file=str(path))
        self.vocab_size = self._sp.get_piece_size()
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None
        if self._sp.eos_id() < 0:
            raise ValueError(f"{path} has no eos piece (eos_id is -1).")
        self.eos_id = self._sp.eos_id()
        self.pad_id = self._sp.pad_id() if self._sp.pad_id() >= 0 else self.eos_id

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids = self._sp.encode(text)
        return [self.bos_id] + ids if add_bos and self.bos_id is not None else ids

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Text of `ids`. Ids past the vocabulary (a model's padded embedding) decode to nothing,
        as they do in the tokenizers library; with `skip_special=False` control pieces such as
        `</s>`, which SentencePiece always drops, are written out."""
        ids = [i for i in _as_list(ids) if 0 <= i < self.vocab_size]
        if skip_special:
            return self._sp.decode(ids)
        parts, run = [], []
        for i in ids:
            if self._sp.is_control(i):
                parts += [self._sp.decode(run), self._sp.id_to_piece(i)]
                run = []
            else:
                run.append(i)
        return "".join(parts) + self._sp.decode(run)

    def token_to_id(self, piece: str) -> int | None:
        token_id = self._sp.piece_to_id(piece)  # the unk id for unknown pieces
        return token_id if self._sp.id_to_piece(token_id) == piece else None

    def token_bytes(self) -> list[bytes]:
        """Each id's bytes as ``decode`` writes them (control pieces none, unk its " ⁇ ")."""
        sp = self._sp
        return [b"" if sp.is_control(i) else sp.decode([i]).encode() if sp.is_unknown(i)
                else _piece_bytes(sp.id_to_piece(i), None) for i in range(self.vocab_size)]


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer at `path`: a tokenizer.json or .model file, or a directory holding one.

    In a directory tokenizer.json wins over tokenizer.model (HF checkpoints often ship both), and
    a single other `*.model` file is taken when neither exists.
    """
    path = Path(path)
    expected = "a tokenizer.json, a SentencePiece .model, or a directory holding one"
    if not path.exists():
        raise FileNotFoundError(f"Tokenizer path {path} does not exist; expected {expected}.")
    if path.is_dir():
        models = sorted(path.glob("*.model"))
        if (path / "tokenizer.json").is_file():
            path = path / "tokenizer.json"
        elif (path / "tokenizer.model").is_file():
            path = path / "tokenizer.model"
        elif len(models) == 1:
            path = models[0]
        else:
            found = f"found {', '.join(m.name for m in models)}" if models else "found neither"
            raise FileNotFoundError(
                f"No tokenizer in {path}: expected tokenizer.json or one *.model file, {found}."
            )
    if path.suffix == ".json":
        return HFTokenizer(path)
    if path.suffix == ".model":
        return SentencePieceTokenizer(path)
    raise ValueError(
        f"Tokenizer path {path} is neither a .json nor a .model file; expected {expected}."
    )


def train_sentencepiece(
    lines: Iterable[str],
    out_prefix: str | os.PathLike,
    vocab_size: int,
    user_defined_symbols: Sequence[str] = R1_TAGS,
    model_type: str = "bpe",
) -> SentencePieceTokenizer:
    """Trains `{out_prefix}.model` (and `.vocab`) on `lines` and returns it loaded.

    Made so that decode(encode(x)) == x for any text without "▁" (U+2581, SentencePiece's
    space mark, which decodes to a space): identity normalization, whitespace kept as is, no
    dummy prefix (so prompt and completion encode apart without an invented space), and unseen
    characters fall back to bytes. Each digit is its own token, as in Qwen, and
    `user_defined_symbols` (the R1 tags by default) are always one token each.

    `vocab_size` is an upper bound: a narrow corpus (the toy world's) runs out of merges first,
    so read the size from the result. Training reads every line (no sampling) on one thread,
    which makes the model a function of the lines alone (with unigram, more threads change it).
    """
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(out_prefix),
        vocab_size=vocab_size,
        model_type=model_type,
        user_defined_symbols=list(user_defined_symbols),
        split_digits=True,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        hard_vocab_limit=False,
        input_sentence_size=0,
        max_sentence_length=1 << 16,
        num_threads=1,
        minloglevel=1,
    )
    return SentencePieceTokenizer(f"{out_prefix}.model")
