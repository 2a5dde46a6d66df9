"""Person names: a pluggable NER interface plus an offline gazetteer recognizer.

The gazetteer recognizer uses US Census first-name and surname lists (see data/build_gazetteer.py),
a list of common English words, titles and context cues. It never fetches anything at run time.
A spaCy pipeline is used only when one is installed as a package; both can run together.
"""

from __future__ import annotations

import gzip
import re
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol, runtime_checkable

# Token classes.
_F, _FA, _L, _LA, _W, _U, _TITLE, _INITIAL, _P = range(9)

_TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "lady", "lord", "rev",
           "capt", "captain", "sgt", "officer", "judge", "det", "detective", "nurse", "madam", "mister"}

# Capitalised words that are census names yet, standing alone or in a row, are mostly something else.
_NOT_NAMES = set("""
january february march april may june july august september october november december monday tuesday
wednesday thursday friday saturday sunday christmas easter halloween thanksgiving street st avenue ave road rd
boulevard blvd lane ln drive court place terrace way parkway highway circle square close crescent gardens
grove row trail alley plaza north south east west inc ltd llc corp co company bank university college school
hospital clinic group team support service services customer client admin administrator manager office
department the a an and or of in on at to for by with from dear hi hello hey thanks regards best sincerely
cheers please note ticket order invoice account version release update build server api ip mac iban visa
mastercard amex paypal google apple microsoft amazon windows linux android iphone ios slack zoom teams
texas georgia virginia carolina dakota indiana montana nevada florida california washington jersey york
paris london berlin madrid rome sydney phoenix denver austin dallas houston charlotte madison lincoln
jackson florence augusta victoria columbia israel india china jordan kenya chad america europe asia africa
england scotland wales ireland france germany spain italy canada mexico brazil japan god lord jesus
""".split())

_REST = r"(?:(?:[a-z]+(?:[A-Z][a-z]+)?|['’][A-Z][a-z]+)(?:-[A-Z][a-z]+)?(?![\w@])|\.(?=\s))"
# A run of capitalised words (or initials "K.") separated by a space, or by ". " (kept only after a title).
_CAP_RUN = re.compile(rf"[A-Z](?<![\w@./:#\\-][A-Z]){_REST}(?:\.? [A-Z]{_REST})*")
# Context cues, matched with str.endswith on the lower-cased text before a run (then a word-boundary check).
_STRONG_CUES = ("my name is", "name is", "name:", "name", "dear", "signed", "signed by", "sincerely", "regards",
                "attn", "attention", "named", "called", "patient", "employee", "applicant", "tenant", "cardholder",
                "account holder", "contact person", "best", "cheers", "thanks", "thank you", "i am", "i'm",
                "this is")
_WEAK_CUES = ("hi", "hello", "hey", "from", "contact", "ask for", "speak to", "speak with", "spoke to",
              "spoke with", "talked to", "cc", "by", "with", "for", "and", "customer", "client", "user", "met",
              "emailed", "called", "to")


_ALL_CUES = _STRONG_CUES + _WEAK_CUES
_STRONG, _WEAK = 1, 2  # bits of `_cue_mask`
_STRIP = " ,:;-"


def _ends_with_cue(before: str, cues: tuple[str, ...]) -> bool:
    if not before.endswith(cues):
        return False
    for cue in cues:
        if before.endswith(cue):
            k = len(before) - len(cue)
            if k == 0 or not before[k - 1].isalnum():
                return True
    return False


def _cue_mask(text: str, start: int) -> int:
    """Which cues (`_STRONG`, `_WEAK` bits) end the text before `start`, ignoring trailing " ,:;-"."""
    before = text[start - 24 if start > 24 else 0:start].lower().rstrip(_STRIP)
    if not before.endswith(_ALL_CUES):
        return 0
    return (_STRONG if _ends_with_cue(before, _STRONG_CUES) else 0) | (_WEAK if _ends_with_cue(before, _WEAK_CUES) else 0)


