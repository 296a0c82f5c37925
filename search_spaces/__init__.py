"""Declared search spaces (YAML files beside this module) and their loader; see `space.py`."""

from search_spaces.space import (
    Architecture,
    Decision,
    SearchSpace,
    SpaceError,
    builtin_names,
    iter_architectures,
    load_space,
    parse_space,
)

__all__ = [
    "Architecture",
    "Decision",
    "SearchSpace",
    "SpaceError",
    "builtin_names",
    "iter_architectures",
    "load_space",
    "parse_space",
]
