"""Consensus settings of a project (managers), and the project lookup every consensus route shares."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.consensus.projects import service
from services.consensus.projects.policy import (
    MANAGE_ORG_ROLES,
    MANAGE_PROJECT_ROLES,
    VIEW_ORG_ROLES,
    VIEW_PROJECT_ROLES,
    authorize,
    parse_project_id,
)
from services.consensus.projects.schemas import ConsensusSettingsIn, ConsensusSettingsOut
from services.consensus.refits.methods import METHODS
from services.consensus.refits.service import request_refit
from shared.auth.dependencies import require
from shared.auth.principal import Principal

router = APIRouter(prefix="/projects/{project_id}", tags=["consensus settings"])


def view_policy(name: str):  # noqa: ANN201 - a FastAPI dependency
    return require(name, roles=VIEW_ORG_ROLES, project_roles=VIEW_PROJECT_ROLES, project_param="project_id")


def manage_policy(name: str):  # noqa: ANN201
    return require(name, roles=MANAGE_ORG_ROLES, project_roles=MANAGE_PROJECT_ROLES, project_param="project_id")


async def project_for(session, principal: Principal, project_id: str, *, manage: bool = False  # noqa: ANN001
                      ) -> service.ProjectConfig:
    config = await service.load_config(session, parse_project_id(project_id))
    authorize(principal, config.ref if config else None, manage=manage)
    return config


def settings_out(config: service.ProjectConfig) -> ConsensusSettingsOut:
    return ConsensusSettingsOut(project_id=str(config.project_id), method=config.method,
                                target_confidence=config.target_confidence, max_labels=config.max_labels,
                                min_gold_accuracy=config.min_gold_accuracy,
                                refit_after_labels=config.refit_after_labels,
                                refit_interval_seconds=config.refit_interval_seconds,
                                controls=config.controls_json(), methods_available=sorted(METHODS))


@router.get("/settings", response_model=ConsensusSettingsOut, summary="The project's consensus settings")
async def get_settings(project_id: str, request: Request,
                       principal: Principal = manage_policy("consensus.settings.view")) -> ConsensusSettingsOut:
    async with request.app.state.ctx.session_factory() as session:
        return settings_out(await project_for(session, principal, project_id, manage=True))


@router.put("/settings", response_model=ConsensusSettingsOut,
            summary="Change the method, target confidence, label budget, refit policy and control schemas; "
                    "a changed method queues a refit")
async def put_settings(project_id: str, body: ConsensusSettingsIn, request: Request,
                       principal: Principal = manage_policy("consensus.settings.update")) -> ConsensusSettingsOut:
    async with request.app.state.ctx.session_factory() as session, session.begin():
        config = await project_for(session, principal, project_id, manage=True)
        method_changed = config.method != body.method
        config.method = body.method
        config.target_confidence = body.target_confidence
        config.max_labels = body.max_labels
        config.min_gold_accuracy = body.min_gold_accuracy
        config.refit_after_labels = body.refit_after_labels
        config.refit_interval_seconds = body.refit_interval_seconds
        for name, control in (body.controls or {}).items():
            config.controls[name] = service.ControlConfig(
                label_type=control.label_type, classes=control.classes,
                classes_source="manager" if control.classes is not None else None)
        await service.save_config(session, config, updated_by=principal.subject)
        if method_changed:
            await request_refit(session, config.project_id, reason="settings", requested_by=principal.subject)
        return settings_out(config)
