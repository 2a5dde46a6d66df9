"""Agreement reports for a project's control, computed from the label store with `agreement.metrics`."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.agreement.metrics import (
    LabelTable,
    Level,
    agreement_over_time,
    project_agreement,
)
from services.consensus.labels.service import project_labels
from services.consensus.projects.service import ProjectConfig
from services.consensus.results import compute
from shared.errors import Unprocessable


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def default_level(config: ProjectConfig, control: str) -> Level:
    """Nominal for choices, interval for numbers and ratings (their differences mean something)."""
    cc = config.controls.get(control)
    return "interval" if cc and compute.label_kind(cc.label_type) == compute.NUMERIC else "nominal"


def pick_control(config: ProjectConfig, control: str | None) -> str:
    usable = [c for c, cc in sorted(config.controls.items())
              if compute.label_kind(cc.label_type) in (compute.CATEGORICAL, compute.NUMERIC)]
    if control is None:
        if not usable:
            raise Unprocessable("this project has no choice or numeric control to measure agreement on")
        return usable[0]
    if control not in config.controls:
        raise Unprocessable(f"unknown control {control!r}; the project has {sorted(config.controls)}")
    if control not in usable:
        raise Unprocessable(f"agreement metrics need a choice or numeric control; {control!r} is "
                            f"{config.controls[control].label_type}")
    return control


async def label_table(session: AsyncSession, config: ProjectConfig, control: str,
                      with_time: bool = False) -> LabelTable:
    data = await project_labels(session, config.project_id, control)
    cc = config.controls[control]
    kind = compute.label_kind(cc.label_type)
    if kind == compute.NUMERIC:
        values = [float(v["value"] if isinstance(v, dict) else v) for v in data.values]
        categories = None
    else:
        values = [compute.categorical_value(v) for v in data.values]
        categories = cc.classes
        if categories is not None:
            extra = [v for v in dict.fromkeys(values) if v not in categories]
            categories = list(categories) + extra  # keep the schema's order (ordinal rank order)
    return LabelTable.from_labels(data.tasks, data.annotators, values, categories=categories,
                                  timestamps=data.submitted_at if with_time else None)


def _summary_out(s: Any) -> dict[str, Any]:
    return {"n_items": s.n_items, "n_pairable_items": s.n_pairable_items, "n_labels": s.n_labels,
            "n_annotators": s.n_annotators, "percent_agreement": _num(s.percent_agreement),
            "fleiss_kappa": _num(s.fleiss_kappa), "krippendorff_alpha": _num(s.alpha), "level": s.level,
            "observed_disagreement": _num(s.observed_disagreement),
            "expected_disagreement": _num(s.expected_disagreement)}


async def agreement_report(session: AsyncSession, config: ProjectConfig, control: str | None,
                           level: Level | None, min_pair_items: int) -> dict[str, Any]:
    control = pick_control(config, control)
    level = level or default_level(config, control)
    table = await label_table(session, config, control)
    if table.n_labels == 0:
        return {"control": control, "level": level, "summary": None, "pairs": []}
    try:
        report = project_agreement(table, level, min_pair_items=min_pair_items)
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    return {"control": control, "level": level, "summary": _summary_out(report.summary),
            "pairs": [{"annotator_a": str(p.annotator_a), "annotator_b": str(p.annotator_b), "n_items": p.n_items,
                       "percent_agreement": _num(p.percent_agreement), "cohen_kappa": _num(p.cohen_kappa)}
                      for p in report.pairs]}


async def agreement_series(session: AsyncSession, config: ProjectConfig, control: str | None, level: Level | None,
                           bucket: str) -> dict[str, Any]:
    control = pick_control(config, control)
    level = level or default_level(config, control)
    table = await label_table(session, config, control, with_time=True)
    try:
        buckets = agreement_over_time(table, bucket, level) if table.n_labels else []  # type: ignore[arg-type]
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    return {"control": control, "level": level, "bucket": bucket,
            "buckets": [{"start": b.start, **_summary_out(b.summary)} for b in buckets]}



