"""Reading platform.yaml: YAML with positions, validation, and choosing the file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from k3sops.config.issues import Positions, kind_of, validation_error
from k3sops.config.schema import Platform
from k3sops.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and gives every bad value a position."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as e:
            # e.g. "!!float abc" or a timestamp with month 13: never echo the value itself.
            tag = node.tag.rsplit(":", 1)[-1]
            raise ConstructorError(None, None, f"cannot read this value as {tag}",
                                   node.start_mark) from e

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    raise ConstructorError(
                        None, None,
                        f"duplicate key {key_node.value[:40]!r} (first at line {seen[ident]})",
                        key_node.start_mark,
                    )
                seen[ident] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _positions(loader: _Loader, root: Node) -> Positions:
    """Map each key path (keys as constructed, list indices as ints) to its 1-based line."""
    pos = Positions({(): root.start_mark.line + 1})
    lines = pos.lines
    stack: list[tuple[tuple[Any, ...], Node]] = [((), root)]
    visited: set[int] = set()
    while stack:
        path, node = stack.pop()
        if id(node) in visited:  # aliases: describe each node once, where first seen
            continue
        visited.add(id(node))
        if isinstance(node, MappingNode):
            pos.mappings.add(path)
            for key_node, value_node in node.value:
                try:
                    key = loader.construct_object(key_node, deep=True)
                    child = (*path, key)
                    lines.setdefault(child, key_node.start_mark.line + 1)
                except (yaml.YAMLError, TypeError):
                    continue
                stack.append((child, value_node))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                child = (*path, i)
                lines.setdefault(child, item.start_mark.line + 1)
                stack.append((child, item))
    return pos


def _yaml_error(e: yaml.YAMLError, source: str) -> ConfigError:
    hint = "check indentation, and quote values containing ':', '#', '{' or '['"
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        mark = e.problem_mark
        problem = e.problem or "invalid YAML"
        context = ""
        if e.context and e.context_mark is not None:
            context = f" ({e.context} at line {e.context_mark.line + 1})"
        if problem.startswith("duplicate key"):
            hint = "keep one of the two keys"
        elif problem.startswith("cannot read this value"):
            hint = "quote the value if it is meant as a string"
        return ConfigError(
            f"{source}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {problem}{context}",
            hint=hint,
        )
    if isinstance(e, yaml.reader.ReaderError):
        return ConfigError(
            f"{source}:1: cannot read the file at character {e.position}: {e.reason}",
            hint="save the file as UTF-8 text",
        )
    return ConfigError(f"{source}:1: invalid YAML: {type(e).__name__}", hint=hint)


def parse_platform(
    text: str | bytes, source: str = "<string>", *, base_dir: Path | None = None
) -> Platform:
    """Parse and validate the text of a platform file.

    Args:
        text: YAML document (str, or bytes in UTF-8/UTF-16 with BOM).
        source: name of the document used in messages (usually the file path).
        base_dir: directory relative paths are resolved against; None keeps them as written.

    Returns:
        The validated platform.

    Raises:
        ConfigError: broken YAML, not a mapping, or any validation error
            (a PlatformConfigError listing each problem with its line).
    """
    try:
        loader = _Loader(text)  # reads ahead to detect the encoding: can fail already
    except yaml.YAMLError as e:
        raise _yaml_error(e, source) from e
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
        pos = _positions(loader, root) if root is not None else Positions()
    except yaml.YAMLError as e:
        raise _yaml_error(e, source) from e
    except RecursionError as e:
        raise ConfigError(f"{source}:1: invalid YAML: nested too deeply") from e
    finally:
        loader.dispose()

    if data is None:
        raise ConfigError(
            f"{source}: the platform file is empty",
            hint="`k3sops init FILE` writes a commented starter platform.yaml",
        )
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        raise ConfigError(
            f"{source}:{line}: the top level must be a mapping of settings "
            f"(name:, environments:, …), got {kind_of(data)}",
            hint="`k3sops init FILE` writes a commented starter platform.yaml",
        )
    try:
        return Platform.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as e:
        raise validation_error(e, source, pos) from e
    except RecursionError as e:
        raise ConfigError(f"{source}:1: the document is nested too deeply") from e


def load_platform(path: Path) -> Platform:
    """Read and validate a platform file; relative paths in it resolve against its directory.

    Args:
        path: the platform.yaml to read.

    Returns:
        The validated platform.

    Raises:
        ConfigError: the file cannot be read, is not valid YAML, or is not a valid platform.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise ConfigError(
            f"{path}: no such file",
            hint="pass the path of your platform.yaml (-c/--config or $K3SOPS_CONFIG), "
            "or run `k3sops init` to create one",
        ) from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: is a directory, not a platform file",
                          hint="pass the platform.yaml inside it") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or type(e).__name__}",
                          hint="check the file's permissions") from e
    return parse_platform(raw, str(path), base_dir=path.parent.absolute())


def find_platform_file(explicit: Path | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """Choose the platform file: flag > ``$K3SOPS_CONFIG`` > ``./platform.yaml`` > none.

    Args:
        explicit: a path given on the command line, if any.
        env: the environment to consult (pass ``os.environ``; never read here implicitly).
        cwd: directory relative paths and the default ``platform.yaml`` are taken from.

    Returns:
        The file to load (not checked for existence unless it is the default), or None.
    """
    if explicit is not None:
        return cwd / explicit
    from_env = env.get("K3SOPS_CONFIG", "")
    if from_env:
        return cwd / Path(from_env)
    default = cwd / "platform.yaml"
    return default if default.is_file() else None


