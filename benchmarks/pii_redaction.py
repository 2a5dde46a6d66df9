"""PII redaction: Quorum's `shared.pii` against Presidio (no_op NLP engine) on the same generated corpus.

    .venv/bin/python benchmarks/pii_redaction.py [--docs 2000] [--seed 7]

Creates `.bench/presidio-venv` (presidio-analyzer + presidio-anonymizer) if it is missing and runs
Presidio there in a subprocess. Prints throughput (docs/s, CPU time of the redacting process, best of
`--repeats`; wall time alongside), per-entity precision/recall/F1 for both, and the hard-negative
false-positive rate. Matching is by overlap: a finding counts when it overlaps a ground-truth span of the
same type. Presidio is scored at its out-of-the-box threshold (0) and at 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.datagen.pii_corpus import iter_corpus  # noqa: E402
from shared.pii import EntityType, Redactor, default_name_recognizer  # noqa: E402

VENV = ROOT / ".bench" / "presidio-venv"
PRESIDIO_TO_OURS = {
    "EMAIL_ADDRESS": "EMAIL", "PHONE_NUMBER": "PHONE", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN", "UK_NINO": "UK_NINO", "ES_NIF": "ES_NIF", "IP_ADDRESS": "IP_ADDRESS",
    "MAC_ADDRESS": "MAC_ADDRESS", "URL": "URL_CREDENTIALS", "DATE_TIME": "DATE_OF_BIRTH", "PERSON": "PERSON",
    "LOCATION": "STREET_ADDRESS",
}

PRESIDIO_WORKER = r'''
import json, sys, time
import tldextract
tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider
from presidio_anonymizer import AnonymizerEngine

texts = [json.loads(line)["data"]["text"] for line in open(sys.argv[1], encoding="utf-8")]
repeats = int(sys.argv[2])
provider = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "no_op",
                                                "models": [{"lang_code": "en", "model_name": "no_op"}]})
analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
anonymizer = AnonymizerEngine()
for t in texts[:20]:
    anonymizer.anonymize(text=t, analyzer_results=analyzer.analyze(text=t, language="en"))
best_cpu = best_wall = float("inf")
found = []
for r in range(repeats):
    found = []
    c0, w0 = time.process_time(), time.perf_counter()
    for t in texts:
        res = analyzer.analyze(text=t, language="en")
        anonymizer.anonymize(text=t, analyzer_results=res)
        found.append([[x.start, x.end, x.entity_type, x.score] for x in res])
    best_cpu = min(best_cpu, time.process_time() - c0)
    best_wall = min(best_wall, time.perf_counter() - w0)
from importlib.metadata import version
print(json.dumps({"cpu_s": best_cpu, "wall_s": best_wall, "found": found,
                  "supported": sorted(analyzer.get_supported_entities("en")),
                  "version": version("presidio-analyzer")}))
'''


def ensure_presidio() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        print(f"creating {VENV} (presidio-analyzer, presidio-anonymizer) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "presidio-analyzer", "presidio-anonymizer"],
                       check=True)
    return py


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(docs, predictions) -> tuple[dict[str, dict[str, float]], float, dict[str, float]]:
    """predictions[i] = [(start, end, our_type_or_other)]. Returns per-type P/R/F1, hard-negative FP rate."""
    gold_n = defaultdict(int)
    gold_hit = defaultdict(int)
    pred_n = defaultdict(int)
    pred_ok = defaultdict(int)
    neg_n = 0
    neg_hit = 0
    neg_kind_n = defaultdict(int)
    neg_kind_hit = defaultdict(int)
    for doc, preds in zip(docs, predictions):
        for s, e, t in doc.spans:
            gold_n[t] += 1
            if any(pt == t and overlaps((s, e), (ps, pe)) for ps, pe, pt in preds):
                gold_hit[t] += 1
        for ps, pe, pt in preds:
            pred_n[pt] += 1
            if any(t == pt and overlaps((s, e), (ps, pe)) for s, e, t in doc.spans):
                pred_ok[pt] += 1
        for s, e, kind in doc.negatives:
            neg_n += 1
            neg_kind_n[kind] += 1
            if any(overlaps((s, e), (ps, pe)) for ps, pe, _ in preds):
                neg_hit += 1
                neg_kind_hit[kind] += 1
    table = {}
    for t in [e.value for e in EntityType]:
        p = pred_ok[t] / pred_n[t] if pred_n[t] else 0.0
        r = gold_hit[t] / gold_n[t] if gold_n[t] else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        table[t] = {"precision": p, "recall": r, "f1": f, "gold": gold_n[t], "predicted": pred_n[t]}
    per_kind = {k: neg_kind_hit[k] / neg_kind_n[k] for k in sorted(neg_kind_n)}
    return table, (neg_hit / neg_n if neg_n else 0.0), per_kind


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    docs = list(iter_corpus(args.docs, args.seed))
    words = sum(len(d.text.split()) for d in docs) / len(docs)
    print(f"corpus: {len(docs)} docs, seed {args.seed}, {words:.0f} words/doc, "
          f"{sum(len(d.spans) for d in docs)} PII spans, {sum(len(d.negatives) for d in docs)} hard negatives")

    # --- Quorum ---
    redactor = Redactor()
    names = type(default_name_recognizer()).__name__
    for d in docs[:20]:
        redactor.redact(d.text)
    best_cpu = best_wall = float("inf")
    for _ in range(args.repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        for d in docs:
            redactor.redact(d.text)
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    ours_preds = [[(s.start, s.end, s.entity_type.value) for s in redactor.find(d.text)] for d in docs]
    ours_rate, ours_wall_rate = len(docs) / best_cpu, len(docs) / best_wall

    # --- Presidio, in its own venv ---
    py = ensure_presidio()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps({"data": {"text": d.text}}) + "\n" for d in docs), encoding="utf-8")
        worker = Path(tmp) / "presidio_worker.py"
        worker.write_text(PRESIDIO_WORKER)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
        proc = subprocess.run([str(py), str(worker), str(corpus), str(args.repeats)], capture_output=True,
                              text=True, env=env, check=False)
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        return 1
    pres = json.loads(proc.stdout.strip().splitlines()[-1])
    pres_rate, pres_wall_rate = len(docs) / pres["cpu_s"], len(docs) / pres["wall_s"]
    supported = {PRESIDIO_TO_OURS[e] for e in pres["supported"] if e in PRESIDIO_TO_OURS}

    def presidio_preds(threshold: float):
        return [[(s, e, PRESIDIO_TO_OURS.get(t, "OTHER:" + t)) for s, e, t, sc in found if sc >= threshold]
                for found in pres["found"]]

    ours_table, ours_fp, ours_kinds = score(docs, ours_preds)
    p0_table, p0_fp, p0_kinds = score(docs, presidio_preds(0.0))
    p5_table, p5_fp, p5_kinds = score(docs, presidio_preds(0.5))

    print(f"\nname recognizer: {names}; presidio {pres['version']} (no_op NLP engine)")
    print(f"throughput (CPU time): quorum {ours_rate:,.0f} docs/s, presidio {pres_rate:,.0f} docs/s, "
          f"ratio {ours_rate / pres_rate:.1f}x")
    print(f"throughput (wall):     quorum {ours_wall_rate:,.0f} docs/s, presidio {pres_wall_rate:,.0f} docs/s, "
          f"ratio {ours_wall_rate / pres_wall_rate:.1f}x")
    hdr = (f"\n{'entity':16s} {'gold':>5s} | {'quorum P':>8s} {'R':>5s} {'F1':>5s} | "
           f"{'presidio@0 P':>12s} {'R':>5s} {'F1':>5s} | {'presidio@0.5 P':>14s} {'R':>5s} {'F1':>5s}")
    print(hdr)
    rows = []
    for t in [e.value for e in EntityType]:
        o, a, b = ours_table[t], p0_table[t], p5_table[t]
        sup = t in supported
        pa = f"{a['precision']:12.3f} {a['recall']:5.3f} {a['f1']:5.3f}" if sup else f"{'n/a':>12s} {'-':>5s} {'-':>5s}"
        pb = f"{b['precision']:14.3f} {b['recall']:5.3f} {b['f1']:5.3f}" if sup else f"{'n/a':>14s} {'-':>5s} {'-':>5s}"
        print(f"{t:16s} {o['gold']:5d} | {o['precision']:8.3f} {o['recall']:5.3f} {o['f1']:5.3f} | {pa} | {pb}")
        rows.append((t, o, a if sup else None, b if sup else None))
    print(f"\nhard-negative false-positive rate: quorum {ours_fp:.3%}, presidio@0 {p0_fp:.3%}, presidio@0.5 {p5_fp:.3%}")
    print("  per kind (quorum / presidio@0 / presidio@0.5): " + ", ".join(
        f"{k} {ours_kinds[k]:.0%}/{p0_kinds[k]:.0%}/{p5_kinds[k]:.0%}" for k in ours_kinds))
    worse = [t for t, o, a, _ in rows if a is not None and o["recall"] + 1e-9 < a["recall"]]
    print(f"\nrecall >= presidio@0 on every entity type it supports: {'yes' if not worse else 'NO: ' + ', '.join(worse)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
