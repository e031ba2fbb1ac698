"""Resolves configuration once: defaults < TOML file < FMSTREAM_* environment < flags.

Every key `section.name` has the environment variable `FMSTREAM_SECTION_NAME`
and, where a subcommand exposes it, a flag. Values from the environment and
flags are strings and are converted by the field's type; a value that does not
convert, an unknown key or a value out of range is a `ConfigError` naming the
key and where the value came from.
"""

from __future__ import annotations

import argparse
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from deploy.runtime.errors import ConfigError
from deploy.settings.tables import SECTIONS, Settings
from stream.errors import StreamError
from stream.kafka.options import known_option

ENV_PREFIX = "FMSTREAM_"
CONFIG_ENV = "FMSTREAM_CONFIG"
# Tables renamed so that no two things share a name: old table -> (its table now, the
# `Settings` attribute whose keys moved). The old names are read, with a warning,
# for one more release.
RENAMED_TABLES = {"joiner": ("join", "join_daemon"), "log": ("logging", "logging")}


@dataclass(frozen=True)
class Option:
    """A command-line flag for one configuration key."""

    key: str
    flag: str
    help: str

    @property
    def env(self) -> str:
        return env_name(self.key)

    @property
    def dest(self) -> str:
        return self.key.replace(".", "__")


def env_name(key: str) -> str:
    return ENV_PREFIX + key.replace(".", "_").upper()


def _field_index() -> dict[str, tuple[str, type, Any, Any]]:
    """key -> (Settings attribute, dataclass, field type, default)."""
    index = {}
    for section, parts in SECTIONS.items():
        for attr, cls in parts:
            hints = typing.get_type_hints(cls)
            for f in fields(cls):
                default = f.default
                if default is MISSING and f.default_factory is not MISSING:
                    default = f.default_factory()
                index[f"{section}.{f.name}"] = (attr, cls, hints[f.name], default)
    return index


FIELDS = _field_index()


def _renamed_keys() -> dict[str, str]:
    """old key -> its key now, for every key of a renamed table."""
    out = {}
    for old, (new, attr) in RENAMED_TABLES.items():
        for key, (owner, *_) in FIELDS.items():
            if owner == attr and key.startswith(new + "."):
                out[f"{old}.{key.split('.', 1)[1]}"] = key
    return out


RENAMED_KEYS = _renamed_keys()


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    for opt in options:
        if opt.key not in FIELDS:
            raise ConfigError(f"option {opt.flag} names unknown key {opt.key}")
        _, _, typ, default = FIELDS[opt.key]
        help_text = f"{opt.help} [env {opt.env}; default {default}]"
        if typ is bool:  # a switch: present means true
            parser.add_argument(
                opt.flag,
                dest=opt.dest,
                default=None,
                action="store_const",
                const="true",
                help=help_text,
            )
            continue
        parser.add_argument(
            opt.flag,
            dest=opt.dest,
            default=None,
            metavar=opt.key.split(".")[-1].upper(),
            help=help_text,
        )


def resolve(
    args: argparse.Namespace,
    options: Sequence[Option],
    environ: Mapping[str, str],
    config_path: Path | None,
    warn: Callable[[str], None] = lambda _: None,
) -> Settings:
    """Builds the one frozen `Settings` from every layer; `warn` hears of each old
    (renamed) table or variable that was used."""
    raw: dict[str, tuple[Any, str]] = {}
    kafka_options: dict[str, Any] = {}
    if config_path is not None:
        _read_toml(config_path, raw, kafka_options, warn)
    for old, key in RENAMED_KEYS.items():
        if env_name(old) in environ:
            warn(f"{env_name(old)} is deprecated: set {env_name(key)} instead")
            raw[key] = (environ[env_name(old)], env_name(old))
    for key in FIELDS:
        if env_name(key) in environ:
            raw[key] = (environ[env_name(key)], env_name(key))
    for opt in options:
        value = getattr(args, opt.dest, None)
        if value is not None:
            raw[opt.key] = (value, opt.flag)
    return _build(raw, kafka_options)


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """FMSTREAM_* variables that name no setting (a misspelt one is otherwise ignored)."""
    known = {env_name(key) for key in [*FIELDS, *RENAMED_KEYS]} | {CONFIG_ENV}
    return sorted(n for n in environ if n.startswith("FMSTREAM_") and n not in known)


