"""The reference pages, generated from the code at build time so they cannot drift:
every ``nixify`` command's help (walked from ``nixify.cli.build_parser()``), the
``--data`` keys (``nixify.pipeline.options.KEYS``), the host-data fields
(``nixify.inventory.model.HostData``) and the JSON schemas of the run report and the
status output (any pydantic model, or dataclass, the module defines)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from pydantic import BaseModel, TypeAdapter

HELP_COLUMNS = "100"


@contextmanager
def _columns(width: str) -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def walk_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("nixify",)
                  ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself first), by command path; an alias that
    names a parser already listed is not listed again."""
    out = [(path, parser)]
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) in seen:
                    continue
                seen.add(id(sub))
                out.extend(walk_commands(sub, (*path, name)))
    return out


def cli_commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    from nixify.cli import build_parser

    return walk_commands(build_parser())


def _fence(text: str) -> str:
    return "```text\n" + text.rstrip().replace("```", "`\u200b``") + "\n```\n"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def cli_page() -> str:
    lines = [
        "# Command line",
        "",
        "Every `nixify` command and subcommand with its `--help`, generated from the "
        "argument parsers at build time.",
        "",
    ]
    with _columns(HELP_COLUMNS):
        commands = cli_commands()
        lines += ["| command | what it does |", "| --- | --- |"]
        helps: dict[tuple[str, ...], str] = {}
        for path, parser in commands:
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for choice in action._choices_actions:
                        helps[(*path, choice.dest)] = choice.help or ""
        for path, _parser in commands:
            name = " ".join(path)
            anchor = "-".join(path)
            lines.append(f"| [`{name}`](#{anchor}) | {_cell(helps.get(path, ''))} |")
        lines.append("")
        for path, parser in commands:
            name = " ".join(path)
            anchor = "-".join(path)
            level = "#" * min(2 + len(path) - 1, 4)
            lines += [f"{level} {name} {{#{anchor}}}", "", _fence(parser.format_help()), ""]
    return "\n".join(lines)


def data_keys_page() -> str:
    from nixify.pipeline.options import KEYS

    lines = [
        "# `--data` keys",
        "",
        "Every key a run reads from `pyinfra ... --data KEY=VALUE`, from "
        "`nixify.pipeline.options.KEYS`. An unknown key or a bad value stops the run "
        "before any connection, naming the key.",
        "",
        "| key | meaning | applies to |",
        "| --- | --- | --- |",
    ]
    for key, (meaning, kinds) in KEYS.items():
        applies = ", ".join(f"`{k.value}.py`" for k in kinds)
        lines.append(f"| `{key}` {{#{key}}} | {_cell(meaning)} | {applies} |")
    return "\n".join(lines) + "\n"


def _type_text(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return " or ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "anyOf" in prop:
        return " or ".join(_type_text(p) for p in prop["anyOf"])
    t = prop.get("type")
    if t == "array":
        items = prop.get("items") or {}
        return f"list of {_type_text(items) if items else 'values'}"
    if t == "object":
        extra = prop.get("additionalProperties")
        return f"map to {_type_text(extra)}" if isinstance(extra, dict) else "object"
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    return str(t or "any")


def _constraints(prop: dict[str, Any]) -> str:
    out = []
    for key, label in (("pattern", "pattern"), ("minimum", ">="), ("maximum", "<="),
                       ("maxLength", "max length")):
        if key in prop:
            out.append(f"{label} `{prop[key]}`")
    for sub in prop.get("anyOf") or []:
        c = _constraints(sub)
        if c:
            out.append(c)
    items = prop.get("items")
    if isinstance(items, dict):
        c = _constraints(items)
        if c:
            out.append(f"each: {c}")
    return "; ".join(out)


def host_data_page() -> str:
    from nixify.inventory.model import HostData

    schema = HostData.model_json_schema()
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    lines = [
        "# Host data",
        "",
        "The fields every host of `inventories/hosts.yaml` may declare, from the pydantic "
        "model `nixify.inventory.model.HostData`. Unknown fields are errors; an error "
        "names the host and the field.",
        "",
        f"{(HostData.__doc__ or '').strip()}",
        "",
        "| field | type | default | constraints |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in HostData.model_fields.items():
        prop = props.get(field.alias or name, {})
        default = "required" if name in required else f"`{json.dumps(prop.get('default'))}`"
        lines.append(
            f"| `{name}` {{#{name}}} | {_cell(_type_text(prop))} | {_cell(default)} | "
            f"{_cell(_constraints(prop) or '-')} |"
        )
    return "\n".join(lines) + "\n"


def _models(module: ModuleType) -> list[type[BaseModel]]:
    return [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel
        and obj.__module__ == module.__name__
    ]


def schemas_of(module_name: str, preferred: tuple[str, ...] = ()
               ) -> list[tuple[str, dict[str, Any]]]:
    """JSON schemas of what ``module_name`` writes: its ``preferred`` model if it has
    one; else each pydantic model it defines that no other of its models refers to;
    else its dataclasses (through pydantic's TypeAdapter)."""
    module = importlib.import_module(module_name)
    for name in preferred:
        obj = getattr(module, name, None)
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            return [(name, obj.model_json_schema())]
    models = _models(module)
    if models:
        schemas = {m.__name__: m.model_json_schema() for m in models}
        referenced = {d for s in schemas.values() for d in (s.get("$defs") or {})}
        return [(n, s) for n, s in schemas.items() if n not in referenced]
    out = []
    for obj in vars(module).values():
        if (isinstance(obj, type) and dataclasses.is_dataclass(obj)
                and obj.__module__ == module.__name__):
            try:
                out.append((obj.__name__, TypeAdapter(obj).json_schema()))
            except Exception as exc:  # a type pydantic cannot describe: say so
                out.append((obj.__name__, {"description": f"no schema: {exc}"}))
    return out


SCHEMA_PAGES: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    ("run-report", "Run report", "nixify.pipeline.report", ("RunReport",),
     "What every run writes to `reports/deploy-<UTC>.json` and `reports/latest.json` "
     "(the JSON also carries `counts`: hosts by final state)."),
    ("status", "Status output", "nixify.release.status", ("FleetStatus",),
     "What `nixify status --json` prints."),
)


def schema_page(title: str, module: str, preferred: tuple[str, ...], intro: str) -> str:
    lines = [f"# {title}", "", intro, "", f"Generated from `{module}`.", ""]
    for name, schema in schemas_of(module, preferred):
        props = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        lines += [f"## {name}", "", (schema.get("description") or "").strip(), ""]
        if props:
            lines += ["| field | type | required |", "| --- | --- | --- |"]
            for key, prop in props.items():
                lines.append(f"| `{key}` | {_cell(_type_text(prop))} | "
                             f"{'yes' if key in required else 'no'} |")
            lines.append("")
        lines += ["??? note \"JSON schema\"", ""]
        body = json.dumps(schema, indent=2, sort_keys=True)
        lines += ["    ```json", *("    " + ln for ln in body.splitlines()), "    ```", ""]
    return "\n".join(lines)


def generated_pages() -> dict[str, str]:
    """Relative path (under the docs directory) -> Markdown."""
    pages = {
        "reference/cli.md": cli_page(),
        "reference/data-keys.md": data_keys_page(),
        "reference/host-data.md": host_data_page(),
    }
    for slug, title, module, preferred, intro in SCHEMA_PAGES:
        pages[f"reference/{slug}.md"] = schema_page(title, module, preferred, intro)
    return pages
