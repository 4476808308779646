"""The built-in model catalog (models.toml, data not code) merged with the operator's TOML."""

from __future__ import annotations

import copy
import functools
import tomllib
from importlib import resources

from aicredits.domain.catalog import Catalog


@functools.cache
def _parsed() -> tuple[dict, ...]:
    """models.toml, parsed once per process (loading the settings checks the catalog, and the
    gateway builds it again at start)."""
    with resources.files(__package__).joinpath("models.toml").open("rb") as fh:
        return tuple(tomllib.load(fh)["models"])


def builtin_entries() -> list[dict]:
    """The built-in entries, a copy of their own for every caller."""
    return copy.deepcopy(list(_parsed()))


def load_catalog(extra_models: tuple[dict, ...] = ()) -> Catalog:
    return Catalog.from_entries(builtin_entries(), extra_models)
