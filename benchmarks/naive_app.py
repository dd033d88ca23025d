"""Baseline for bench_ingest.py: the naive FastAPI + SQLAlchemy ORM app, one commit per request.

DATABASE_URL=postgresql+asyncpg://... uvicorn benchmarks.naive_app:app --workers 2
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import JSON, BigInteger, DateTime, String, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class NaiveEvent(Base):
    __tablename__ = "naive_event"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[str] = mapped_column(String, unique=True)
    type: Mapped[str] = mapped_column(String)
    anonymous_id: Mapped[str | None] = mapped_column(String)
    event: Mapped[str | None] = mapped_column(String)
    properties: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=10)
sessions = async_sessionmaker(engine, expire_on_commit=False)
app = FastAPI()


@app.on_event("startup")
async def create_table() -> None:
    async with engine.begin() as conn:  # both workers start at once: one creates the table
        await conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        await conn.run_sync(Base.metadata.create_all)


async def _store(body: dict[str, Any]) -> dict[str, Any]:
    async with sessions() as session:
        session.add(
            NaiveEvent(
                message_id=body["messageId"],
                type=body.get("type", "track"),
                anonymous_id=body.get("anonymousId"),
                event=body.get("event"),
                properties=body.get("properties") or {},
                received_at=datetime.now(UTC),
            )
        )
        await session.commit()
    return {"success": True}


@app.post("/v1/{kind}")
async def ingest(kind: str, request: Request) -> dict[str, Any]:
    body = await request.json()
    return await _store({**body, "type": kind})
