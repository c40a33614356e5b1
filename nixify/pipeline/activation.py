"""Gate 4 on the host: one detached script that activates, and returns by itself.

The whole of gate 4 runs on the host as one detached job (see
``nixify.transport``: ``setsid``, its outcome recorded in a file), so that a
dropped connection or a killed operator cannot stop it half-way:

1. an intent record ``/var/lib/nixify/activation.json`` (what the host is being
   moved to, from what, by which run), written before anything changes;
2. ``switch-to-configuration test`` of the new system; then, by mode, the
   system profile (the boot entry) and ``switch`` or ``boot``;
3. on any failure: back to the known-good system, the profile first when it
   was moved, then its activation (which sets up its own secrets generation);
4. the outcome as one ``NIXIFY-ACTIVATION {json}`` line: every step's exit code,
   where the host ended (running system and profile, read back), and whether
   that is the new system or the known-good one.

A host is never left with profile != running system except by ``boot`` mode.
The operator reattaches over a new command to read the outcome; it confirms over a
new SSH connection (the dead-man switch below), and the host pins itself.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from nixify.pipeline.options import Mode

SWITCH = "bin/switch-to-configuration"
JOBS_DIR = "/var/lib/nixify/jobs"
DEFAULT_CONFIRM_TIMEOUT = 30.0
PROFILE = "/nix/var/nix/profiles/system"
INTENT = "/var/lib/nixify/activation.json"
OUTCOME_MARK = "NIXIFY-ACTIVATION "


def job_dir(job: str) -> str:
    return f"{JOBS_DIR}/{job}"


def activation_script(
    new: str,
    back: str | None,
    mode: Mode,
    run_token: str,
    job: str,
    confirm_timeout: float = DEFAULT_CONFIRM_TIMEOUT,
) -> str:
    """The detached script of gate 4 for one host (``back``: the known-good system
    to return to; None when the host has none).

    After ``test``/``switch`` it arms a dead-man switch: it waits (detached from
    SSH) for the operator's confirmation, a file ``confirm`` in the job's directory
    holding the known-good pin script, written over a *new* SSH connection after
    the host is proven healthy. It then pins (the host itself, so that a pin exists
    exactly when the host stays on the new system) and ends. Without one within
    ``confirm_timeout`` seconds, or with a ``reject`` file, it returns to the
    known-good system by itself and records why. ``boot`` mode changes nothing
    that runs and is never armed: the operator pins it directly.
    """
    q = shlex.quote
    jd = job_dir(job)
    intent = json.dumps({"target": new, "back": back, "mode": mode.value, "run": run_token,
                         "job": job})
    return f"""set -u
new={q(new)}
back={q(back or "")}
mode={q(mode.value)}
jd={q(jd)}
profile={PROFILE}
steps=""
moved=no
step() {{ steps="$steps\\"$1\\": $2, "; }}
now() {{ readlink -f "$1" 2>/dev/null || true; }}
state() {{ printf '%s\n' "$1" > "$jd/state.tmp" && mv -f "$jd/state.tmp" "$jd/state"; }}
finish() {{
  state done
  printf '{OUTCOME_MARK}{{%s"result": "%s", "running": "%s", "profile": "%s"}}\n' \
    "$steps" "$1" "$(now /run/current-system)" "$(now $profile)"
  rm -f {INTENT}
  exit "$2"
}}
go_back() {{
  # $1: the result to record when the return succeeds
  [ -n "$back" ] || finish no-known-good 3
  if [ "$moved" = yes ]; then
    nix-env -p "$profile" --set "$back"; step return_profile $?
  fi
  "$back/{SWITCH}" "$( [ "$moved" = yes ] && echo switch || echo test )"; rc=$?
  step return_activation "$rc"
  if [ "$rc" -eq 0 ] && [ "$(now /run/current-system)" = "$back" ]; then
    finish "$1" 2
  fi
  finish return-failed 3
}}
mkdir -p "$(dirname {INTENT})" "$jd"
state activating
printf '%s\n' {q(intent)} > {INTENT}.tmp && mv -f {INTENT}.tmp {INTENT}
"$new/{SWITCH}" test; rc=$?; step test "$rc"
[ "$rc" -eq 0 ] || go_back returned
if [ "$mode" = switch ] || [ "$mode" = boot ]; then
  nix-env -p "$profile" --set "$new"; rc=$?; step profile "$rc"
  [ "$rc" -eq 0 ] || go_back returned
  moved=yes
  if [ "$mode" = boot ] && [ -n "$back" ]; then
    # proven to activate; the running system stays until the next boot
    "$back/{SWITCH}" test; rc=$?; step reactivate_running "$rc"
    [ "$rc" -eq 0 ] || go_back returned
  fi
  # already activated by `test`: `boot` makes it the boot default without a second
  # activation (what `switch` adds to `test`)
  "$new/{SWITCH}" boot; rc=$?; step "$mode" "$rc"
  [ "$rc" -eq 0 ] || go_back returned
fi
[ "$mode" = boot ] && finish activated 0
# the dead-man switch: armed until a confirmation arrives over a new connection
state awaiting-confirmation
end=$(( $(date +%s) + {int(confirm_timeout + 0.999)} ))
while [ "$(date +%s)" -lt "$end" ] && [ ! -e "$jd/confirm" ] && [ ! -e "$jd/reject" ]; do
  sleep 0.05
done
if [ -e "$jd/reject" ]; then step rejected 1; go_back rejected; fi
if [ ! -e "$jd/confirm" ]; then step confirm_timeout {int(confirm_timeout)}; go_back reverted; fi
sh "$jd/confirm"; rc=$?; step pin "$rc"
[ "$rc" -eq 0 ] || go_back returned
finish confirmed 0
"""


@dataclass(frozen=True)
class ActivationOutcome:
    """How gate 4 ended on the host, read back from its detached job."""

    # confirmed (pinned by the host) | activated (boot mode) | returned | rejected |
    # reverted (no confirmation in time) | return-failed | no-known-good | lost
    result: str
    running: str = ""
    profile: str = ""
    steps: dict[str, int] = field(default_factory=dict)
    log: str = ""

    @property
    def stayed(self) -> bool:
        """The host ended on the new system."""
        return self.result in ("confirmed", "activated")

    @property
    def returned(self) -> bool:
        """The host is back on its known-good system, checked."""
        return self.result in ("returned", "rejected", "reverted")

    def evidence(self) -> dict[str, Any]:
        return {"result": self.result, "steps": self.steps, "running": self.running,
                "profile": self.profile}


def parse_outcome(log: str, rc: int | None) -> ActivationOutcome:
    """The outcome line of the job's log (``lost`` when the job recorded none: it
    was killed, or the host went down, before it finished)."""
    for line in reversed(log.splitlines()):
        if line.startswith(OUTCOME_MARK):
            try:
                doc = json.loads(line[len(OUTCOME_MARK):])
            except ValueError:
                break
            steps = {k: int(v) for k, v in doc.items()
                     if k not in ("result", "running", "profile")}
            return ActivationOutcome(str(doc.get("result")), str(doc.get("running", "")),
                                     str(doc.get("profile", "")), steps, log)
    return ActivationOutcome("lost", log=log + ("" if rc is None else f"\n(exit {rc})"))