def _read_toml(
    path: Path,
    raw: dict[str, tuple[Any, str]],
    kafka_options: dict[str, Any],
    warn: Callable[[str], None],
) -> None:
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path} (TOML in UTF-8): {exc}") from exc
    for section, table in doc.items():
        if section in RENAMED_TABLES:
            section = _renamed_table(path, section, table, doc, warn)
        if section not in SECTIONS or not isinstance(table, dict):
            raise ConfigError(
                f"{path}: unknown table [{section}]; known tables: {', '.join(SECTIONS)}"
            )
        for name, value in table.items():
            key = f"{section}.{name}"
            if key in FIELDS and key != "kafka.options":
                if isinstance(value, str) and FIELDS[key][2] in (int, float, bool):
                    # TOML has numbers and booleans: a quoted one is a mistake, not text.
                    raise ConfigError(
                        f"{path}: {key} must be {_describe(FIELDS[key][2])}, got the string "
                        f"{value!r} (write it without quotes)"
                    )
                raw[key] = (value, str(path))
            elif section == "kafka" and known_option(name):
                kafka_options[name] = value
            else:
                raise ConfigError(f"{path}: unknown key {key}")


def _renamed_table(
    path: Path, old: str, table: Any, doc: Mapping[str, Any], warn: Callable[[str], None]
) -> str:
    new = RENAMED_TABLES[old][0]
    keys = table if isinstance(table, dict) else {}
    stray = [f"{old}.{k}" for k in keys if f"{old}.{k}" not in RENAMED_KEYS]
    if stray:
        raise ConfigError(f"{path}: unknown key {stray[0]}")
    both = sorted(set(keys) & set(doc.get(new, {})))
    if both:
        raise ConfigError(f"{path}: {both[0]} is set in both [{old}] and [{new}]; keep [{new}]")
    warn(f"{path}: table [{old}] is deprecated: rename it [{new}]")
    return new


def _build(raw: Mapping[str, tuple[Any, str]], kafka_options: dict[str, Any]) -> Settings:
    values: dict[str, dict[str, Any]] = {}
    for key, (attr, _cls, typ, _default) in FIELDS.items():
        if key in raw:
            value, source = raw[key]
            values.setdefault(attr, {})[key.split(".")[1]] = _coerce(value, typ, key, source)
    values.setdefault("kafka", {})["options"] = kafka_options
    parts = {attr: cls for section in SECTIONS.values() for attr, cls in section}
    built = {}
    for attr, cls in parts.items():
        try:
            built[attr] = cls(**values.get(attr, {}))
        except (ConfigError, StreamError, ValueError) as exc:
            raise ConfigError(str(exc)) from exc
    return Settings(**built)


def _coerce(value: Any, typ: Any, key: str, source: str) -> Any:
    optional = isinstance(typ, types.UnionType) and type(None) in typing.get_args(typ)
    if optional:
        if value is None or value == "":
            return None
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    try:
        return _convert(value, typ)
    except (TypeError, ValueError):
        raise ConfigError(
            f"bad value for {key} from {source}: expected {_describe(typ)}, got {value!r}"
        ) from None


def _convert(value: Any, typ: Any) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise ValueError(value)
    if isinstance(value, bool):
        raise TypeError(value)
    if typ is int:
        if isinstance(value, float) or (isinstance(value, str) and not value.strip()):
            raise TypeError(value)
        return int(value)
    if typ is float:
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if typ is Path:
        if not isinstance(value, str):
            raise TypeError(value)
        return Path(value)
    raise TypeError(f"unsupported configuration type {typ}")


def _describe(typ: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(typ, "a path" if typ is Path else str(typ))
