"""Speed of Quorum's aggregation next to crowd-kit 1.4.2.

    .venv/bin/python benchmarks/consensus_speed.py [--labels 1000000] [--skip-crowdkit-ds]

1. Dawid-Skene full refit on generated labels (default 1,000,000: 200,000 tasks x 5 labels from 500 workers
   with known 3-class confusion matrices). Ours: time of the fit (and of building the AnswerMatrix from code
   arrays), peak traced memory (tracemalloc, in-process) and peak RSS of a fresh subprocess (ru_maxrss).
   crowd-kit: DawidSkene on the same rows in its own venv — its default (early stop) and 100 iterations without
   early stop — wall time of fit_predict and ru_maxrss. Accuracy against the planted truth for both.
2. GLAD and MACE on zheng_d_product (8,315 tasks, 24,945 labels), ours vs crowd-kit, time and accuracy.
3. Cheap per-task update (TaskPosteriorModel.posterior) latency for 5-label tasks.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.consensus_crowdkit import run_in_venv  # noqa: E402
from services.consensus.aggregation import (  # noqa: E402
    AnswerMatrix,
    TaskPosteriorModel,
    dawid_skene,
    glad,
    mace,
)
from services.consensus.aggregation.io import read_dataset  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CROWD = ROOT.parent / "shared" / "datasets" / "crowd"
K, WORKERS, PER_TASK = 3, 500, 5


def generate(n_labels: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_tasks = n_labels // PER_TASK
    off = rng.dirichlet(np.ones(K), size=(WORKERS, K))
    acc = rng.uniform(0.5, 0.9, size=(WORKERS, K))
    idx = np.arange(K)
    off[:, idx, idx] = 0
    conf = off / off.sum(axis=2, keepdims=True) * (1 - acc)[:, :, None]
    conf[:, idx, idx] = acc
    truth = rng.choice(K, size=n_tasks, p=[0.5, 0.3, 0.2])
    # PER_TASK distinct workers per task
    workers = (rng.integers(0, WORKERS, size=(n_tasks, 1)) + np.arange(PER_TASK) * 97) % WORKERS
    workers = workers.ravel().astype(np.int32)
    tasks = np.repeat(np.arange(n_tasks, dtype=np.int32), PER_TASK)
    cum = conf[workers, truth[tasks]].cumsum(axis=1)
    labels = np.minimum((rng.random((tasks.size, 1)) > cum).sum(axis=1), K - 1).astype(np.int32)
    return tasks, workers, labels, truth, conf


def ours_ds(tasks, workers, labels, truth, conf) -> dict:
    tracemalloc.start()
    t = time.perf_counter()
    data = AnswerMatrix.from_codes(tasks, workers, labels, n_classes=K)
    _ = data.task_by_worker_label, data.worker_label_by_task
    build = time.perf_counter() - t
    t = time.perf_counter()
    result = dawid_skene(data)
    fit = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # a second, untraced run for the time (tracemalloc slows allocation-heavy code)
    t = time.perf_counter()
    dawid_skene(data)
    fit_untraced = time.perf_counter() - t
    return {"build_s": build, "fit_s_traced": fit, "fit_s": fit_untraced, "n_iter": result.n_iter,
            "peak_traced_mb": peak / 2**20, "accuracy": float((result.label_idx == truth).mean()),
            "confusion_mae": float(np.abs(result.workers.confusion - conf).mean())}


def ours_ds_rss(npz: Path) -> dict:
    """Fit in a fresh interpreter that only loads the code arrays: ru_maxrss before/after is the fit's cost."""
    code = (f"import sys, resource, time, json; sys.path.insert(0, {str(ROOT)!r}); import numpy as np;"
            "from services.consensus.aggregation import AnswerMatrix, dawid_skene;"
            f"z = np.load({str(npz)!r});"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            "t = time.perf_counter(); d = AnswerMatrix.from_codes(z['tasks'], z['workers'], z['labels'], n_classes=3);"
            "r = dawid_skene(d); dt = time.perf_counter() - t;"
            "print(json.dumps({'seconds': dt, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss"
            " / 1024, 'rss_before_fit_mb': before / 1024}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def accuracy_on_gold(result, data, gold) -> float:
    gi = np.array([data.task_position[t] for t in gold])
    gl = np.array([data.classes.index(v) for v in gold.values()])
    return float((result.label_idx[gi] == gl).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--labels", type=int, default=1_000_000)
    ap.add_argument("--skip-crowdkit-ds", action="store_true", help="only our side of the 1M-label refit")
    args = ap.parse_args()
    tasks, workers, labels, truth, conf = generate(args.labels)

    ours = ours_ds(tasks, workers, labels, truth, conf)
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "codes.npz"
        np.savez(npz, tasks=tasks, workers=workers, labels=labels)
        rss = ours_ds_rss(npz)
        # the fit's own allocations: numpy reports them to tracemalloc; the RSS delta of a fresh process can
        # hide under the import-time high-water mark, so take the larger of the two
        ours_mem = max(rss["peak_rss_mb"] - rss["rss_before_fit_mb"], ours["peak_traced_mb"])
        print(f"DS refit, {args.labels:,} labels ({len(truth):,} tasks, {WORKERS} workers, {K} classes)")
        print(f"  ours: build AnswerMatrix {ours['build_s']:.3f} s, fit {ours['fit_s']:.3f} s "
              f"({ours['n_iter']} iterations), peak traced {ours['peak_traced_mb']:.0f} MB; fresh process: "
              f"build+fit {rss['seconds']:.3f} s, ru_maxrss {rss['peak_rss_mb']:.0f} MB "
              f"(+{rss['peak_rss_mb'] - rss['rss_before_fit_mb']:.0f} MB over the loaded arrays); "
              f"accuracy {ours['accuracy']:.4f}, confusion MAE {ours['confusion_mae']:.4f}")
        if not args.skip_crowdkit_ds:
            csv = Path(tmp) / "labels.csv"
            with open(csv, "w") as fh:
                fh.write("task,worker,label\n")
                np.savetxt(fh, np.stack([tasks, workers, labels], axis=1), fmt="%d", delimiter=",")
            np.save(csv.with_suffix(".truth.npy"), truth)
            for name, opts in (("DS (default, early stop)", {"n_iter": 100}),
                               ("DS (100 iterations)", {"n_iter": 100, "tol": "-inf"})):
                ck = run_in_venv(["fit", str(csv), "DawidSkene", json.dumps(opts)])
                ck_mem = ck["peak_rss_mb"] - ck["rss_before_fit_mb"]
                print(f"  crowd-kit {name}: fit {ck['seconds']:.2f} s ({ck['n_iter']} iterations), ru_maxrss "
                      f"{ck['peak_rss_mb']:.0f} MB (+{ck_mem:.0f} MB over the loaded DataFrame), accuracy "
                      f"{ck.get('accuracy', float('nan')):.4f}  ->  ours {ck['seconds'] / ours['fit_s']:.0f}× faster, "
                      f"fit memory {ck_mem / max(ours_mem, 1):.1f}× less")

    folder = CROWD / "zheng_d_product"
    data, gold = read_dataset(folder)
    print("\nzheng_d_product (24,945 labels)")
    for name, fn, ck_name, ck_opts in (("GLAD", glad, "GLAD", {}), ("MACE", mace, "MACE", {})):
        t = time.perf_counter()
        r = fn(data)
        ours_s = time.perf_counter() - t
        ck = run_in_venv(["fit", str(folder / "answers.csv"), ck_name, json.dumps(ck_opts)])
        print(f"  {name}: ours {ours_s:.2f} s (accuracy {accuracy_on_gold(r, data, gold):.4f}) vs crowd-kit "
              f"{ck['seconds']:.2f} s (accuracy {ck['accuracy']:.4f})  ->  {ck['seconds'] / ours_s:.0f}× faster")

    result = dawid_skene(data)
    model = TaskPosteriorModel.from_result(result)
    answers = [(data.worker_ids[data.worker_idx[i]], data.classes[data.label_idx[i]])
               for i in np.flatnonzero(data.task_idx < 2000)]
    per_task = [answers[i:i + 3] for i in range(0, len(answers), 3)]
    t = time.perf_counter()
    for a in per_task:
        model.posterior(a)
    dt = (time.perf_counter() - t) / len(per_task)
    print(f"\ncheap per-task update (3 labels, dawid_skene parameters): {dt * 1e6:.1f} µs per task")
    print(f"(ru_maxrss of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
