"""The built-in model catalog (models.toml, data not code) merged with the operator's TOML."""

from __future__ import annotations

import tomllib
from importlib import resources

from aicredits.domain.catalog import Catalog


def builtin_entries() -> list[dict]:
    with resources.files(__package__).joinpath("models.toml").open("rb") as fh:
        return list(tomllib.load(fh)["models"])


def load_catalog(extra_models: tuple[dict, ...] = ()) -> Catalog:
    return Catalog.from_entries(builtin_entries(), extra_models)
