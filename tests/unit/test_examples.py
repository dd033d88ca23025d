"""The README's examples ship in the repository and run as written."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from app.cli import main
from app.domain.classify import classify
from app.domain.model import PersonHistory, Stage
from app.domain.rules import compile_ruleset
from tests.factories import make_event, make_track

PROJECT = Path(__file__).resolve().parents[2]
B2B = PROJECT / "examples" / "rules" / "b2b.yaml"


def test_the_readme_shows_the_shipped_b2b_rules_and_every_command_names_the_file() -> None:
    readme = (PROJECT / "README.md").read_text()
    shown = re.search(r"```yaml\n# examples/rules/b2b\.yaml[^\n]*\n(.*?)```", readme, re.S)
    assert shown, "the worked example's YAML block is gone from the README"
    assert yaml.safe_load(shown.group(1)) == yaml.safe_load(B2B.read_text())
    assert not re.search(r"[ @\"(]b2b\.yaml", readme), "a command names b2b.yaml outside examples/rules/"


def test_the_b2b_example_validates_and_classifies_as_the_readme_says() -> None:
    assert main(["rules", "validate", str(B2B)]) == 0
    ruleset = compile_ruleset(yaml.safe_load(B2B.read_text()), 1)
    whitepaper = classify(make_track("Whitepaper Q3"), PersonHistory(), ruleset)
    assert (whitepaper.goal, whitepaper.stage, whitepaper.lead) == ("whitepaper", Stage.ACT, True)
    contract = classify(make_track("Contract Signed", properties={"contract_value": 12000}), PersonHistory(), ruleset)
    assert (contract.goal, contract.stage, contract.value) == ("contract", Stage.CONVERT, 12000)
    pricing = classify(make_event(type="page", path="/pricing/teams"), PersonHistory(), ruleset)
    assert pricing.goal == "pricing_visit"
