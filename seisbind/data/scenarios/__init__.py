"""Data scenarios by name. A new source of paired data is one entry here."""

from seisbind.data.scenarios.base import Sample, Scenario
from seisbind.data.scenarios.openfwi import OpenFWIScenario
from seisbind.data.scenarios.quake import QuakeScenario

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (QuakeScenario(), OpenFWIScenario())}


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {sorted(SCENARIOS)}")
    return SCENARIOS[name]


__all__ = ["SCENARIOS", "Sample", "Scenario", "get_scenario"]
