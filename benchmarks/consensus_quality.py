"""Accuracy of Quorum's categorical aggregation next to crowd-kit 1.4.2 and the published figures.

    .venv/bin/python benchmarks/consensus_quality.py [--datasets a,b] [--jobs 2] [--json out.json]

Every dataset in ../shared/datasets/crowd (except the numeric zheng_n_emotion). crowd-kit runs in its own venv
(`.bench/crowdkit-venv`, created on first use) in subprocesses, `--jobs` datasets at a time, while ours run
in this process. Prints one table per method (ours | crowd-kit | published | seconds), the means, and checks
the targets of issue 5.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.consensus_crowdkit import ensure_venv, run_in_venv  # noqa: E402
from services.consensus.aggregation import DEFAULT_METHOD, METHODS, dawid_skene  # noqa: E402
from services.consensus.aggregation.io import read_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CROWD = ROOT.parent / "shared" / "datasets" / "crowd"
SKIP = {"zheng_n_emotion"}

# our method -> crowd-kit method it is compared with, and the published (JOSS table) column
PAIRS = [
    ("majority_vote", "MV", "MV"),
    ("weighted_majority_vote", "Wawa", "Wawa"),
    ("dawid_skene", "DS (no early stop)", "DS"),
    ("dawid_skene[100 iter]", "DS (no early stop)", "DS"),
    ("dawid_skene[crowdkit-stop]", "DS", "DS"),
    ("one_coin_dawid_skene", "OneCoinDS", None),
    ("glad", "GLAD", "GLAD"),
    ("mace", "MACE (consistent ids)", "MACE"),
    ("mace", "MACE", "MACE"),
    (DEFAULT_METHOD, "DS", "DS"),
]
CK_MEAN_METHODS = ["MV", "Wawa", "ZBS", "DS", "OneCoinDS", "GLAD", "MACE"]


def published(sources: str) -> dict[str, dict[str, float]]:
    """Per dataset: the crowd-kit JOSS table values and the repo-notebook IBCC/EBCC quoted in SOURCES.md."""
    out: dict[str, dict[str, float]] = {}
    for block in re.split(r"\n### ", sources)[1:]:
        name = block.split(" ", 1)[0].strip()
        vals: dict[str, float] = {}
        joss = re.search(r"crowd-kit JOSS table: ([^\[]+)\[", block)
        if joss:
            for method, value in re.findall(r"([A-Za-z-]+) (0\.\d+)", joss.group(1)):
                vals[method] = float(value)
        for method in ("IBCC", "EBCC"):
            m = re.search(rf"{method} (0\.\d+)", block)
            if m:
                vals[method] = float(m.group(1))
        out[name] = vals
    return out


def run_ours(folder: Path) -> tuple[dict, list]:
    data, gold = read_dataset(folder)
    gi = np.array([data.task_position[t] for t in gold if t in data.task_position])
    gl = np.array([data.classes.index(v) for t, v in gold.items() if t in data.task_position])
    res: dict = {}
    fns = dict(METHODS)
    fns["dawid_skene[crowdkit-stop]"] = lambda d: dawid_skene(d, stopping="crowdkit")
    fns["dawid_skene[100 iter]"] = lambda d: dawid_skene(d, max_iter=100, tol=-1.0)
    mv_labels = None
    for name, fn in fns.items():
        t = time.perf_counter()
        r = fn(data)
        dt = time.perf_counter() - t
        res[name] = {"accuracy": float((r.label_idx[gi] == gl).mean()), "seconds": dt}
        if name == "majority_vote":
            counts = data.vote_counts[gi]
            top = counts.max(axis=1, keepdims=True)
            tied = (counts == top).sum(axis=1) > 1
            mv_labels = [(str(data.task_ids[i]), str(r.classes[r.label_idx[i]]), bool(t)) for i, t in zip(gi, tied)]
    return res, mv_labels


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    names = [p.name for p in sorted(CROWD.iterdir()) if p.is_dir() and p.name not in SKIP]
    if args.datasets:
        names = [n for n in names if n in args.datasets.split(",")]
    ensure_venv()
    pub = published((CROWD / "SOURCES.md").read_text())

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        ck_futures = {n: pool.submit(run_in_venv, ["quality", str(CROWD / n)]) for n in names}
        ours = {n: run_ours(CROWD / n) for n in names}
        ck = {n: f.result() for n, f in ck_futures.items()}
    print(f"(all runs: {time.perf_counter() - t0:.0f} s wall)\n")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    lines: list[str] = []
    for ours_name, ck_name, pub_name in PAIRS:
        lines.append(f"\n### {ours_name} vs crowd-kit {ck_name}\n")
        lines.append("| dataset | ours | crowd-kit | Δ pp | published | ours s | crowd-kit s | speed-up |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for n in names:
            o, c = ours[n][0][ours_name], ck[n][ck_name]
            p = pub[n].get(pub_name) if pub_name else None
            lines.append(f"| {n} | {fmt(o['accuracy'])} | {fmt(c['accuracy'])} | "
                         f"{100 * (o['accuracy'] - c['accuracy']):+.2f} | {fmt(p)} | {o['seconds']:.3f} | "
                         f"{c['seconds']:.2f} | {c['seconds'] / max(o['seconds'], 1e-6):.0f}× |")

    lines.append("\n### Mean accuracy over all datasets\n")
    lines.append("| method | mean |")
    lines.append("|---|---:|")
    ours_means = {m: float(np.mean([ours[n][0][m]["accuracy"] for n in names])) for m in ours[names[0]][0]}
    ck_means = {m: float(np.mean([ck[n][m]["accuracy"] for n in names])) for m in ck[names[0]]}
    for m, v in sorted(ours_means.items(), key=lambda kv: -kv[1]):
        lines.append(f"| ours: {m} | {v:.4f} |")
    for m, v in sorted(ck_means.items(), key=lambda kv: -kv[1]):
        lines.append(f"| crowd-kit: {m} | {v:.4f} |")

    # ---------------------------------------------------------------- targets
    checks: list[tuple[str, bool, str]] = []

    def within(ours_name: str, ck_name: str, pp: float = 0.5) -> tuple[bool, str]:
        bad = [f"{n} {100 * (ours[n][0][ours_name]['accuracy'] - ck[n][ck_name]['accuracy']):+.2f}"
               for n in names if abs(ours[n][0][ours_name]["accuracy"] - ck[n][ck_name]["accuracy"]) > pp / 100]
        return not bad, ", ".join(bad) or "all datasets"

    ok, why = within("majority_vote", "MV")
    checks.append(("MV within 0.5 pp of crowd-kit MV on every dataset", ok, why))
    untied_diff = []
    tied_diff = []
    below = []
    for n in names:
        ck_labels = ck[n]["MV"]["labels"]
        diff = sum(1 for t, lab, tied in ours[n][1] if not tied and ck_labels.get(t) != lab)
        if diff:
            untied_diff.append(f"{n}: {diff}")
        n_tied = sum(1 for _, _, tied in ours[n][1] if tied)
        diff = sum(1 for t, lab, tied in ours[n][1] if tied and ck_labels.get(t) != lab)
        if diff:
            tied_diff.append(f"{n}: {diff} of {n_tied}")
        if ours[n][0]["majority_vote"]["accuracy"] < ck[n]["MV"]["accuracy"] - 0.005:
            below.append(n)
    checks.append(("MV: same label as crowd-kit on every untied gold task",
                   not untied_diff, ", ".join(untied_diff) or "identical"))
    checks.append(("MV: same label as crowd-kit on every tied gold task (ties: label seen first)",
                   not tied_diff, ", ".join(tied_diff) or "identical"))
    checks.append(("MV never more than 0.5 pp below crowd-kit MV", not below, ", ".join(below) or "all datasets"))
    ok, why = within("dawid_skene[crowdkit-stop]", "DS")
    checks.append(("DS (crowd-kit's stopping rule) within 0.5 pp of crowd-kit DS", ok, why))
    ok, why = within("dawid_skene[100 iter]", "DS (no early stop)")
    checks.append(("DS (100 iterations) within 0.5 pp of crowd-kit DS run to 100 iterations", ok, why))
    ok, why = within("glad", "GLAD")
    checks.append(("GLAD within 0.5 pp of crowd-kit GLAD", ok, why))
    ok, why = within("mace", "MACE (consistent ids)")
    checks.append(("MACE within 0.5 pp of crowd-kit MACE (consistent ids)", ok, why))
    bad = []
    for n in names:
        d = ours[n][0][DEFAULT_METHOD]["accuracy"]
        mv = max(ours[n][0]["majority_vote"]["accuracy"], ck[n]["MV"]["accuracy"])
        if d < mv - 0.01:
            bad.append(f"{n} {100 * (d - mv):+.2f}")
    checks.append((f"default ({DEFAULT_METHOD}) never > 1 pp below MV (ours or crowd-kit's)", not bad,
                   ", ".join(bad) or "all datasets"))
    best_ck = max(CK_MEAN_METHODS, key=lambda m: ck_means[m])
    ok = ours_means[DEFAULT_METHOD] > ck_means[best_ck]
    checks.append((f"default mean beats every crowd-kit method's mean", ok,
                   f"{ours_means[DEFAULT_METHOD]:.4f} vs best crowd-kit {best_ck} {ck_means[best_ck]:.4f}"))
    for ours_name, ck_name in (("glad", "GLAD"), ("mace", "MACE")):
        o = sum(ours[n][0][ours_name]["seconds"] for n in names)
        c = sum(ck[n][ck_name]["seconds"] for n in names)
        checks.append((f"{ck_name}: total time ours vs crowd-kit ≥ 10×", c / o >= 10,
                       f"{o:.1f} s vs {c:.1f} s = {c / o:.0f}×"))
    lines.append("\n### Targets\n")
    lines.append("| target | result | detail |")
    lines.append("|---|---|---|")
    for name, ok, why in checks:
        lines.append(f"| {name} | {'PASS' if ok else 'FAIL'} | {why} |")
    text = "\n".join(lines)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"ours": {n: ours[n][0] for n in names},
                                               "crowdkit": {n: {m: {k: v for k, v in e.items() if k != "labels"}
                                                                for m, e in ck[n].items()} for n in names}},
                                              indent=1))


if __name__ == "__main__":
    main()
