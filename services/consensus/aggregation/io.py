"""Reading answer/gold CSV files (`task,worker,label` and `task,label`) into an AnswerMatrix."""

from __future__ import annotations

import csv
from pathlib import Path

from .matrix import AnswerMatrix, Duplicates


def _as_ints_if_possible(values: list[str]) -> list:
    try:
        return [int(v) for v in values]
    except ValueError:
        return values


def read_answers_csv(answers: str | Path, gold: str | Path | None = None,
                     duplicates: Duplicates = "keep") -> tuple[AnswerMatrix, dict]:
    """Labels that are all integers are read as ints (so 10 sorts after 9), otherwise kept as strings."""
    with open(answers, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        cols = {name: i for i, name in enumerate(header)}
        rows = list(reader)
    tasks = [r[cols["task"]] for r in rows]
    workers = [r[cols["worker"]] for r in rows]
    labels = _as_ints_if_possible([r[cols["label"]] for r in rows])
    gold_map: dict = {}
    if gold is not None and Path(gold).exists():
        with open(gold, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            gcols = {name: i for i, name in enumerate(header)}
            grows = list(reader)
        glabels = _as_ints_if_possible([r[gcols["label"]] for r in grows])
        if isinstance(labels[0], str) and not isinstance(glabels[0], str):
            glabels = [str(v) for v in glabels]
        gold_map = dict(zip((r[gcols["task"]] for r in grows), glabels))
    matrix = AnswerMatrix.from_triples(tasks=tasks, workers=workers, labels=labels, duplicates=duplicates)
    return matrix, gold_map


def read_dataset(folder: str | Path, duplicates: Duplicates = "keep") -> tuple[AnswerMatrix, dict]:
    folder = Path(folder)
    return read_answers_csv(folder / "answers.csv", folder / "gold.csv", duplicates=duplicates)
