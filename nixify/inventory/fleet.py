"""The fleet declaration (inventories/hosts.yaml): roles, hosts, validated as a whole."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nixify.errors import ConfigError
from nixify.inventory.model import BUILDER_ROLES, ROLES, HostData


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ConfigError(
                f"{node.start_mark.name}:{key_node.start_mark.line + 1}: key {key!r} is given twice"
            )
        seen.add(key)
    return dict(loader.construct_pairs(node))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.load(f, Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def _format_validation(source: str, host: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(host)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] not in ("value_error", "missing"):
            msg += f" (got {err.get('input')!r})"
        lines.append(f"{source}: host {host!r}: field {field!r}: {msg}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Fleet:
    """Every host's validated data, in declaration order."""

    hosts: Mapping[str, HostData]
    source: str
    role_defaults: Mapping[str, Mapping[str, Any]]
    entries: tuple[Mapping[str, Any], ...] = ()

    def __iter__(self) -> Iterator[HostData]:
        return iter(self.hosts.values())

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, name: str) -> HostData:
        try:
            return self.hosts[name]
        except KeyError:
            raise ConfigError(f"{self.source}: no host named {name!r}") from None

    def by_role(self, role: str) -> list[HostData]:
        return [h for h in self if h.role == role]

    def subset(self, entries: Sequence[Mapping[str, Any]], source: str) -> Fleet:
        """Another fleet with this one's role defaults: ``entries`` may name hosts of
        this fleet (their declared fields are kept, the entry's fields win) or new ones."""
        declared = {str(e.get("name")): e for e in self.entries}
        merged = [{**declared.get(str(e.get("name")), {}), **e} for e in entries]
        return build_fleet(self.role_defaults, merged, source)

    def builders_for(self, host: HostData) -> list[HostData]:
        """The builders that may build ``host``, most preferred first."""
        return [self.hosts[b] for b in host.builders]


def merged_secrets(
    data: Mapping[str, Any],
    role_defaults: Mapping[str, Mapping[str, Any]],
    entry: Mapping[str, Any],
) -> Any:
    """A host's ``secrets``: its role's list, then the files the host adds (each once,
    in that order). A host entry's ``secrets`` adds to its role's, never replaces it."""
    role = entry.get("role")
    defaults = role_defaults.get(role) if isinstance(role, str) else None
    base = defaults.get("secrets") if isinstance(defaults, Mapping) else None
    own = entry.get("secrets")
    if not isinstance(base, list | tuple) or not isinstance(own, list | tuple):
        return data.get("secrets", ())  # one of them absent (or malformed: validation says)
    return list(dict.fromkeys([*base, *own]))


def build_fleet(
    role_defaults: Mapping[str, Mapping[str, Any]],
    host_entries: Sequence[Mapping[str, Any]],
    source: str,
) -> Fleet:
    """Validate every host (role defaults + its own fields) and the fleet as a whole."""
    errors: list[str] = []
    hosts: dict[str, HostData] = {}
    for role_name in role_defaults:
        if role_name not in ROLES:
            errors.append(
                f"{source}: roles: unknown role {role_name!r} (roles: {', '.join(ROLES)})"
            )
    for index, entry in enumerate(host_entries):
        if not isinstance(entry, Mapping):
            errors.append(f"{source}: hosts[{index}]: expected a mapping, got {entry!r}")
            continue
        name = str(entry.get("name", f"hosts[{index}]"))
        if name in hosts:
            errors.append(f"{source}: host {name!r}: field 'name': duplicate host name")
            continue
        role = entry.get("role")
        data: dict[str, Any] = {}
        if isinstance(role, str):
            data.update(role_defaults.get(role, {}))
        data.update(entry)
        data["secrets"] = merged_secrets(data, role_defaults, entry)
        try:
            hosts[name] = HostData.model_validate(data)
        except ValidationError as exc:
            errors.append(_format_validation(source, name, exc))
    for host in hosts.values():
        for builder in host.builders:
            target = hosts.get(builder)
            if target is None:
                errors.append(
                    f"{source}: host {host.name!r}: field 'builders': unknown host {builder!r}"
                )
            elif target.role not in BUILDER_ROLES:
                errors.append(
                    f"{source}: host {host.name!r}: field 'builders': {builder!r} is a "
                    f"{target.role} host, not a builder"
                )
    if errors:
        raise ConfigError("invalid host data:\n" + "\n".join(errors))
    return Fleet(
        hosts=hosts, source=source, role_defaults=role_defaults, entries=tuple(host_entries)
    )


def load_fleet(path: Path) -> Fleet:
    """Load and validate a fleet declaration file."""
    doc = load_yaml(path)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("hosts"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'hosts' list")
    roles = doc.get("roles") or {}
    if not isinstance(roles, Mapping):
        raise ConfigError(f"{path}: field 'roles': expected a mapping of role -> defaults")
    return build_fleet(roles, doc["hosts"], str(path))
