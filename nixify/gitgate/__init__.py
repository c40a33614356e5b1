"""The single git gate: branch policy, commit shape, push validation, integration.

Who is an agent: the actor is ``$NIXIFY_ACTOR``, else ``git config
nixify.actor``. An actor named in ``git config nixify.operators`` (space or
comma separated) is the operator; everyone else, an unnamed actor included,
is treated as an agent (fail closed). Agent owner names default to ``claude
gemini copilot codex`` (``git config nixify.agents``); branch names are
``<owner>/<type>/<topic>`` with owner an agent or operator and type in
``feat fix refactor docs chore ci test`` (``nixify.types``). Protected
branches (``main``, ``master``, ``operator/*``, ``release/*`` by default,
``nixify.protected``; plus every operator's personal namespace
``<operator>/*``) take no commits, pushes or deletions from agents, and agents
do not commit to another agent's branches.

The policy itself lives in one POSIX sh script (``gate.sh``), installed as the
hooks' ``nixify-gate``; Python calls the same script so there is one source of
truth. See ``validate`` for push-time checks and the builder routing,
``integrate`` for fast-forward integration and operator grants, ``worktree``
for per-agent worktrees and handoff notes.
"""