_SINGLE_SKIP = frozenset((_W, _INITIAL, _TITLE, _P))
_NOTHING_TO_FIND = frozenset((_W, _INITIAL, _P))  # a run of only these holds no name (no title either)


@runtime_checkable
class NameRecognizer(Protocol):
    """Anything that finds person names: returns half-open character ranges in `text`."""

    def find_names(self, text: str) -> list[tuple[int, int]]: ...


def _load(name: str) -> list[str]:
    ref = resources.files("shared.pii").joinpath("data", name)
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        return [line.strip() for line in fh if line.strip()]


@lru_cache(maxsize=1)
def _lexicon() -> dict[str, int]:
    """Lower-cased word -> token class. Later assignments win: unambiguous names beat common words."""
    lex: dict[str, int] = {}
    for w in _load("common_words.txt.gz"):
        lex[w] = _W
    for w in _load("surnames.txt.gz"):
        lex[w.rstrip("*")] = _LA if w.endswith("*") else _L
    for w in _load("first_names.txt.gz"):
        lex[w.rstrip("*")] = _FA if w.endswith("*") else _F
    for w in _NOT_NAMES:
        # A census name that is mostly a place or a month ("Jackson", "Austin", "June") still counts
        # after a title or a first name ("Dr. Jackson", "Andrew Jackson").
        lex[w] = _P if lex.get(w) in (_F, _FA, _L, _LA) else _W
    for w in _TITLES:
        lex[w] = _TITLE
    return lex


class _CueElsewhere(Exception):
    """A run's outcome depends on a cue before one of its later words, not only before its first."""


def _answers(mask: int) -> Any:
    def ask(pos: int, bit: int) -> bool:
        if pos:
            raise _CueElsewhere
        return bool(mask & bit)
    return ask


