"""Turn a composed config tree into a checked ``Config``: unknown keys, wrong types and
out-of-range choices become one ``ConfigError`` line that names the key and the valid ones."""

import dataclasses
import difflib
import typing

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from keras_fgvc.config.schema import CHOICES, RANGES, Config, LossConfig, schema_for
from keras_fgvc.errors import UserError


class ConfigError(UserError):
    """A user-facing config mistake; run.py prints it as one line and exits with code 2."""


def _list_item(annotation):
    """The dataclass of a ``list[SomeDataclass]`` field, else None."""
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (None,)
        return item if dataclasses.is_dataclass(item) else None
    return None


def _fields(schema) -> dict:
    return {f.name: f.type for f in dataclasses.fields(schema)}


def schema_at(path: str, schema=Config):
    """The dataclass at dotted ``path`` (list indices allowed), or None for a free-form value."""
    node = schema
    for part in path.split(".") if path else []:
        if part.isdigit():
            continue  # an index into a list of dataclasses: same schema
        annotation = _fields(node)[part]
        node = annotation if dataclasses.is_dataclass(annotation) else _list_item(annotation)
        if node is None:
            return None
    return node


def check_key(dotted: str, schema=Config, source: str = "override"):
    """Raise ConfigError unless ``dotted`` names a declared key (free-form dict values excepted).

    A list of dataclasses (``train.stages``) is indexed by number: ``train.stages.0.epochs``.
    """
    node, walked, expect_index = schema, [], False
    for part in dotted.split("."):
        if expect_index:
            if not part.isdigit():
                raise ConfigError(f"config key '{dotted}' ({source}): '{'.'.join(walked)}' is a list; index it by number")
            walked.append(part)
            expect_index = False
            continue
        fields = _fields(node)
        if part not in fields:
            where = ".".join(walked) or "the top level"
            hint = difflib.get_close_matches(part, list(fields), n=1)
            suggestion = f" Did you mean '{'.'.join(walked + hint)}'?" if hint else ""
            raise ConfigError(
                f"unknown config key '{dotted}' ({source}); valid keys at {where}: {', '.join(sorted(fields))}.{suggestion}"
            )
        walked.append(part)
        annotation = fields[part]
        if dataclasses.is_dataclass(annotation):
            node = annotation
            continue
        node = _list_item(annotation)
        if node is None:
            return  # a free-form value: whatever follows is its own content
        expect_index = True


def _check_tree(tree: dict, schema, prefix: str, source: str):
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        check_key(str(key), schema, f"{source}, at '{dotted}'" if prefix else source)
        annotation = _fields(schema)[key]
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            _check_tree(value, annotation, dotted + ".", source)
        item = _list_item(annotation)
        if item is not None and isinstance(value, list):
            for position, element in enumerate(value):
                if isinstance(element, dict):
                    _check_tree(element, item, f"{dotted}.{position}.", source)


def to_config(tree: dict, source: str = "config") -> Config:
    """Validate a plain nested dict and build the typed Config of its pipeline.

    Checks, in order: every key is declared (with "did you mean"), every value has its type,
    every choice is allowed, and every name (backbone, preset, loss, schedule, stage) exists in
    its registry (``config.names``). Nothing is written before this returns.
    """
    schema = schema_for(tree.get("pipeline") or Config.pipeline)
    _check_tree(tree, schema, "", source)
    # A stage that declares its losses has exactly those: OmegaConf would merge them into the
    # schema's default ({"logits": sparse_ce}) and train "logits" too.
    stages = (tree.get("train") or {}).get("stages") or []
    declared = [set(s["losses"]) if isinstance(s, dict) and isinstance(s.get("losses"), dict) else None for s in stages]
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(tree))
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        message = str(error).splitlines()[0]
        raise ConfigError(f"config key '{key}': {message}") from None
    for stage, outputs in zip(cfg.train.stages, declared):
        if outputs is not None:
            stage.losses = {output: terms for output, terms in stage.losses.items() if output in outputs}
    _type_loss_terms(cfg)
    for dotted, allowed, value in _present(cfg, CHOICES):
        if any(v not in allowed for v in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"config key '{dotted}' = {value!r}; choose one of: {', '.join(map(str, allowed))}")
    check_ranges(cfg)
    from keras_fgvc.config.names import check_names

    check_names(cfg)
    return cfg


