"""Typed host data: what every host of the fleet must declare, validated on load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

Role = Literal["wsl_dev", "laptop", "remote_builder", "cloud_builder", "nas", "edge_ml", "operator"]
ROLES: tuple[str, ...] = get_args(Role)
NixSystem = Literal["x86_64-linux", "aarch64-linux"]
NIX_SYSTEMS: tuple[str, ...] = get_args(NixSystem)

# Hosts that must never evaluate or build locally (the spec's constrained hosts).
CONSTRAINED_ROLES: frozenset[str] = frozenset({"wsl_dev", "laptop", "edge_ml"})
# Hosts that build for the others, in the order a builder is preferred.
BUILDER_ROLES: tuple[str, ...] = ("remote_builder", "cloud_builder")

HostName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
_SECRET_PATH = re.compile(r"^(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._/-]+\.(yaml|yml|json|env|bin)$")
_ED25519_LINE = re.compile(r"^ssh-ed25519 [A-Za-z0-9+/]{68}(?: \S.*)?$")


class HostData(BaseModel):
    """One host's declared data. Immutable; unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: HostName
    role: Role
    nix_system: NixSystem = "x86_64-linux"
    system_attr: str = ""
    nix_args: dict[str, str] = Field(default_factory=dict)
    max_jobs: Annotated[int, Field(ge=0, le=256)] = 1
    builders: tuple[HostName, ...] = ()
    secrets: tuple[str, ...] = ()
    ssh_host_key: str | None = None

    @field_validator("system_attr")
    @classmethod
    def _attr_path(cls, value: str) -> str:
        if value and not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_'-]*(\.[A-Za-z_][A-Za-z0-9_'-]*)*", value
        ):
            raise ValueError(f"not a Nix attribute path: {value!r}")
        return value

    @field_validator("secrets")
    @classmethod
    def _secret_paths(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        """Relative paths inside the secrets directory, each given once; and, when the
        validation context names that directory (``{"secrets_dir": Path}``), existing
        files: a declared secret that is not there fails here, not after the switch."""
        for path in value:
            if not _SECRET_PATH.match(path):
                raise ValueError(
                    f"secret {path!r} must be a relative path inside the secrets directory "
                    "ending in .yaml, .yml, .json, .env or .bin"
                )
        if len(set(value)) != len(value):
            raise ValueError("a secret is listed twice")
        context = info.context if isinstance(info.context, dict) else {}
        secrets_dir = context.get("secrets_dir")
        if secrets_dir is not None:
            missing = missing_secret_files(value, Path(secrets_dir))
            if missing:
                raise ValueError("; ".join(missing))
        return value

    @field_validator("ssh_host_key")
    @classmethod
    def _host_key(cls, value: str | None) -> str | None:
        if value is not None and not _ED25519_LINE.match(value.strip()):
            raise ValueError("must be an 'ssh-ed25519 AAAA...' public key line")
        return None if value is None else value.strip()

    @field_validator("max_jobs")
    @classmethod
    def _constrained(cls, value: int, info: ValidationInfo) -> int:
        role = info.data.get("role")
        if role in CONSTRAINED_ROLES and value != 0:
            raise ValueError(
                f"a {role} host is constrained and must have max_jobs = 0 "
                f"(never builds locally), got {value}"
            )
        return value

    @field_validator("builders")
    @classmethod
    def _not_itself(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if info.data.get("name") in value:
            raise ValueError("a host is never built on itself")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> HostData:
        if not self.system_attr:
            object.__setattr__(self, "system_attr", f"hosts.{self.name}")
        return self

    @property
    def constrained(self) -> bool:
        """Never evaluates or builds: Nix runs with max-jobs = 0 there."""
        return self.max_jobs == 0

    @property
    def is_builder(self) -> bool:
        return self.role in BUILDER_ROLES


def missing_secret_files(secrets: tuple[str, ...] | list[str], secrets_dir: Path) -> list[str]:
    """One message per declared secret that is not a file under ``secrets_dir``."""
    return [
        f"secret {rel!r}: no such file {secrets_dir / rel}"
        for rel in secrets
        if not (secrets_dir / rel).is_file()
    ]


def check_secret_files(hosts: list[HostData], secrets_dir: Path, source: str) -> list[str]:
    """Errors, naming host, field and path, for every declared secret file that does not
    exist: the same check as validating with ``context={"secrets_dir": ...}``, for a
    fleet already loaded without that context (``build_fleet`` has none)."""
    return [
        f"{source}: host {host.name!r}: field 'secrets': {message}"
        for host in hosts
        for message in missing_secret_files(host.secrets, secrets_dir)
    ]