class GazetteerNameRecognizer:
    """Census names + capitalisation + titles + context cues, tuned against common capitalised words.

    The same capitalised runs recur from text to text, so each distinct run gets a cached plan: the names
    it holds (offsets relative to the run) when that is fixed, else a table of them by the cues found right
    before the run (`_cue_mask`), filled as masks occur, else (rarely: a cue could end inside the run) its
    decision re-run with live cue checks."""

    max_tokens = 4
    max_plans = 4096  # per generation

    def __init__(self) -> None:
        self._lex = _lexicon()
        self._cache: dict[str, int] = {}
        # run -> () nothing | tuple of (start, end) | list: 4 slots by cue mask + the decision | callable.
        # Two generations, each bounded: runs still in use move from the old one to the new one, so the
        # recurring ones survive a turnover while one-off phrases (most names) do not pile up per worker.
        self._plans: dict[str, Any] = {}
        self._old_plans: dict[str, Any] = {}

    def _classify(self, word: str) -> int:
        if len(word) == 2 and word[1] == ".":
            return _INITIAL
        low = word.lower()
        cls = self._lex.get(low)
        if cls is None and "-" in low:
            parts = [self._lex.get(p) for p in low.split("-")]
            cls = _L if any(p in (_F, _L, _FA, _LA) for p in parts) else _U
        if cls is None and low.endswith("s") and self._lex.get(low[:-1]) == _W:
            cls = _W
        return _U if cls is None else cls

    def _cls(self, word: str) -> int:
        cls = self._cache.get(word)
        if cls is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            cls = self._cache[word] = self._classify(word)
        return cls

    def find_names(self, text: str) -> list[tuple[int, int]]:
        return [(s, e) for s, e, _ in self.collect(text, [], None)]

    def collect(self, text: str, out: list[tuple[int, int, Any]], tag: Any) -> list[tuple[int, int, Any]]:
        """`find_names`, appending `(start, end, tag)` to `out` (the redactor's findings) and returning it."""
        plans = self._plans
        for m in _CAP_RUN.finditer(text):
            seg = m.group()
            plan = plans.get(seg)
            if plan is None:
                start = m.start()
                plan, spans = self._plan(seg, text, start)
                if spans is not None:
                    for a, b in spans:
                        out.append((start + a, start + b, tag))
                    continue
            if not plan:
                continue
            start = m.start()
            if plan.__class__ is list:
                mask = _cue_mask(text, start)
                spans = plan[mask]
                if spans is None:
                    spans = self._fill(seg, plan, mask, text, start)
            elif plan.__class__ is tuple:
                spans = plan
            else:
                spans = plan(text, start)
            for a, b in spans:
                out.append((start + a, start + b, tag))
        return out

    def _plan(self, seg: str, text: str, start: int) -> tuple[Any, Any]:
        """The plan for a run not in the current generation, and, when it had to be made, the names of
        this occurrence (at `start` in `text`); else None: the caller applies the plan."""
        if len(self._plans) >= self.max_plans:
            self._old_plans, self._plans = self._plans, {}
        plan = self._old_plans.get(seg)
        if plan is not None:
            self._plans[seg] = plan
            return plan, None
        plan = spans = ()
        if " " not in seg:
            cls = self._cls(seg)
            if cls == _F:
                plan = spans = ((0, len(seg)),)
            elif cls not in _SINGLE_SKIP:
                plan, spans = self._decided(lambda ask: self._single_name(seg, cls, ask), text, start)
        else:
            runs = self._segment_runs(seg)
            if runs:
                plan, spans = self._decided(lambda ask: self._run_names(seg, runs, ask), text, start)
        self._plans[seg] = plan
        return plan, spans

    def _decided(self, decide: Any, text: str, start: int) -> tuple[Any, tuple[tuple[int, int], ...]]:
        """Runs `decide(ask)` (the names of a run at `start`; `ask(pos, bit)`: does cue `bit` precede run
        position `pos`) on the text, and makes the run's plan from the cues it asked about."""
        mask = -1
        elsewhere = False

        def ask(pos: int, bit: int) -> bool:
            nonlocal mask, elsewhere
            if pos:
                elsewhere = True
                return bool(_cue_mask(text, start + pos) & bit)
            if mask < 0:
                mask = _cue_mask(text, start)
            return bool(mask & bit)

        spans = tuple(decide(ask))
        if elsewhere:
            return self._live(decide), spans
        if mask < 0:
            return spans, spans
        plan: list[Any] = [None, None, None, None, decide]
        plan[mask] = spans
        return plan, spans

    def _fill(self, seg: str, plan: list[Any], mask: int, text: str, start: int) -> Any:
        try:
            spans = plan[mask] = tuple(plan[4](_answers(mask)))
        except _CueElsewhere:
            live = self._plans[seg] = self._live(plan[4])
            spans = live(text, start)
        return spans

    @staticmethod
    def _live(decide: Any) -> Any:
        def run(text: str, start: int) -> list[tuple[int, int]]:
            return decide(lambda pos, bit: bool(_cue_mask(text, start + pos) & bit))
        return run

    @staticmethod
    def _single_name(seg: str, cls: int, ask: Any) -> list[tuple[int, int]]:
        """A one-word run: a first name is a name; anything else needs a cue."""
        if ask(0, _STRONG) or (cls in (_L, _FA) and ask(0, _WEAK)):
            return [(0, len(seg))]
        return []

    def _segment_runs(self, seg: str) -> list[list[tuple[int, int, int]]]:
        """A multi-word run split at sentence ends into classified tokens, offsets relative to the run.
        Runs of only common words/initials/places are dropped, as `_run_names` finds nothing in them."""
        runs: list[list[tuple[int, int, int]]] = []
        run: list[tuple[int, int, int]] = []
        pos = 0
        for word in seg.split(" "):
            end = pos + len(word)
            if word.endswith(".") and len(word) > 2:
                cls = self._cls(word[:-1])
                run.append((pos, end - 1, cls))
                if cls != _TITLE:  # sentence end: "... Smith. The ..."
                    runs.append(run)
                    run = []
            else:
                run.append((pos, end, self._cls(word)))
            pos = end + 1
        if run:
            runs.append(run)
        return [r for r in runs if any(cls not in _NOTHING_TO_FIND for _, _, cls in r)]

    def _run_names(self, seg: str, runs: list[list[tuple[int, int, int]]], ask: Any) -> list[tuple[int, int]]:
        """Names in a multi-word run, offsets relative to it. `ask(pos, bit)` answers whether cue `bit`
        precedes run position `pos`; inside the run it is asked only when the words before could end in one."""
        found: list[tuple[int, int]] = []

        def cue(pos: int, bit: int) -> bool:
            if pos and not _cue_possible(seg[:pos].lower().rstrip(_STRIP), bit):
                return False
            return ask(pos, bit)

        for run in runs:
            i, n = 0, len(run)
            while i < n:
                cls = run[i][2]
                if cls == _TITLE:
                    j = i + 1
                    while j < n and j - i <= self.max_tokens and run[j][2] not in (_W, _TITLE):
                        j += 1
                    if j > i + 1:
                        found.append((run[i + 1][0], run[j - 1][1]))
                    i = j if j > i + 1 else i + 1
                    continue
                if cls in (_W, _INITIAL, _P):
                    i += 1
                    continue
                # Extend over following name-like tokens.
                j = i + 1
                while j < n and j - i < self.max_tokens and run[j][2] in (_F, _FA, _L, _LA, _U, _INITIAL, _P):
                    j += 1
                while j - 1 > i and run[j - 1][2] == _INITIAL:
                    j -= 1
                if self._is_name(run[i][0], [t[2] for t in run[i:j]], cue):
                    found.append((run[i][0], run[j - 1][1]))
                    i = j
                else:
                    i += 1
        return found

    @staticmethod
    def _is_name(start: int, classes: list[int], cue: Any) -> bool:
        first = classes[0]
        nxt = None
        for c in classes[1:]:
            if c != _INITIAL:
                nxt = c
                break
        if first == _F and nxt in (None, _L, _LA, _U, _F, _FA, _P):
            return True
        if first == _FA and nxt in (_L, _U, _F):
            return True
        if first in (_U, _L) and nxt == _L:
            return True
        if cue(start, _STRONG):
            return True
        if (nxt in (_L, _LA, _FA, _U, _F) and first in (_L, _LA, _FA, _U)) or (nxt is None and first in (_L, _FA)):
            return cue(start, _WEAK)
        return False


