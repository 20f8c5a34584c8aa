"""Turn a composed config tree into a checked ``Config``: unknown keys, wrong types and
out-of-range choices become one ``ConfigError`` line that names the key and the valid ones."""

import dataclasses
import difflib

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from keras_fgvc.config.schema import CHOICES, Config
from keras_fgvc.errors import UserError


class ConfigError(UserError):
    """A user-facing config mistake; run.py prints it as one line and exits with code 2."""


def schema_at(path: str, schema=Config):
    """The dataclass at dotted ``path``, or None when the path ends in a free-form value."""
    node = schema
    for part in path.split(".") if path else []:
        fields = {f.name: f for f in dataclasses.fields(node)}
        node = fields[part].type
        if not dataclasses.is_dataclass(node):
            return None
    return node


def check_key(dotted: str, schema=Config, source: str = "override"):
    """Raise ConfigError unless ``dotted`` names a declared key (free-form dict values excepted)."""
    node, walked = schema, []
    for part in dotted.split("."):
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            where = ".".join(walked) or "the top level"
            hint = difflib.get_close_matches(part, names, n=1)
            suggestion = f" Did you mean '{'.'.join(walked + hint)}'?" if hint else ""
            raise ConfigError(
                f"unknown config key '{dotted}' ({source}); valid keys at {where}: {', '.join(sorted(names))}.{suggestion}"
            )
        walked.append(part)
        node = {f.name: f.type for f in dataclasses.fields(node)}[part]
        if not dataclasses.is_dataclass(node):
            return


def _check_tree(tree: dict, schema, prefix: str, source: str):
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        check_key(dotted, Config, source)
        child = schema_at(dotted)
        if child is not None and isinstance(value, dict):
            _check_tree(value, child, dotted + ".", source)


def to_config(tree: dict, source: str = "config") -> Config:
    """Validate a plain nested dict and build the typed ``Config``."""
    _check_tree(tree, Config, "", source)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(tree))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        message = str(error).splitlines()[0]
        raise ConfigError(f"config key '{key}': {message}") from None
    for dotted, allowed in CHOICES.items():
        value = _get(cfg, dotted)
        if any(v not in allowed for v in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"config key '{dotted}' = {value!r}; choose one of: {', '.join(map(str, allowed))}")
    return cfg


def to_dict(cfg: Config) -> dict:
    """The plain nested dict of a Config (what the run directory stores as config.yaml)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg
