"""project.configured from the api: the project's owner, controls and consensus settings, before any label."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from services.consensus.projects.service import ProjectConfig, apply_configuration, load_config, save_config
from services.consensus.refits.service import request_refit
from shared.events.catalog import ProjectConfigured
from shared.events.envelope import Envelope


async def handle_project_configured(session: AsyncSession, envelope: Envelope) -> None:
    configured = ProjectConfigured.model_validate(envelope.payload)
    project_id = uuid.UUID(configured.project_id)
    config = await load_config(session, project_id) or ProjectConfig(project_id=project_id)
    method_changed = apply_configuration(config, envelope.org_id, configured)
    await save_config(session, config)
    if method_changed:
        await request_refit(session, project_id, reason="settings")