def _cue_possible(words_before: str, bit: int) -> bool:
    """Whether a cue can end a text that ends with `words_before` (lower-cased and stripped as `_cue`
    does): a cue either ends inside these words or covers all of them and reaches further back."""
    cues = _STRONG_CUES if bit == _STRONG else _WEAK_CUES
    return any(words_before.endswith(c) or c.endswith(words_before) for c in cues)


class SpacyNameRecognizer:
    """Adapter for a loaded spaCy `Language`: PERSON/PER entities become name spans."""

    labels = frozenset({"PERSON", "PER"})

    def __init__(self, nlp: Any) -> None:
        self._nlp = nlp

    def find_names(self, text: str) -> list[tuple[int, int]]:
        doc = self._nlp(text)
        return [(ent.start_char, ent.end_char) for ent in doc.ents if ent.label_ in self.labels]


class CombinedNameRecognizer:
    """Union of several recognizers (overlaps are resolved by the redactor)."""

    def __init__(self, *recognizers: NameRecognizer) -> None:
        self._recognizers = recognizers

    def find_names(self, text: str) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for r in self._recognizers:
            out.extend(r.find_names(text))
        return out


SPACY_MODELS = ("en_core_web_trf", "en_core_web_lg", "en_core_web_md", "en_core_web_sm")


@lru_cache(maxsize=1)
def default_name_recognizer() -> NameRecognizer:
    """The gazetteer, joined by an installed spaCy English pipeline when there is one (never downloaded)."""
    gazetteer = GazetteerNameRecognizer()
    try:
        import spacy
        from spacy.util import is_package
    except ImportError:
        return gazetteer
    for model in SPACY_MODELS:
        if is_package(model):
            nlp = spacy.load(model, disable=["parser", "lemmatizer", "tagger", "attribute_ruler"])
            return CombinedNameRecognizer(SpacyNameRecognizer(nlp), gazetteer)
    return gazetteer