def check_choices_in_tree(tree: dict):
    """ConfigError for the first plain value of a ``schema.CHOICES`` key outside its choices, on a
    composed tree before its interpolations resolve (interpolations themselves are skipped)."""
    for dotted, allowed in CHOICES.items():
        node = tree
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        for value in node if isinstance(node, list) else [node]:
            if value is None and None not in allowed or isinstance(value, str) and value.startswith("${"):
                continue
            if value not in allowed:
                raise ConfigError(f"config key '{dotted}' = {value!r}; choose one of: {', '.join(map(str, allowed))}")


def check_ranges(cfg):
    """ConfigError for the first numeric value outside its ``schema.RANGES`` range, and for the
    relations between keys (fractions that leave nothing to train on, an unsafe run name)."""
    import math
    import re

    for dotted, allowed, value in _present(cfg, RANGES):
        if value is None or isinstance(value, bool) or allowed.word is not None and value == allowed.word:
            continue
        # A key that also takes a word is typed Any: its numbers must be checked as integers here.
        if isinstance(value, str) or allowed.word and not isinstance(value, int) or not math.isfinite(value) \
                or not allowed.holds(value):
            raise ConfigError(f"config key '{dotted}' = {value!r}: must be {allowed.describe()}")
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1:
        raise ConfigError(f"config keys 'data.val_fraction' + 'data.test_fraction' = {cfg.data.val_fraction} + "
                          f"{cfg.data.test_fraction}: must be < 1 (the rest trains)")
    # A run name is one folder under runs/<pipeline>/ (sweep jobs add "-key=value,..."): no path.
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.=,+\-]*", cfg.name) or ".." in cfg.name:
        raise ConfigError(f"config key 'name' = {cfg.name!r}: a run name is a plain folder name (letters, digits, "
                          "_ . - = , +; no '/' or '..')")


def _type_loss_terms(cfg):
    """Make every ``train.stages.<i>.losses.<output>`` item a checked LossConfig.

    OmegaConf (2.3) leaves the items of a ``Dict[str, List[dataclass]]`` inside a list of
    dataclasses as plain dicts when it merges, unchecked; so they are merged here one by one.
    """
    for position, stage in enumerate(cfg.train.stages):
        for output, terms in stage.losses.items():
            typed = []
            for index, term in enumerate(terms if isinstance(terms, list) else [terms]):
                key = f"train.stages.{position}.losses.{output}.{index}"
                if not isinstance(term, (dict, LossConfig)):
                    raise ConfigError(f"config key '{key}': give {{name, weight, kwargs}}, got {term!r}")
                if isinstance(term, dict):
                    _check_tree(term, LossConfig, key + ".", "config")
                    try:
                        term = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(LossConfig), term))
                    except OmegaConfBaseException as error:
                        raise ConfigError(f"config key '{key}.{getattr(error, 'key', '?')}': {str(error).splitlines()[0]}") from None
                typed.append(term)
            stage.losses[output] = typed


def to_dict(cfg: Config) -> dict:
    """The plain nested dict of a Config (what the run directory stores as config.yaml)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def _present(cfg, table: dict):
    """``(dotted key, rule, value)`` of the keys of ``table`` that ``cfg`` has (a key of another
    pipeline's options group is skipped)."""
    for dotted, rule in table.items():
        if hasattr(cfg, dotted.split(".")[0]):
            yield dotted, rule, _get(cfg, dotted)


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg
