"""Reading space files from disk: YAML text to a :class:`SpaceFile`, with errors that point at the fix.

Files are parsed with ``yaml.safe_load``: nothing in a space file is ever executed.  Every error names
the file.  PyYAML silently keeps the last of two equal mapping keys, so the document is also composed
(not constructed) once to report duplicate keys with their line.  What the document may hold is
checked by :meth:`SpaceFile.from_dict` (settings) and :mod:`.forms` (parameters, both forms).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ..errors import SearchSpaceError
from .space import SearchSpace
from .space_file import SpaceFile


def load_space_file(path: str | os.PathLike[str]) -> SpaceFile:
    """Read a space file (native or PaddleHub form): its space and the run settings it carries."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SearchSpaceError(f"{source}: cannot read the space file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SearchSpaceError(f"{source}: the space file is not UTF-8 text ({exc.reason})") from None
    try:
        _reject_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SearchSpaceError(f"{source}: invalid YAML{_yaml_position(exc)}: {_yaml_problem(exc)}") from None
    return SpaceFile.from_dict(data, source)


def load_space(path: str | os.PathLike[str]) -> SearchSpace:
    """Read a space file and return the space to search; the whole file is checked, settings included.

    Use :func:`load_space_file` for the run settings (trial, metric, fixed, defaults, ...) too.
    """
    return load_space_file(path).space


def _yaml_position(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _yaml_problem(exc: yaml.YAMLError) -> str:
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    text = ", ".join(p for p in parts if p)
    return text or str(exc).splitlines()[0]


def _reject_duplicate_keys(node: Any, source: str, seen_nodes: set[int] | None = None) -> None:
    """Walk a composed YAML tree and refuse a mapping that repeats a key.

    Aliases make the tree a graph (possibly cyclic, possibly exponentially large when unfolded), so
    every node is visited once.
    """
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise SearchSpaceError(
                        f"{source}: duplicate key {key_node.value!r} at line {line} "
                        f"(first at line {seen[key_node.value]}); expected each key once"
                    )
                seen[key_node.value] = line
            _reject_duplicate_keys(value_node, source, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, source, seen_nodes)
