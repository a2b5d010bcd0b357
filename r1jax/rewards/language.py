"""Language consistency (R1 §2.3.2): the share of the reasoning's words in the target language.

Words are runs of letters (LaTeX commands and digits are not words); a Han, kana or Hangul
character counts as one word, since those scripts do not separate words with spaces.

Natural languages go through lingua (lingua-language-detector, offline models). One word is too
little evidence (lingua calls "la" Somali and "me" French), so the text is cut into spans at
sentence punctuation, line breaks and changes between CJK and other scripts, each span gets one
language, and the score is the share of words that sit in target-language spans; text that mixes
languages sentence by sentence, or a CJK phrase inside an English sentence, scores in between.
The detector chooses among `CANDIDATES` plus the target: with all 75 languages loaded it takes
25 s and 1.4 GB to build and confuses close languages on short spans. Words of a language outside
that set count as whichever candidate lingua finds closest. Models load on first use, about 2 s
per process, and then each span costs tens of microseconds per word.

Bounds, and what degenerate text scores. Only the first `MAX_CHARS` characters of a text are
scored (about 25k tokens of English; lingua takes about a second per 100k characters of prose),
the rest is ignored. A run of more than `MAX_WORD_LETTERS` letters is no word of any language: it
counts as one word, never in the target language, and never reaches lingua, whose time grows with
the square of a word's length (a 100k-letter run took 9 s). A span whose letters are one letter
four times or more ("zzzz", "t t t t", "我我我我") is no evidence of a language (lingua called a
run of z English and one of a Spanish): its words count, never in the target language. So a text
of such runs scores 0, as does a text without words. Repeated words ("the the the") are scored as
the language they are in: this reward measures language, not quality.

Languages lingua does not know (the toy world's synthetic ones) plug in with `register_language`,
a per-word identifier; the score is then the share of words it accepts, within the same bounds.
The toy world's Kalo (`r1jax.data.languages`) is registered here, on import, so every process
that imports the rewards (the pool's workers too) knows it.
"""

import functools
import math
import re
from collections.abc import Callable

import numpy as np
from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

from r1jax.data.languages import KALO, is_kalo_word
from r1jax.rewards.registry import register

CANDIDATES = ("en", "zh", "es", "fr", "de", "ru", "ja", "ko", "pt", "it")
MAX_CHARS = 100_000
MAX_WORD_LETTERS = 64

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(rf"[{_CJK}]|(?:(?![{_CJK}])[^\W\d_])+")
_SENTENCE = re.compile(r"[^.!?;:\n。！？；：]+")
_SCRIPT_RUN = re.compile(rf"[{_CJK}]+|[^{_CJK}]+")
_MIN_REPEATS = 4  # a letter this often and nothing else is no language ("等等" is Chinese)
_LONG_RUN = re.compile(rf"(?:(?![{_CJK}])[^\W\d_]){{{MAX_WORD_LETTERS + 1},}}")

_CUSTOM: dict[str, Callable[[str], bool]] = {}


def register_language(code: str, is_word: Callable[[str], bool]) -> None:
    """Scores language `code` with `is_word(word) -> bool` instead of lingua. `is_word` must be
    picklable (a top-level function, or e.g. `frozenset(vocab).__contains__`): reward pools created
    afterwards send it to their workers."""
    _CUSTOM[code] = is_word


def custom_languages() -> dict[str, Callable[[str], bool]]:
    return dict(_CUSTOM)


register_language(KALO, is_kalo_word)


def _lingua_language(code: str) -> Language | None:
    try:
        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
    except (ValueError, TypeError):
        return None


def is_supported(code) -> bool:
    return isinstance(code, str) and (code in _CUSTOM or _lingua_language(code) is not None)


@functools.cache
def _detector(target: Language):
    languages = {target, *(_lingua_language(c) for c in CANDIDATES)}
    return LanguageDetectorBuilder.from_languages(*languages).build()


def _lingua_counts(text: str, target: Language) -> tuple[int, int]:
    """(words in spans lingua finds in `target`, words)."""
    detector = _detector(target)
    hits = total = 0
    for sentence in _SENTENCE.findall(text):
        for span in _SCRIPT_RUN.findall(sentence):
            words = _WORD.findall(span)
            total += len(words)
            letters = "".join(words).lower()
            if len(letters) < _MIN_REPEATS or len(set(letters)) > 1:  # not one letter repeated
                hits += len(words) if detector.detect_language_of(span) == target else 0
    return hits, total


def _share(text: str, lang: str) -> float:
    text, long_runs = _LONG_RUN.subn("\n", _LATEX_COMMAND.sub(" ", text[:MAX_CHARS]))
    if lang in _CUSTOM:
        words = _WORD.findall(text)
        hits, total = sum(map(_CUSTOM[lang], words)), len(words)
    else:
        hits, total = _lingua_counts(text, _lingua_language(lang))
    total += long_runs
    return hits / total if total else 0.0


def language_consistency(texts, lang: str) -> np.ndarray:
    """Share of the words of each text that are in language `lang` (ISO 639-1 such as "es", or a
    code given to `register_language`), in [0, 1]; 0 for a text without words."""
    if not is_supported(lang):
        raise ValueError(
            f"unknown language {lang!r}: neither an ISO 639-1 code lingua knows "
            "nor registered with register_language"
        )
    return np.array([_share(t, lang) for t in texts], dtype=np.float64)


def think_part(text: str) -> str:
    """The reasoning: after <think> (if present) up to </think>, else up to <answer>, else the end
    (a truncated completion is all reasoning)."""
    start = text.find("<think>")
    start = 0 if start < 0 else start + len("<think>")
    end = text.find("</think>", start)
    if end < 0:
        end = text.find("<answer>", start)
    return text[start:] if end < 0 else text[start:end]


@register("language", fields=("lang",))
def language_term(completions, examples) -> np.ndarray:
    """`language_consistency` of the <think> part in example["lang"] (the toy world's problems
    have it when posed in several languages: `make_split(languages=...)`); NaN if that is
    missing or unknown."""
    return np.array(
        [
            _share(think_part(c), e["lang"]) if is_supported(e.get("lang")) else math.nan
            for c, e in zip(completions, examples, strict=True)
        ],
        dtype=np.float64,
    )
