"""A small deploy that only reads facts: which system each host runs."""

from pyinfra import host
from pyinfra.facts.server import Command

current = host.get_fact(Command, "readlink -f /run/current-system")
print(f"FACT {host.name} {host.data.role} {current}")
