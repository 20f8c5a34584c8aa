"""Compose a run's config from ``pipelines/<pipeline>.yaml`` and command-line overrides with
Hydra's compose API (no output folder, no logging side effects), then validate it."""

import itertools
import os

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from keras_fgvc.config.schema import Config, schema_for
from keras_fgvc.config.validate import ConfigError, check_choices_in_tree, check_key, to_config

# pipelines/ at the top of the repository, reached through the package's link to it, which a
# wheel replaces with the files themselves (setup.cfg, package_data).
PIPELINES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipeline_configs")
DEFAULT_PIPELINE = "fivek"


def available_pipelines(config_dir: str = PIPELINES_DIR) -> list[str]:
    return sorted(
        name[: -len(".yaml")]
        for name in os.listdir(config_dir)
        if name.endswith(".yaml") and not name.startswith("_")
    )


def compose(overrides: list[str] = (), config_dir: str = PIPELINES_DIR) -> Config:
    """The validated Config for ``overrides`` such as ``["stage=mask", "train.epochs=3"]``.

    ``pipeline=<name>`` picks ``pipelines/<name>.yaml``; ``smoke=true`` applies that file's
    ``smoke_settings`` underneath the explicit overrides.

    Example:
        >>> cfg = compose(["smoke=true", "stage=mask"])  # doctest: +SKIP
    """
    parsed = _parse(overrides)
    keys = [override.key_or_group.lstrip("+~") for override in parsed]
    pipeline = next((str(o.value()) for o, k in zip(parsed, keys) if k == "pipeline"), DEFAULT_PIPELINE)
    if pipeline not in available_pipelines(config_dir):
        raise ConfigError(
            f"unknown pipeline '{pipeline}'; available: {', '.join(available_pipelines(config_dir))} "
            f"(files in {os.path.realpath(config_dir)})"
        )
    schema = schema_for(pipeline)
    rest, explicit_keys = [], set()
    for key, text in zip(keys, overrides):
        if key == "pipeline":
            continue
        check_key(key, schema, source=f"command line '{text}'")
        explicit_keys.add(key)
        # "++" sets a key whether or not the YAML file mentions it: the schema, not the file,
        # decides which keys exist (check_key above).
        rest.append(text if text.startswith(("+", "~")) else "++" + text)
    try:
        with initialize_config_dir(config_dir=os.path.abspath(config_dir), version_base="1.3"):
            composed = hydra_compose(config_name=pipeline, overrides=rest)
    except HydraException as error:
        raise ConfigError(f"{pipeline}.yaml: {str(error).splitlines()[0]}") from None
    try:
        tree = OmegaConf.to_container(composed, resolve=True)
    except OmegaConfBaseException as error:
        # An interpolation that selects by a value (vipriors.yaml: ${vipriors.recipes.${vipriors.finetune}})
        # fails on a bad value: name that value and its choices rather than OmegaConf's key path.
        check_choices_in_tree(OmegaConf.to_container(composed, resolve=False))
        raise ConfigError(f"{pipeline}.yaml: {str(error).splitlines()[0]}") from None
    tree["pipeline"] = pipeline
    if tree.get("smoke"):
        for key, value in (tree.get("smoke_settings") or {}).items():
            check_key(key, schema, source=f"{pipeline}.yaml smoke_settings")
            if key not in explicit_keys:
                _set(tree, key, value)
    expand_head_losses(tree)
    return to_config(tree, source=f"{pipeline}.yaml")


def expand_head_losses(tree: dict):
    """Replace a stage's ``losses.heads`` by one entry per head of its model (``logits`` for
    softmax, ``<head>_logits`` for a margin head), so a recipe trains whatever ``model.heads``
    names: ``model.heads=[cosface]`` is one override, not a second edit of the stage's losses.
    An explicit entry for an output wins over ``heads``."""
    from keras_fgvc.models.heads import output_key

    model_heads = (tree.get("model") or {}).get("heads") or ["softmax"]
    for stage in (tree.get("train") or {}).get("stages") or []:
        losses = stage.get("losses") if isinstance(stage, dict) else None
        if not isinstance(losses, dict) or "heads" not in losses:
            continue
        terms = losses.pop("heads")
        heads = (stage.get("model") or {}).get("heads") or model_heads
        for head in heads if isinstance(heads, list) else []:
            losses.setdefault(output_key(str(head)), terms)


def _parse(overrides) -> list:
    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as error:
        raise ConfigError(f"cannot parse overrides: {str(error).splitlines()[0]}") from None


def sweep(overrides: list[str]) -> list[tuple[list[str], str]]:
    """Hydra multirun's basic sweep: ``(overrides, run-name suffix)`` per job.

    Each sweep override (``key=a,b,c``, ``key=range(1,4)``, ``key=choice(a,b)``) expands to one
    value per job, and the jobs are the cartesian product in command-line order, as Hydra's basic
    sweeper runs them. The suffix (``model.dropout=0.1,seed=2``, Hydra's ``override_dirname``)
    gives each job its own run folder: ``<name>-<suffix>``.

    Example:
        >>> [suffix for _, suffix in sweep(["pipeline=cars", "model.dropout=0.1,0.2"])]
        ['model.dropout=0.1', 'model.dropout=0.2']
    """
    parsed = _parse(overrides)
    fixed = [text for text, override in zip(overrides, parsed) if not override.is_sweep_override()]
    swept = [(override.key_or_group, list(override.sweep_string_iterator()))
             for override in parsed if override.is_sweep_override()]
    if not swept:
        return [(list(overrides), "")]
    jobs = []
    for values in itertools.product(*(choices for _, choices in swept)):
        chosen = [f"{key}={value}" for (key, _), value in zip(swept, values)]
        jobs.append((fixed + chosen, ",".join(chosen).replace("/", "_")))
    return jobs


def compose_jobs(overrides: list[str], multirun: bool = False, config_dir: str = PIPELINES_DIR) -> list[Config]:
    """The validated Config of every job of a command line, all composed before any job runs (a
    bad value in the last job stops the sweep before the first writes anything).

    Without ``multirun`` a sweep override is an error naming it (Hydra's rule: ``-m`` runs sweeps).
    A sweep job runs as ``<name>-<suffix>``, so jobs never share a run folder or an export (both are
    named after the run: ``runs/<pipeline>/<name>``, ``saved_models/<pipeline>/<name>/<stage>``).
    """
    import dataclasses

    if not multirun:
        swept = [text for text, override in zip(overrides, _parse(overrides)) if override.is_sweep_override()]
        if swept:
            raise ConfigError(f"'{swept[0]}' is a sweep (one run per value); add -m to run it: python run.py -m ...")
        return [compose(overrides, config_dir)]
    configs = []
    for job, suffix in sweep(overrides):
        cfg = compose(job, config_dir)
        if suffix:
            cfg = dataclasses.replace(cfg, name=f"{cfg.name}-{suffix}")
        configs.append(cfg)
    return configs


def _set(tree, dotted: str, value):
    """Set ``a.b.0.c``-style keys in a nested dict/list tree (numbers index lists)."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree[int(part)] if isinstance(tree, list) else tree.setdefault(part, {})
    if isinstance(tree, list):
        tree[int(leaf)] = value
    else:
        tree[leaf] = value
