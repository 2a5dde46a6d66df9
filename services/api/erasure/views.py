"""Erasure routes: one request names one target; the answer counts what was destroyed."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.api.erasure import service
from services.api.media.audit import Actor, RequestMeta
from services.api.media.policy import can_erase
from services.api.media.service import authorize_project
from shared.app import ServiceContext, get_context
from shared.auth import Principal, Role, require
from shared.validation import NulFreeModel

router = APIRouter(tags=["erasure"])


class ErasureIn(NulFreeModel):
    """Exactly one target: a task, a dataset (import batch), or a data subject (pseudonym, or the value
    and entity type the project's key turns into the pseudonym)."""

    model_config = ConfigDict(extra="forbid")

    task_id: uuid.UUID | None = None
    dataset_id: uuid.UUID | None = None
    pseudonym: str | None = Field(default=None, min_length=3, max_length=100)
    entity_type: str | None = Field(default=None, max_length=40)
    value: str | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_target(self) -> ErasureIn:
        targets = [self.task_id is not None, self.dataset_id is not None,
                   self.pseudonym is not None, self.value is not None or self.entity_type is not None]
        if sum(targets) != 1:
            raise ValueError("give exactly one of task_id, dataset_id, pseudonym, or entity_type + value")
        if (self.value is None) != (self.entity_type is None):
            raise ValueError("entity_type and value go together")
        return self


class ErasureOut(BaseModel):
    erasure_id: str
    target_type: str
    tasks_erased: int
    media_erased: int
    keys_destroyed: int
    blobs_deleted: int


@router.post("/projects/{project_id}/erasures", response_model=ErasureOut, status_code=200,
             summary="Erase a task, a dataset or a data subject's records by crypto-shredding their data keys")
async def create_erasure(request: Request, project_id: uuid.UUID, body: ErasureIn,
                         principal: Principal = require("erasure.create",
                                                        roles={Role.ORG_ADMIN, Role.PROJECT_MANAGER},
                                                        project_roles={Role.PROJECT_MANAGER},
                                                        project_param="project_id")) -> ErasureOut:
    ctx: ServiceContext = get_context(request)
    meta = RequestMeta.from_request(request)
    project, _ = await authorize_project(ctx, principal, str(project_id), can_erase, "erasure.create", meta)
    actor = Actor(principal)
    if body.task_id is not None:
        report = await service.erase_task(ctx, project, body.task_id, actor=actor, meta=meta)
    elif body.dataset_id is not None:
        report = await service.erase_dataset(ctx, project, body.dataset_id, actor=actor, meta=meta)
    else:
        report = await service.erase_subject(ctx, project, pseudonym=body.pseudonym,
                                             entity_type=body.entity_type, value=body.value, actor=actor,
                                             meta=meta)
    return ErasureOut(**vars(report))
