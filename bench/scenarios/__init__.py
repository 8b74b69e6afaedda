"""The scenarios, one module each. Every module here defines SCENARIO, its Scenario
subclass (bench/scenario.py); registered() finds them, so adding a scenario is
adding a module."""

from __future__ import annotations

import importlib
import pkgutil

from bench.scenario import Scenario


def registered() -> list[type[Scenario]]:
    """Every scenario, by number."""
    found: dict[int, type[Scenario]] = {}
    for info in pkgutil.iter_modules(__path__):
        cls = importlib.import_module(f"{__name__}.{info.name}").SCENARIO
        if cls.number in found:
            raise RuntimeError(f"scenarios {found[cls.number].__name__} and {cls.__name__} "
                               f"both have number {cls.number}")
        found[cls.number] = cls
    return [found[n] for n in sorted(found)]
