"""The main job: deploy every selected host through the validation gates.

    pyinfra inventories/lab.py deploy.py [--limit ROLE]...
"""

from pyinfra import host
from pyinfra.facts.server import Command

current = host.get_fact(Command, "readlink -f /run/current-system")
print(f"{host.name} ({host.data.role}) runs {current}")
