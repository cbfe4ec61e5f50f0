"""Reading a config: YAML files with `base:` inheritance, then `key.sub=value` overrides, merged over
a dataclass schema.

OmegaConf structured configs give type checking and unknown-key detection for free; this module
adds the error messages a user needs (which key, what the closest valid key is). The schemas
themselves are in system/config/grpo.py (GRPO) and system/config/recipe.py (SFT, distill, pipeline).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import fields, is_dataclass
from typing import Any, Callable, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A config problem the user must fix; the message names the key."""


def _valid_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(node):
        keys.append(prefix + f.name)
        if is_dataclass(getattr(node, f.name)):
            keys += _valid_keys(getattr(node, f.name), prefix + f.name + ".")
    return keys


def _closest(key: str, schema: type) -> str:
    match = difflib.get_close_matches(key, _valid_keys(schema()), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


# Mappings that a later layer replaces instead of merging into (a recipe's reward functions
# must not silently keep the base file's). A dotted override of one key inside them
# (`env.params.max_turns=3`) sets that key only.
REPLACED_MAPPINGS = ("reward.functions", "env.params", "data.columns", "data.env_params", "data.params",
                     "agent.params")


def _merge(base: DictConfig, update: Any, origin: str, schema: type,
           replacing: tuple[str, ...] = REPLACED_MAPPINGS) -> DictConfig:
    """`update` merged over `base`; of the `replacing` mappings, those that `update` gives are replaced."""
    for key in replacing:
        section, name = key.split(".")
        if isinstance(update.get(section), dict) and name in update[section] and section in base:
            base = base.copy()
            OmegaConf.update(base, key, {}, merge=False)
    try:
        return OmegaConf.merge(base, update)
    except ConfigKeyError as e:
        key = e.full_key or str(e.key)
        raise ConfigError(f"{origin}: unknown config key '{key}'{_closest(key, schema)}") from None
    except ValidationError as e:
        raise ConfigError(f"{origin}: bad value for '{e.full_key}': {e.msg.splitlines()[0]}") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{origin}: {e}") from None


def _read_yaml(path: str, seen: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """The file and, first, the chain of `base:` files it inherits from."""
    path = os.path.abspath(path)
    if path in seen:
        raise ConfigError(f"{path}: circular `base:` inheritance")
    if not os.path.exists(path):
        raise ConfigError(f"config file not found: {path}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    base = data.pop("base", None)
    chain = _read_yaml(os.path.join(os.path.dirname(path), base), seen + (path,)) if base else []
    return chain + [(path, data)]


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`a.b=value` strings -> (key, YAML-parsed value)."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or any(not part.isidentifier() for part in key.split(".")):
            raise ConfigError(f"bad override '{item}': expected key.sub=value, e.g. rollout.group_size=8")
        try:
            parsed.append((key, yaml.safe_load(value) if value != "" else ""))
        except yaml.YAMLError:
            raise ConfigError(f"bad override '{item}': the value is not valid YAML") from None
    return parsed


def load_layers(path: Optional[str], overrides: Optional[list[str]], schema: type,
                check: Optional[Callable[[Any], None]]) -> Any:
    """Schema defaults <- base files <- the file <- command-line overrides; then `check`.
    `schema`: the run's dataclass, `check` its cross-field validation (None: none)."""
    cfg = OmegaConf.structured(schema)
    for file, data in _read_yaml(path) if path else []:
        cfg = _merge(cfg, data, file, schema)
    for key, value in parse_overrides(overrides or []):
        nested: dict = {}
        node = nested
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        replacing = tuple(m for m in REPLACED_MAPPINGS if (m + ".").startswith(key + "."))  # key is m or above it
        cfg = _merge(cfg, nested, f"override '{key}'", schema, replacing)
    config = OmegaConf.to_object(cfg)
    if check is not None:
        check(config)
    return config


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: Any, path: str) -> None:
    with open(path, "w") as f:
        f.write(to_yaml(cfg))
