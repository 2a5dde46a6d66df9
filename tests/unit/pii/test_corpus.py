"""The PII corpus generator is deterministic and its ground truth lines up with the text."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from benchmarks.datagen.pii_corpus import iter_corpus, iter_labelled, main, make_doc  # noqa: E402

from shared.pii import EntityType  # noqa: E402


def test_deterministic_and_seed_dependent() -> None:
    assert make_doc(5, seed=1) == make_doc(5, seed=1)
    assert make_doc(5, seed=1).text != make_doc(5, seed=2).text


def test_spans_are_valid_and_cover_every_type() -> None:
    seen = set()
    kinds = set()
    for doc in iter_corpus(400, seed=0):
        assert 150 <= len(doc.text.split()) <= 320
        for s, e, t in doc.spans + doc.negatives:
            assert 0 <= s < e <= len(doc.text)
            assert doc.text[s:e].strip() == doc.text[s:e]
        seen.update(t for _, _, t in doc.spans)
        kinds.update(k for _, _, k in doc.negatives)
    assert seen == {e.value for e in EntityType}
    assert {"order", "version", "timestamp", "isbn", "tracking", "price", "bad_card", "bad_iban"} <= kinds
    text, spans = next(iter_labelled(1, seed=0))
    assert text and all(len(s) == 3 for s in spans)


def test_cli_writes_label_studio_style_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "tasks.jsonl"
    assert main(["--n", "25", "--seed", "4", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 25
    assert set(rows[0]) == {"data"} and rows[0]["data"]["text"] == make_doc(0, seed=4).text
