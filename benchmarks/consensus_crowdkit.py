"""crowd-kit side of the consensus benchmarks: its own venv, and a runner executed inside it.

`ensure_venv()` creates `.bench/crowdkit-venv` (crowd-kit 1.4.2, scikit-learn<1.6: Wawa and ZeroBasedSkill
break on newer scikit-learn) if it is missing. `run_in_venv(args)` runs this file with that venv's Python;
the `__main__` part below only imports pandas/crowd-kit, never Quorum code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".bench" / "crowdkit-venv"
VENV_PY = VENV / "bin" / "python"
# pandas 3 orders majority-vote ties by first appearance (pandas 2 sorted them): the published crowd-kit MV
# figures in SOURCES.md are pandas-3 ones, and ours reproduce that rule.
PINS = ["crowd-kit==1.4.2", "scikit-learn<1.6", "pandas>=3,<4"]


def ensure_venv() -> Path:
    ok = VENV_PY.exists() and subprocess.run([str(VENV_PY), "-c", "import crowdkit.aggregation"],
                                             capture_output=True).returncode == 0
    if not ok:
        print(f"creating {VENV} and installing {' '.join(PINS)} (takes a few minutes)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV_PY), "-m", "pip", "install", "-q", *PINS], check=True)
    return VENV_PY


def run_in_venv(args: list[str], timeout: float | None = None) -> dict:
    out = subprocess.run([str(ensure_venv()), __file__, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"crowd-kit runner failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- runner (inside the crowd-kit venv)
def _runner_quality(folder: str) -> dict:
    import time

    import numpy as np
    import pandas as pd
    from crowdkit.aggregation import (
        GLAD,
        MACE,
        DawidSkene,
        MajorityVote,
        OneCoinDawidSkene,
        Wawa,
        ZeroBasedSkill,
    )

    df = pd.read_csv(Path(folder) / "answers.csv")
    gold = pd.read_csv(Path(folder) / "gold.csv").set_index("task")["label"]
    # MACE indexes its strategy matrix by first-appearance codes but fills it in sorted order; re-coding ids
    # so both orders agree runs the model it describes (see benchmarks/RESULTS.md)
    consistent = df.copy()
    consistent["worker"] = pd.factorize(consistent["worker"])[0]
    first = consistent.groupby("label", sort=True).head(1).sort_values("label")
    consistent = pd.concat([first, consistent.drop(first.index)])
    consistent["worker"] = pd.factorize(consistent["worker"])[0]
    methods = {
        "MV": (lambda: MajorityVote(), df),
        "Wawa": (lambda: Wawa(), df),
        "ZBS": (lambda: ZeroBasedSkill(), df),
        "DS": (lambda: DawidSkene(n_iter=100), df),
        "DS (no early stop)": (lambda: DawidSkene(n_iter=100, tol=-np.inf), df),
        "OneCoinDS": (lambda: OneCoinDawidSkene(n_iter=100), df),
        "GLAD": (lambda: GLAD(), df),
        "MACE": (lambda: MACE(), df),
        "MACE (consistent ids)": (lambda: MACE(), consistent),
    }
    out: dict = {}
    for name, (make, data) in methods.items():
        t = time.perf_counter()
        labels = make().fit_predict(data)
        dt = time.perf_counter() - t
        common = gold.index.intersection(labels.index)
        acc = float((labels[common].astype(str) == gold[common].astype(str)).mean())
        entry = {"accuracy": acc, "seconds": dt}
        if name == "MV":
            entry["labels"] = {str(k): str(v) for k, v in labels.items()}
        out[name] = entry
    return out


def _runner_fit(csv_path: str, method: str, options: str) -> dict:
    import resource
    import time

    import numpy as np
    import pandas as pd
    from crowdkit import aggregation

    df = pd.read_csv(csv_path)
    opts = json.loads(options)
    if opts.get("tol") == "-inf":
        opts["tol"] = -np.inf
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    model = getattr(aggregation, method)(**opts)
    labels = model.fit_predict(df)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"seconds": dt, "peak_rss_mb": peak / 1024, "rss_before_fit_mb": before / 1024,
              "n_iter": len(getattr(model, "loss_history_", []) or [])}
    truth_col = Path(csv_path).with_suffix(".truth.npy")
    if truth_col.exists():
        truth = np.load(truth_col)
        result["accuracy"] = float((labels.sort_index().to_numpy() == truth).mean())
    gold_csv = Path(csv_path).parent / "gold.csv"
    if Path(csv_path).name == "answers.csv" and gold_csv.exists():
        gold = pd.read_csv(gold_csv).set_index("task")["label"]
        common = gold.index.intersection(labels.index)
        result["accuracy"] = float((labels[common].astype(str) == gold[common].astype(str)).mean())
    return result


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "quality":
        print(json.dumps(_runner_quality(sys.argv[2])))
    elif cmd == "fit":
        print(json.dumps(_runner_fit(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "{}")))
    else:
        raise SystemExit(f"unknown command {cmd}")
