"""Reading params files: YAML files merged (a preset over params.yaml), `key.path=value`
overrides, and validation into the schema of `schema` with one-line errors naming the file and
the key's full path.

Variants are a name plus the ``prune`` keys they override, deep-merged over ``prune``. A mapping
that carries a ``kind`` (schedule, loss) is *replaced* rather than merged when the override names a
different kind, so ``schedule: {kind: linear, steps: 10}`` does not inherit the default's ``rate``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from alphaprune.pipeline.params.base import ConfigError
from alphaprune.pipeline.params.recipe import PruneConfig
from alphaprune.pipeline.params.retired import retired
from alphaprune.pipeline.params.schema import VARIANT_NAME, Params


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, recursively; a mapping whose `kind` changes is replaced whole."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        old = out.get(key)
        if (
            isinstance(old, dict)
            and isinstance(value, dict)
            and value.get("kind", old.get("kind")) == old.get("kind")
        ):
            out[key] = deep_merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _fmt_errors(err: ValidationError, source: str, prefix: tuple = ()) -> str:
    lines = []
    for e in err.errors():
        path = _user_path((*prefix, *e["loc"]))
        loc = ".".join(str(p) for p in path)
        msg = e["msg"].removeprefix("Value error, ")
        quiet = e["type"] in ("missing", "extra_forbidden") or isinstance(e["input"], dict)
        got = "" if quiet else f", got {e['input']!r}"
        if e["type"] == "extra_forbidden":
            old = retired(path)
            msg = "unknown key" if old is None else _retired_message(old)
        # A check across sections (a model validator) has no key path: its message names them.
        lines.append(f"{source}: {loc}: {msg}{got}" if loc else f"{source}: {msg}{got}")
    return "; ".join(lines)


def _retired_message(old) -> str:
    return (
        f"removed in alphaprune {old.release}, use {old.replaced_by} instead ({old.why}; "
        "see CHANGELOG.md)"
    )


_TAGGED = ("schedule", "loss")  # discriminated unions: pydantic adds the tag after these keys


def _user_path(loc: tuple) -> list:
    """Drop the discriminator tag pydantic inserts (`schedule.exponential.rate`): users never
    wrote that key."""

    def is_tag(i: int) -> bool:
        return i > 0 and loc[i - 1] in _TAGGED and (i < 2 or loc[i - 2] != "variants")

    return [p for i, p in enumerate(loc) if not is_tag(i)]


def resolve(raw: Any, source: str = "params") -> Params:
    """Validate a params mapping; each variant is deep-merged over `prune` then validated."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    raw = copy.deepcopy(raw)
    variants_raw = raw.pop("variants", None) or {}
    if not isinstance(variants_raw, dict):
        raise ConfigError(f"{source}: variants: expected a mapping of name -> prune overrides")
    if not variants_raw:  # the pipeline has nothing to run, and prune no recipe to name
        raise ConfigError(f"{source}: variants: define at least one variant, e.g. seed: {{}}")
    try:
        base = Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_fmt_errors(err, source)) from None
    prune_raw = base.prune.model_dump()
    variants: dict[str, PruneConfig] = {}
    for name, override in variants_raw.items():
        name = str(name)
        if not VARIANT_NAME.fullmatch(name):
            shown = name if name.isprintable() else repr(name)
            raise ConfigError(
                f"{source}: variants.{shown}: invalid variant name: names become paths and stage "
                "names; use only lowercase letters, digits, '_' and '-'"
            )
        if name == "teacher":
            raise ConfigError(
                f"{source}: variants.teacher: the name is reserved for the teacher, whom the "
                "summary and comparisons list beside the variants"
            )
        override = override or {}
        if not isinstance(override, dict):
            raise ConfigError(f"{source}: variants.{name}: expected a mapping of prune overrides")
        try:
            variants[name] = PruneConfig.model_validate(deep_merge(prune_raw, override))
        except ValidationError as err:
            raise ConfigError(_fmt_errors(err, source, ("variants", name))) from None
    reference = base.eval.reference
    if reference is not None and reference not in variants:
        known = ", ".join(variants)
        raise ConfigError(
            f"{source}: eval.reference: not a variant, got {reference!r}; params define: {known}"
        )
    params = base.model_copy(update={"variants": variants})
    try:
        params.check_grid()
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    return params


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a','b','c'], value parsed as YAML)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    return key.split("."), yaml.safe_load(value)


def set_path(raw: dict[str, Any], path: list[str], value: Any) -> None:
    node = raw
    for part in path[:-1]:
        if node.get(part) is None:  # absent, or written as `seed:` (an empty variant)
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {part} is not a mapping")
    node[path[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from `path` (an empty file is an empty mapping)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return _unshared(raw)


def _unshared(node: Any) -> Any:
    """`node` with every mapping and list its own. YAML aliases and merge keys (`<<: *recipe`)
    load as one object in several places, and deepcopy keeps that sharing: a `--set` on one
    variant's nested key would change every variant that merges the same recipe."""
    if isinstance(node, dict):
        return {key: _unshared(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_unshared(value) for value in node]
    return node


def merge_files(
    paths: list[str | Path], overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """The raw mapping of params files, later ones deep-merged over earlier ones (e.g. a preset
    over params.yaml), then `key.path=value` overrides. A later file that defines `variants`
    replaces the grid rather than adding to it."""
    raw: dict[str, Any] = {}
    for path in paths:
        layer = read_yaml(path)
        if "variants" in layer:
            raw.pop("variants", None)
        raw = deep_merge(raw, layer)
    for text in overrides:
        set_path(raw, *parse_override(text))
    return raw


def load_params(
    paths: str | Path | list[str | Path], overrides: list[str] | tuple[str, ...] = ()
) -> Params:
    """Read, merge (see `merge_files`) and validate params files."""
    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    return resolve(merge_files(paths, overrides), source=" + ".join(str(p) for p in paths))
