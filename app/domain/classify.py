"""classify(): the first rule whose conditions all hold decides. Pure: no I/O."""

from __future__ import annotations

from app.domain.model import MAX_VALUE, Classification, Event, PersonHistory, Stage
from app.domain.rules import CompiledRule, CompiledRuleset, as_number, lookup


def classify(event: Event, person: PersonHistory, ruleset: CompiledRuleset) -> Classification:
    for rule, test in ruleset.compiled:
        if test(event, person):
            return Classification(
                stage=rule.stage,
                goal=rule.goal,
                value=value_of(event, rule),
                lead=rule.lead,
                order=rule.order,
                ruleset_version=ruleset.version,
            )
    return Classification(Stage.NONE, None, None, False, False, ruleset.version)


def value_of(event: Event, rule: CompiledRule) -> float | None:
    for path in rule.value_paths:
        number = as_number(lookup(event.properties, path))
        if number is not None and abs(number) <= MAX_VALUE:
            return number
    return None


def explain(event: Event, person: PersonHistory, ruleset: CompiledRuleset) -> list[dict[str, object]]:
    """For each rule down to the match: whether it matched and which conditions failed."""
    steps: list[dict[str, object]] = []
    for index, rule in enumerate(ruleset.rules):
        failed = [c.source for c in rule.conditions if not c(event, person)]
        steps.append({"rule": index, "goal": rule.goal, "matched": not failed, "failed": failed})
        if not failed:
            break
    return steps
