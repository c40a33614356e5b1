"""The single git gate: branch policy, commit shape, push validation, integration.

Who is an agent: the actor is named by ``$NIXIFY_ACTOR``, else ``git config
nixify.actor``; the name selects an identity and grants nothing. An actor
named in ``git config nixify.operators`` (space or comma separated) is the
operator only when this checkout's SSH signing key (``user.signingkey``,
``gpg.format ssh``) is listed for that name in the allowed-signers file
(``gpg.ssh.allowedSignersFile``) and its private half is usable here;
everyone else, an unnamed actor included, is treated as an agent (fail
closed). Branch owners default to ``claude gemini copilot codex`` (``git
config nixify.owners``); branch names are ``<owner>/<type>/<topic>`` with
owner an owner or operator and type in ``feat fix refactor docs chore ci test
perf build style revert`` (``nixify.types``). Protected
branches (``main``, ``master``, ``operator/*``, ``release/*`` by default,
``nixify.protected``; plus every operator's personal namespace
``<operator>/*``) take no commits, pushes or deletions from agents, and agents
do not commit to another agent's branches.

The policy itself lives in one POSIX sh script (``gate.sh``), installed as the
hooks' ``nixify-gate``; Python calls the same script so there is one source of
truth. See ``validate`` for push-time checks and the builder routing,
``verify`` for the backstop (``gate verify``, the server's ``pre-receive``)
and the commit-time leak scan, ``integrate`` for signed fast-forward
integration and operator grants, ``fixup`` for amend-at-source, ``worktree``
for per-agent worktrees and handoff notes.
"""
