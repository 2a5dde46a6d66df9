"""Agreement report and agreement over time (as data, PNG or SVG)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services.consensus.agreement import service
from services.consensus.agreement.metrics import MIN_PAIR_ITEMS
from services.consensus.projects.views import project_for, view_policy
from services.consensus.reports.plots import MEDIA_TYPES, agreement_over_time_plot
from shared.auth.principal import Principal
from shared.errors import Unprocessable

router = APIRouter(prefix="/projects/{project_id}", tags=["agreement"])

LevelParam = Literal["nominal", "ordinal", "interval", "ratio"] | None


@router.get("/agreement", summary="Percent agreement, Fleiss' kappa, Krippendorff's alpha and Cohen's kappa per "
                                  "annotator pair")
async def agreement(project_id: str, request: Request, control: str | None = None, level: LevelParam = None,
                    min_pair_items: int = Query(MIN_PAIR_ITEMS, ge=1, le=10_000),
                    principal: Principal = view_policy("consensus.agreement.view")) -> dict[str, Any]:
    async with request.app.state.ctx.session_factory() as session:
        config = await project_for(session, principal, project_id)
        return await service.agreement_report(session, config, control, level, min_pair_items)


@router.get("/agreement/over-time", summary="Agreement per day or week, as data or a chart (?format=png|svg)",
            responses={200: {"content": {"application/json": {}, "image/png": {}, "image/svg+xml": {}}}})
async def agreement_over_time(project_id: str, request: Request, control: str | None = None,
                              level: LevelParam = None, bucket: Literal["day", "week"] = "week",
                              format: Literal["json", "png", "svg"] = "json",
                              principal: Principal = view_policy("consensus.agreement.over_time")) -> Any:
    async with request.app.state.ctx.session_factory() as session:
        config = await project_for(session, principal, project_id)
        series = await service.agreement_series(session, config, control, level, bucket)
    if format == "json":
        return series
    buckets = series["buckets"]
    if not buckets:
        raise Unprocessable("no labels yet: nothing to plot")
    nan = float("nan")
    image = await asyncio.to_thread(
        agreement_over_time_plot, [b["start"] for b in buckets],
        {"Krippendorff's α": [nan if b["krippendorff_alpha"] is None else b["krippendorff_alpha"] for b in buckets],
         "Fleiss' κ": [nan if b["fleiss_kappa"] is None else b["fleiss_kappa"] for b in buckets],
         "percent agreement": [nan if b["percent_agreement"] is None else b["percent_agreement"] for b in buckets]},
        fmt=format, title=f"Agreement over time — {series['control']} ({series['level']})",
        counts=[b["n_labels"] for b in buckets])
    return Response(image, media_type=MEDIA_TYPES[format])
