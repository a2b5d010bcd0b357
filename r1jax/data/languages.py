"""The toy world's languages: English ("en") and Kalo ("kalo"), a made-up language.

R1's reasoning RL rewards language consistency because R1-Zero's chains of thought mix languages.
To pose that problem in the toy world it needs a second language, and one the ~1M-parameter model
and its SentencePiece tokenizer can pick up as easily as the first: Kalo is English word for word,
each of the few dozen English words the toy world uses (in its questions and in the corpus's
reasoning) replaced by a short made-up word of letters. Digits, operators, punctuation and spacing
stay as they are, so a Kalo sentence has the same structure and arithmetic as its English one:

    translate("Add 3 + 7 + 2", KALO)                      # "Pelu 3 + 7 + 2"
    translate("The result is 12. Correct.", KALO)         # "Ke fenako ezu 12. Zirok."

English is scored by lingua in the language reward (`r1jax.rewards.language`); Kalo by its words
(`is_kalo_word`, registered there). No Kalo word is an English word or looks like one to lingua, so
the share of a text's words in either language is the share of its words written in it.

Pure Python: the data layer imports it, and so do the reward pool's workers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

EN = "en"
KALO = "kalo"
LANGUAGES = (EN, KALO)

# Every English word of the toy world's questions and reasoning, lowercase -> its Kalo word.
# Capitalised English is capitalised Kalo ("The" -> "Ke").
KALO_DICTIONARY = {
    "a": "ek",
    "add": "pelu",
    "again": "rezu",
    "an": "eku",
    "and": "eno",
    "answer": "ravoni",
    "borrow": "lizemo",
    "but": "mavo",
    "carry": "potu",
    "check": "tuvesa",
    "compute": "zonkuta",
    "correct": "zirok",
    "create": "kreza",
    "each": "vizu",
    "easy": "lipa",
    "equals": "zuvenu",
    "equation": "zumvaro",
    "error": "kozeta",
    "evaluate": "valuzeko",
    "exactly": "zakiro",
    "however": "kuvezi",
    "is": "ezu",
    "it": "zo",
    "let": "sami",
    "me": "nemi",
    "mistake": "kozivu",
    "not": "nuk",
    "number": "numi",
    "numbers": "numiki",
    "once": "unako",
    "or": "ovu",
    "result": "fenako",
    "retry": "rezoko",
    "that": "tavo",
    "the": "ke",
    "try": "tiza",
    "use": "vaso",
    "using": "vasoki",
    "verify": "veziro",
    "wait": "tumo",
    "write": "skivo",
    "wrong": "kozi",
}
_ENGLISH = {kalo: english for english, kalo in KALO_DICTIONARY.items()}
# The words a Kalo text may hold, as written: lowercase, and capitalised at a sentence's start.
KALO_WORDS = frozenset(w for kalo in KALO_DICTIONARY.values() for w in (kalo, kalo.capitalize()))
is_kalo_word = KALO_WORDS.__contains__  # picklable: reward pools send it to their workers

_WORD = re.compile(r"[^\W\d_]+")


def _replace(word: str, dictionary: dict[str, str], text: str) -> str:
    """`word` looked up lowercase, keeping its capitalisation; a word the dictionary lacks (or
    in another case, "ADD") is an error naming it, so no text comes out half translated."""
    lower = word.lower()
    if lower not in dictionary or word not in (lower, lower.capitalize()):
        raise ValueError(f"no translation of the word {word!r} (in {text!r}): the toy world's "
                         f"languages know only the words of r1jax.data.languages.KALO_DICTIONARY, "
                         f"lowercase or capitalised")
    return dictionary[lower] if word == lower else dictionary[lower].capitalize()


def translate(text: str, lang: str) -> str:
    """English `text` in language `lang` ("en": `text` itself), word for word; everything but
    words (digits, operators, punctuation, spacing) kept."""
    check_languages((lang,), "translate")
    if lang == EN:
        return text
    return _WORD.sub(lambda m: _replace(m[0], KALO_DICTIONARY, text), text)


def to_english(text: str) -> str:
    """Kalo `text` in English, word for word: how a person reads a Kalo document or sample."""
    return _WORD.sub(lambda m: _replace(m[0], _ENGLISH, text), text)


def check_languages(codes: Sequence[str], what: str) -> None:
    """`codes` must be distinct languages of the toy world, at least one; a ValueError naming
    `what` asked for them otherwise."""
    if not codes or len(set(codes)) < len(codes) or not set(codes) <= set(LANGUAGES):
        raise ValueError(f"{what}: languages {tuple(codes)} must be distinct codes among "
                         f"{LANGUAGES}, at least one")
