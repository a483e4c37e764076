"""Parse a recipe's arguments with its real parser and stop there (shared by the docs test
and the fuzz suite): ``recipes/evaluate.py`` and ``recipes/encode.py`` parse inside
``main()``, so ``main`` runs until its first ``parse_args`` returns."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class _Parsed(Exception):
    pass


def parse_recipe_main(program: str, argv: list[str]):
    """The namespace that ``program``'s ``main(argv)`` parses (SystemExit on a bad flag)."""
    spec = importlib.util.spec_from_file_location("recipe", REPO / program)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    argparse.ArgumentParser.parse_args = parse_and_stop
    try:
        module.main(argv)
    except _Parsed as parsed:
        return parsed.args[0]
    finally:
        argparse.ArgumentParser.parse_args = original
    raise AssertionError(f"{program} did not parse its arguments")
