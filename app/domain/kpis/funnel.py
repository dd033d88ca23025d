"""The RACE funnel over a period (DESIGN §5): persons per stage, nested or independent. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from app.domain.kpis.values import ratio


class FunnelKind(StrEnum):
    NESTED = "nested"  # persons who reached this stage and every earlier one (the default)
    INDEPENDENT = "independent"  # persons who reached this stage, whatever the others


RACE_STAGES = ("reach", "act", "convert", "engage")


def nested_counts(stage_persons: Mapping[str, Any]) -> dict[str, int]:
    """Persons in each RACE stage's set and in every earlier stage's set (reach: every person seen).
    Works on Python sets and on roaring bitmaps alike."""
    counts: dict[str, int] = {}
    running: Any = None
    for stage in RACE_STAGES:
        persons = stage_persons.get(stage, frozenset())
        running = persons if running is None else running & persons
        counts[stage] = len(running)
    return counts


def race_funnel(nested: Mapping[str, int], independent: Mapping[str, int], kind: FunnelKind) -> list[dict[str, object]]:
    """The RACE funnel's steps: `persons` and rates of the chosen kind, both counts beside."""
    chosen = nested if kind is FunnelKind.NESTED else independent
    steps = funnel_steps([(stage, chosen[stage]) for stage in RACE_STAGES])
    return [
        {"stage": stage, **{k: v for k, v in step.items() if k != "label"},
         "nested_persons": nested[stage], "independent_persons": independent[stage]}
        for stage, step in zip(RACE_STAGES, steps, strict=True)
    ]  # fmt: skip


def funnel_steps(counts: list[tuple[str, int]]) -> list[dict[str, object]]:
    """Each step's persons, rate against the previous step and against the top."""
    top = counts[0][1] if counts else 0
    steps: list[dict[str, object]] = []
    previous: int | None = None
    for label, persons in counts:
        steps.append(
            {
                "persons": persons,
                "rate_from_previous": None if previous is None else ratio(persons, previous),
                "rate_from_top": ratio(persons, top),
                "label": label,
            }
        )
        previous = persons
    return steps
