"""Wrapped data keys (columns = `shared.crypto.DataKeyRecord`); a destroyed key keeps its row, not its bytes."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from services.api.db import Base


class DataKey(Base):
    __tablename__ = "data_keys"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(300), index=True)
    kek_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    wrapped: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(sa.DateTime(timezone=True), server_default=sa.func.now())
    destroyed_at: Mapped[datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)
