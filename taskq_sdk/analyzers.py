"""Text analyzers for batch content analysis: a registry (``@analyzer("name")``) and four offline built-ins.

An analyzer takes one text and returns a *flat* dict of plain values (numbers, strings, lists of
those), so that results expand into DataFrame columns (``sentiment_score``, ``sentiment_label``).
The built-ins do real work with data shipped inside their wheels; nothing is downloaded at run time:

* ``text_stats`` - characters, words, sentences, unique words, average lengths (pure Python);
* ``sentiment`` - VADER's lexicon and rules (``vaderSentiment``; English);
* ``keywords``  - YAKE, unsupervised statistical keyword extraction (``yake``; stopwords for ~30 languages);
* ``language``  - langid.py's naive Bayes model, 97 languages (``py3langid``).

Register your own in a module the worker imports (``python -m taskq_sdk.worker mypkg.analyzers``)::

    from taskq_sdk.analyzers import analyzer

    @analyzer("shouting")
    def shouting(text: str) -> dict[str, float]:
        letters = [c for c in text if c.isalpha()]
        return {"ratio": sum(c.isupper() for c in letters) / max(1, len(letters))}

    # client.submit("batch_analysis_async", ["HELLO there"], analyzers=["shouting", "sentiment"])

Missing text is not scored. Every built-in result has a ``status``: ``"ok"``, or ``"skipped"``
when there was nothing to analyze - the text is missing (``None``, ``NaN``, ``pd.NA``), or, for
``sentiment``, ``language`` and ``keywords``, blank (empty or whitespace only). A skipped result
keeps its keys with ``NaN`` for numbers and ``None`` for the rest, so a DataFrame fan-out gives
NaN in, NaN out and ``mean()`` leaves those rows aside; ``text_stats`` counts a blank text (0
words is a fact, not a guess)::

    sentiment(None)   # {'score': nan, 'label': None, ..., 'status': 'skipped'}

The libraries are imported on first use; without them an analyzer raises
``ImportError('pip install "taskq-sdk[analysis]"')``.
"""

from __future__ import annotations

import math
import numbers
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import ConfigurationError

__all__ = [
    "DEFAULT_ANALYZERS",
    "INSTALL_HINT",
    "MAX_TEXT_CHARS",
    "OK",
    "SKIPPED",
    "AnalyzerSpec",
    "analyzer",
    "analyzer_names",
    "get_analyzer",
    "is_missing",
    "keywords",
    "language",
    "sentiment",
    "text_stats",
]

F = TypeVar("F", bound=Callable[..., dict[str, Any]])

INSTALL_HINT = 'pip install "taskq-sdk[analysis]"'
#: the built-in analyzers, in the order a batch runs them by default
DEFAULT_ANALYZERS: tuple[str, ...] = ("text_stats", "language", "sentiment", "keywords")
#: longer texts are refused per item (keyword extraction is roughly linear but not cheap)
MAX_TEXT_CHARS = 1_000_000
#: VADER's recommended thresholds on the compound score
SENTIMENT_THRESHOLD = 0.05
#: below this normalised probability the language is reported as ``und`` (undetermined)
LANGUAGE_MIN_CONFIDENCE = 0.5

#: the ``status`` of a built-in analyzer's result: it analyzed the text, or there was no text to analyze
OK = "ok"
SKIPPED = "skipped"
_NAN = float("nan")

_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class AnalyzerSpec:
    """One registered analyzer: its name, function, one-line description and whether it is built in.

    Example::

        spec = get_analyzer("sentiment")
        spec.fn("What a lovely day")["label"]   # 'positive'
    """

    name: str
    fn: Callable[..., dict[str, Any]]
    description: str
    builtin: bool = False


_REGISTRY: dict[str, AnalyzerSpec] = {}
_LOCK = threading.Lock()


