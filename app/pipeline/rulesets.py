"""Compiled rulesets per site, cached per process; a version check keeps every worker current."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import asyncpg
import yaml

from app.domain.rules import CompiledRuleset, compile_ruleset
from app.store import rulesets as ruleset_store

REFRESH_SECONDS = 1.0


@cache
def default_document() -> Any:
    return yaml.safe_load(resources.files("app").joinpath("rules/default.yaml").read_text())


@cache
def default_ruleset() -> CompiledRuleset:
    return compile_ruleset(default_document(), version=0)


class RulesetCache:
    """Latest ruleset of each site, re-checked at most once a second; old versions compiled on demand."""

    def __init__(self) -> None:
        self._latest: dict[int, tuple[float, CompiledRuleset]] = {}
        self._versions: dict[tuple[int, int], CompiledRuleset] = {}

    async def current(self, conn: asyncpg.Connection, site_id: int) -> CompiledRuleset:
        cached = self._latest.get(site_id)
        if cached and time.monotonic() - cached[0] < REFRESH_SECONDS:
            return cached[1]
        found = await ruleset_store.latest_ruleset(conn, site_id)
        ruleset = default_ruleset() if found is None else self._compiled(site_id, found[0], found[1])
        self._latest[site_id] = (time.monotonic(), ruleset)
        return ruleset

    def forget(self, site_id: int) -> None:
        """Re-read this site's latest version on the next use (after a change in this process)."""
        self._latest.pop(site_id, None)

    async def resolver(self, conn: asyncpg.Connection, site_id: int) -> Callable[[int | None], CompiledRuleset]:
        """A ruleset_for(version) function for derive_person. Versions run 0 (the default), 1, 2, ...
        up to the current one; each is read and compiled once per process, then kept."""
        current = await self.current(conn, site_id)
        known = {0: default_ruleset(), current.version: current}
        for version in range(1, current.version):
            if (site_id, version) not in self._versions:
                self._compiled(site_id, version, await ruleset_store.ruleset_version(conn, site_id, version))
            known[version] = self._versions[(site_id, version)]

        def ruleset_for(version: int | None) -> CompiledRuleset:
            return current if version is None else known.get(version, current)

        return ruleset_for

    def _compiled(self, site_id: int, version: int, document: Any) -> CompiledRuleset:
        key = (site_id, version)
        if key not in self._versions:
            self._versions[key] = compile_ruleset(document, version=version)
        return self._versions[key]
