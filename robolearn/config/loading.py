"""YAML experiment files and ``KEY=VALUE`` overrides -> a validated :class:`Config`, with one-line errors.

Every error is a :class:`ConfigError` naming the file (or the command-line override that caused
it) and the dotted key, e.g. ``configs/nav.yaml: env.goal_distance: lo > hi in [5.0, 1.0]`` or
``override 'env.num_envs=true': env.num_envs: Input should be a valid integer (got True)``. A
file with a key written twice is an error too (YAML would keep the last one silently).
"""

from __future__ import annotations

import copy
import difflib
import re
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from robolearn.config import schema
from robolearn.config.base import ConfigError
from robolearn.config.schema import Config, EnvConfig, PolicyConfig, env_config_class, policy_config_class


class ConfigOrigin:
    """Where a config came from: a file (or ``<defaults>``) and the overrides applied on top, in
    order. :meth:`describe` names the source of a dotted key: the last override that set it (or a
    section containing it), else the file."""

    def __init__(self, path: str, overrides: Sequence[str] = ()):
        self.path, self.overrides = path, tuple(overrides)

    def describe(self, key: str) -> str:
        for override in reversed(self.overrides):
            set_key = override.partition("=")[0]
            if key == set_key or key.startswith(set_key + ".") or set_key.startswith(key + "."):
                return f"override {override!r}"
        return self.path


class _SectionError(Exception):
    """A validation error inside a config section, with the section's dotted prefix."""

    def __init__(self, error: ValidationError | str, prefix: str):
        super().__init__(str(error))
        self.error, self.prefix = error, prefix


def _validate_section(data: dict[str, Any], key: str, name_key: str, default: str, schema_of) -> None:
    """Replace ``data[key]`` by its validated model, the schema chosen by the name it holds
    (``default`` when it names none)."""
    section = data.get(key, {})
    if not isinstance(section, dict):
        return  # Config's own validation reports the wrong type
    name = section.get(name_key, default)
    try:
        schema = schema_of(name) if isinstance(name, str) else None
    except KeyError as err:
        raise _SectionError(err.args[0], f"{key}.{name_key}") from None
    if schema is None:
        raise _SectionError(f"expected a name, got {name!r}", f"{key}.{name_key}")
    try:
        data[key] = schema.model_validate(section)
    except ValidationError as err:
        raise _SectionError(err, key) from None


def _build_config(data: Mapping[str, Any]) -> Config:
    """Validate ``env`` and ``policy`` with the classes they name, then the whole experiment."""
    data = dict(data)
    if "runner" in data and "trainer" not in data:
        raise _SectionError("the section is called trainer now (the Trainer reads it): rename runner: to trainer:",
                            "runner")
    data.setdefault("trainer", {})  # so that a missing budget is reported as such
    _validate_section(data, "env", "task", EnvConfig.model_fields["task"].default, env_config_class)
    _validate_section(data, "policy", "class", PolicyConfig.model_fields["class_"].default, policy_config_class)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise _SectionError(err, "") from None


def _format_error(error: _SectionError, source: str) -> str:
    """First validation error as one line: ``source: dotted.key: message``."""
    if isinstance(error.error, str):
        return f"{source}: {error.prefix}: {error.error}"
    err = error.error
    # an unknown key first: a misspelt section ("runer:") also makes the real one look missing
    first = min(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    parts = [error.prefix] if error.prefix else []
    parts += [str(part) for part in first["loc"] if not str(part).startswith("function-")]
    loc = ".".join(parts)
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key" + _did_you_mean(first["loc"], error)
    elif "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], dict):
        msg = f"{msg} (got {first['input']!r})"
    msg = msg.replace("Value error, ", "")
    extra = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {loc or '<root>'}: {msg}{extra}" if loc else f"{source}: {msg}{extra}"


def _did_you_mean(loc: tuple, error: _SectionError) -> str:
    """`` (did you mean num_envs?)`` for a misspelt key, from the keys of the section it sits in."""
    model = _model_named(getattr(error.error, "title", ""))
    for part in loc[:-1]:
        model = _submodel(model, part)
    names = [field.alias or name for name, field in model.model_fields.items()] if model else []
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _model_named(title: str) -> type[BaseModel] | None:
    models = [Config, *schema.ENV_CONFIGS.values(), *schema.POLICY_CONFIGS.values()]
    return next((model for model in models if model.__name__ == title), None)


def _submodel(model: type[BaseModel] | None, part: Any) -> type[BaseModel] | None:
    """The config model at key ``part`` of ``model``. A ``dict[str, Model]`` field leads to the
    value model, and the dict's own keys (a parameter's name) are passed over."""
    if model is None:
        return None
    if not isinstance(part, str) or part not in model.model_fields:
        return model
    candidates = [model.model_fields[part].annotation]
    while candidates:
        kind = candidates.pop()
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind
        candidates += list(typing.get_args(kind))
    return None


_YAML12_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"algorithm.lr=3e-4"`` -> ``(["algorithm", "lr"], 3e-4)``; the value is a YAML scalar."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. env.num_envs=64")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({err.__class__.__name__})") from None
    if isinstance(value, str) and _YAML12_FLOAT.fullmatch(value):
        value = float(value)  # YAML 1.1 reads "3e-4" as a string; YAML 1.2 and users read a number
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``KEY=VALUE`` override set (creating sections)."""
    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a mapping with a key written twice is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def first_error(err: ValidationError, default_key: str = "") -> str:
    """A pydantic error as one line: ``dotted.key: message`` of its first problem."""
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or default_key
    return f"{key}: {first['msg'].replace('Value error, ', '')}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(err, 'problem', err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def validate_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Validate a plain dict; errors become one-line :class:`ConfigError` naming ``source``."""
    try:
        config = _build_config(data)
    except _SectionError as err:
        raise ConfigError(_format_error(err, source)) from None
    config._origin = ConfigOrigin(source)
    return config


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML experiment file (or the defaults), apply overrides, validate.

    The file is validated on its own first so that an error in it names the file; errors that
    only appear with the overrides name the (last) override that set the key.
    """
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    config = validate_config(data, source)
    if not overrides:
        return config
    merged = apply_overrides(data, overrides)
    origin = ConfigOrigin(source, overrides)
    try:
        config = _build_config(merged)
    except _SectionError as err:
        line = _format_error(err, "")[2:]
        key = line.split(": ", 1)[0]
        where = origin.describe(key)
        raise ConfigError(f"{where if where != source else source + ' + overrides'}: {line}") from None
    config._origin = origin
    return config


def dump_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (re-loadable with :func:`load_config`)."""
    Path(path).write_text(config.to_yaml())
