"""The workflow config as the user commands see it: ./config.yaml over the defaults of the config schema.

Defaults are written once, in workflow/schemas/config.schema.yaml (Snakemake validates the workflow's config
against it); the commands read them from there, never from a copy.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def load_config(path: str | Path = "config.yaml") -> dict:
    """The workflow config of the current directory, or {} when there is none or it is unreadable (said on
    stderr)."""
    try:
        import yaml

        with open(path) as handle:
            config = yaml.safe_load(handle) or {}
        if not isinstance(config, dict):
            raise ValueError("not a mapping of config keys")
    except FileNotFoundError:
        return {}
    except Exception as error:  # unreadable, a YAML syntax error, not a mapping
        print(f"atlas: ignoring {path}: {error}", file=sys.stderr)
        return {}
    return config


def _defaults(properties: dict) -> dict:
    defaults = {}
    for key, spec in properties.items():
        if "properties" in spec:
            defaults[key] = {**spec.get("default", {}), **_defaults(spec["properties"])}
        elif "default" in spec:
            defaults[key] = spec["default"]
    return defaults


def schema_defaults(schema: Path = SCHEMA) -> dict:
    """{key: default} of the config schema (nested for `novelty`); {} where the schema is not installed."""
    import yaml

    try:
        return _defaults(yaml.safe_load(schema.read_text())["properties"])
    except OSError:
        return {}


def settings(path: str | Path = "config.yaml") -> dict:
    """./config.yaml over the schema defaults (one level of nesting, as the schema has)."""
    merged = schema_defaults()
    for key, value in load_config(path).items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    return merged


def default_outdir(path: str | Path = "config.yaml") -> str | None:
    """`outdir` of ./config.yaml, else the schema default; None when neither is known."""
    value = settings(path).get("outdir")
    return str(value) if isinstance(value, str) and value.strip() else None
