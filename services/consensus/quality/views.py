"""Annotator quality table and each annotator's confusion matrix (as data, PNG or SVG)."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.consensus.projects.views import project_for, view_policy
from services.consensus.quality import service
from services.consensus.reports.plots import MEDIA_TYPES, confusion_matrix_plot
from services.consensus.results import compute
from shared.auth.principal import Principal
from shared.errors import NotFound, Unprocessable

router = APIRouter(prefix="/projects/{project_id}", tags=["annotator quality"])


def _choice_control(config, control: str | None) -> str:  # noqa: ANN001
    choices = [c for c, cc in sorted(config.controls.items())
               if compute.label_kind(cc.label_type) == compute.CATEGORICAL]
    if control is None:
        if not choices:
            raise Unprocessable("annotator quality is estimated for choice controls; this project has none")
        return choices[0]
    if control not in choices:
        raise Unprocessable(f"{control!r} is not a choice control of this project ({choices})")
    return control


@router.get("/annotators", summary="Annotator quality: gold accuracy with interval, agreement with consensus, "
                                   "model skill and confusion, spammer/adversarial flags (from the latest refit)")
async def quality_table(project_id: str, request: Request, control: str | None = None,
                        principal: Principal = view_policy("consensus.quality.view")) -> dict[str, Any]:
    async with request.app.state.ctx.session_factory() as session:
        config = await project_for(session, principal, project_id)
        return await service.quality_table(session, config.project_id, _choice_control(config, control))


@router.get("/annotators/{annotator_id}/confusion",
            summary="An annotator's estimated confusion matrix (rows = true class), as data or a heatmap",
            responses={200: {"content": {"application/json": {}, "image/png": {}, "image/svg+xml": {}}}})
async def annotator_confusion(project_id: str, annotator_id: str, request: Request, control: str | None = None,
                              format: Literal["json", "png", "svg"] = "json",
                              principal: Principal = view_policy("consensus.quality.confusion")) -> Any:
    async with request.app.state.ctx.session_factory() as session:
        config = await project_for(session, principal, project_id)
        control = _choice_control(config, control)
        found = await service.annotator_confusion(session, config.project_id, control, annotator_id)
    if found is None:
        raise NotFound("no confusion estimate for this annotator yet (it appears after a refit)")
    classes, matrix = found
    if format == "json":
        return {"annotator_id": annotator_id, "control": control, "classes": classes, "confusion": matrix,
                "rows": "true class", "columns": "annotator's label"}
    image = await asyncio.to_thread(confusion_matrix_plot, matrix, classes, fmt=format,
                                    title=f"Confusion — {annotator_id[:40]}")
    return Response(image, media_type=MEDIA_TYPES[format])