def analyzer(name: str, *, description: str | None = None, replace: bool = False) -> Callable[[F], F]:
    """Register ``fn(text) -> flat dict`` as analyzer ``name``; the function stays callable as before.

    Names are lowercase identifiers (``[a-z][a-z0-9_]*``). Registering a taken name with another
    function raises ``ConfigurationError`` unless ``replace=True``.

    Example::

        @analyzer("length")
        def length(text: str) -> dict[str, int]:
            return {"chars": len(text)}
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ConfigurationError(
            f"analyzer name {name!r} is not valid: use a lowercase identifier like 'sentiment' or 'my_score'"
        )

    def register(fn: F) -> F:
        if not callable(fn):
            raise ConfigurationError(f"@analyzer({name!r}) needs a function, got {type(fn).__name__}")
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = AnalyzerSpec(
            name=name,
            fn=fn,
            description=description or (doc[0] if doc else ""),
            builtin=getattr(fn, "__module__", "") == __name__,
        )
        with _LOCK:
            other = _REGISTRY.get(name)
            if other is not None and other.fn is not fn and not replace:
                raise ConfigurationError(
                    f"analyzer {name!r} is already registered ({other.fn.__module__}.{other.fn.__qualname__}); "
                    "pick another name or pass replace=True"
                )
            _REGISTRY[name] = spec
        return fn

    return register


def analyzer_names() -> list[str]:
    """The registered analyzer names: built-ins first (in :data:`DEFAULT_ANALYZERS` order), then the rest.

    Example::

        analyzer_names()   # ['text_stats', 'language', 'sentiment', 'keywords', 'shouting']
    """
    with _LOCK:
        names = list(_REGISTRY)
    builtins = [n for n in DEFAULT_ANALYZERS if n in names]
    return builtins + sorted(n for n in names if n not in DEFAULT_ANALYZERS)


def get_analyzer(name: str) -> AnalyzerSpec:
    """The analyzer registered as ``name``; ``ConfigurationError`` listing the known names otherwise.

    Example::

        get_analyzer("keywords").fn("Redis streams and Redis queues")["terms"]
    """
    with _LOCK:
        spec = _REGISTRY.get(name)
    if spec is None:
        raise ConfigurationError(
            f"unknown analyzer {name!r}; registered: {', '.join(analyzer_names())}. Register more with "
            "@taskq_sdk.analyzers.analyzer('name') in a module the worker imports"
        )
    return spec


def is_missing(text: Any) -> bool:
    """True for a missing value as pandas spells it: ``None``, a float ``NaN`` (numpy's too), ``pd.NA``, ``NaT``.

    Example::

        is_missing(float("nan")), is_missing(""), is_missing("hi")   # (True, False, False)
    """
    if text is None:
        return True
    if isinstance(text, float | numbers.Real) and not isinstance(text, bool | int):
        return math.isnan(float(text))
    # pandas' NA and NaT, without importing pandas: both are singletons of these types
    return type(text).__name__ in ("NAType", "NaTType")


def _skipped(**fields: Any) -> dict[str, Any]:
    return {**fields, "status": SKIPPED}


def _text(text: Any) -> str:
    """The text to analyze (call :func:`is_missing` first); refuses what is not text, and texts over the limit."""
    if not isinstance(text, str):
        raise TypeError(f"analyzers take text (str), got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(
            f"the text has {len(text):,} characters, over the limit of {MAX_TEXT_CHARS:,}; split it into parts"
        )
    return text


# ---------------------------------------------------------------------------- text statistics
_WORD_RE = re.compile(r"[^\W_]+(?:['’\-][^\W_]+)*")
_SENTENCE_END_RE = re.compile(r"[.!?…。！？]+(?=\s|$)")
_TEXT_STATS_KEYS = (
    "chars", "words", "unique_words", "sentences", "avg_word_length", "avg_sentence_words", "lexical_diversity",
)  # fmt: skip


@analyzer("text_stats")
def text_stats(text: str) -> dict[str, Any]:
    """Counts and averages: characters, words, unique words, sentences, mean word and sentence length.

    Words are runs of letters and digits (with inner apostrophes and hyphens), for any script
    that separates words with spaces or punctuation; sentences end with ``. ! ? …``.

    Example::

        text_stats("One fish. Two fish!")["sentences"]   # 2
    """
    if is_missing(text):
        return _skipped(**dict.fromkeys(_TEXT_STATS_KEYS, _NAN))
    body = _text(text)
    words = _WORD_RE.findall(body)
    stripped = body.strip()
    sentences = len(_SENTENCE_END_RE.findall(stripped))
    if stripped and not _SENTENCE_END_RE.search(stripped[-1:] + " "):
        sentences += 1  # a last sentence without final punctuation
    unique = {w.casefold() for w in words}
    return {
        "chars": len(body),
        "words": len(words),
        "unique_words": len(unique),
        "sentences": sentences,
        "avg_word_length": round(sum(len(w) for w in words) / len(words), 3) if words else 0.0,
        "avg_sentence_words": round(len(words) / sentences, 3) if sentences else 0.0,
        "lexical_diversity": round(len(unique) / len(words), 4) if words else 0.0,
        "status": OK,
    }


# ---------------------------------------------------------------------------- sentiment
_vader: Any = None


def _vader_analyzer() -> Any:
    global _vader
    if _vader is None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError as exc:
            raise ImportError(f"the sentiment analyzer needs vaderSentiment: {INSTALL_HINT}") from exc
        with _LOCK:
            if _vader is None:
                _vader = SentimentIntensityAnalyzer()  # reads the lexicon shipped in the wheel
    return _vader


@analyzer("sentiment")
def sentiment(text: str) -> dict[str, Any]:
    """Sentiment with VADER: ``score`` in [-1, 1] (compound), ``label`` and the pos/neu/neg proportions.

    ``label`` is ``positive`` above +0.05, ``negative`` below -0.05, else ``neutral`` (VADER's
    thresholds). VADER's lexicon is English (it also knows emoji and common slang); other
    languages mostly come out neutral. Missing or blank text is not scored: ``score`` NaN,
    ``label`` None, ``status`` ``"skipped"``.

    Example::

        sentiment("I love this, it is wonderful!")   # {'score': 0.86, 'label': 'positive', ..., 'status': 'ok'}
    """
    if is_missing(text) or not _text(text).strip():
        return _skipped(score=_NAN, label=None, positive=_NAN, neutral=_NAN, negative=_NAN)
    scores = _vader_analyzer().polarity_scores(_text(text))
    score = float(scores.get("compound", 0.0))
    if score >= SENTIMENT_THRESHOLD:
        label = "positive"
    elif score <= -SENTIMENT_THRESHOLD:
        label = "negative"
    else:
        label = "neutral"
    return {
        "score": round(score, 4),
        "label": label,
        "positive": float(scores.get("pos", 0.0)),
        "neutral": float(scores.get("neu", 0.0)),
        "negative": float(scores.get("neg", 0.0)),
        "status": OK,
    }


# ---------------------------------------------------------------------------- language
_langid_ready = threading.Event()


def _langid() -> Any:
    try:
        import py3langid
    except ImportError as exc:
        raise ImportError(f"the language analyzer needs py3langid: {INSTALL_HINT}") from exc
    if not _langid_ready.is_set():
        with _LOCK:  # load the model (about 1 s) once, not once per thread
            py3langid.classify("warm up")
            _langid_ready.set()
    return py3langid


@analyzer("language")
def language(text: str) -> dict[str, Any]:
    """The text's language as an ISO 639-1 code with a confidence in [0, 1] (langid.py's model, 97 languages).

    Texts without letters, and texts where the best language has a probability under 0.5, give
    ``code='und'`` (undetermined); ``best`` is the top guess in every case. Short texts (a few
    words) are often uncertain. Missing or blank text is skipped: ``code`` None, ``status``
    ``"skipped"``.

    Example::

        language("Der schnelle braune Fuchs springt über den faulen Hund.")   # {'code': 'de', ...}
    """
    if is_missing(text) or not _text(text).strip():
        return _skipped(code=None, confidence=_NAN, best=None)
    body = _text(text)
    if not any(ch.isalpha() for ch in body):
        return {"code": "und", "confidence": 0.0, "best": "und", "status": OK}
    ranked = _langid().rank(body)
    top_lang, top_score = ranked[0]
    # normalise log-probabilities into a probability for the top language (a stable softmax)
    total = sum(math.exp(float(score) - float(top_score)) for _, score in ranked)
    confidence = 1.0 / total if total > 0 and math.isfinite(total) else 0.0
    code = str(top_lang) if confidence >= LANGUAGE_MIN_CONFIDENCE else "und"
    return {"code": code, "confidence": round(confidence, 4), "best": str(top_lang), "status": OK}


# ---------------------------------------------------------------------------- keywords
def _yake() -> Any:
    try:
        import yake
    except ImportError as exc:
        raise ImportError(f"the keywords analyzer needs yake: {INSTALL_HINT}") from exc
    return yake


@analyzer("keywords")
def keywords(text: str, top: int = 5, max_words: int = 3, lang: str | None = None) -> dict[str, Any]:
    """The ``top`` keywords and key phrases (up to ``max_words`` words) by YAKE, most relevant first.

    ``lang`` picks YAKE's stopword list (ISO 639-1 code); by default the language analyzer
    detects it. ``scores`` are YAKE's: lower means more relevant. Missing or blank text is
    skipped: ``terms`` None, ``status`` ``"skipped"``.

    Example::

        keywords("Redis is an in-memory data store. Job queues on Redis use sorted sets.")["terms"]
        # ['in-memory data store', 'Redis', 'sorted sets', ...]
    """
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 100:
        raise ValueError(f"top must be an integer from 1 to 100, got {top!r}")
    if isinstance(max_words, bool) or not isinstance(max_words, int) or not 1 <= max_words <= 5:
        raise ValueError(f"max_words must be an integer from 1 to 5, got {max_words!r}")
    if is_missing(text) or not _text(text).strip():
        return _skipped(terms=None, scores=None, lang=None)
    body = _text(text)
    if not any(ch.isalpha() for ch in body):
        return {"terms": [], "scores": [], "lang": lang or "und", "status": OK}
    if lang is None:
        detected = language(body)
        lang = detected["code"] if detected["code"] != "und" else "en"
    extractor = _yake().KeywordExtractor(lan=lang, n=max_words, top=top)
    found = extractor.extract_keywords(body)
    return {
        "terms": [str(term) for term, _ in found],
        "scores": [round(float(score), 6) for _, score in found],
        "lang": lang,
        "status": OK,
    }
