"""Simulated devices that speak the EWG device contract over MQTT, with ground truth.

A scenario (YAML, :mod:`simulator.scenario`) lists a town's sites and devices and the
incidents to inject; :class:`simulator.runner.Simulator` publishes it in real time to any
broker and records what it injected (:mod:`simulator.truth`), so tests, benchmarks and demos
can score what the gateway raised against what really happened.

Modules: ``scenario`` (schema, loader, registrations), ``signals`` (normal readings),
``incidents`` (what goes wrong), ``payloads`` (topics, JSON, vendor fields), ``truth``
(JSONL ground truth), ``runner`` (MQTT and the clock), ``town`` (a generated demo town).
"""

from simulator.runner import SimulationReport, Simulator, simulate
from simulator.scenario import Scenario, ScenarioError, load_scenario, registrations
from simulator.town import small_town

__all__ = [
    "Scenario",
    "ScenarioError",
    "SimulationReport",
    "Simulator",
    "load_scenario",
    "registrations",
    "simulate",
    "small_town",
]
