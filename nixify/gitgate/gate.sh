#!/bin/sh
# managed-by: nixify hooks install
# nixify git gate: the one source of truth for branch policy and commit shape.
# POSIX sh, no dependencies beyond git; installed as .git/hooks/nixify-gate by
# `nixify hooks install`, called by the pre-commit, commit-msg and pre-push
# hooks (and by `nixify gate ...`, `nixify integrate`, `nixify worktree`).
#
#   nixify-gate pre-commit              refuse commits on protected/ill-named branches
#   nixify-gate commit-msg FILE         refuse messages not shaped `type(scope): summary`
#   nixify-gate pre-push REMOTE [URL]   refuse pushes to protected/ill-named refs (refs on
#                                       stdin as git gives them), then run $NIXIFY_CMD gate
#                                       validate for the heavy checks
#   nixify-gate check-branch NAME       policy for committing to branch NAME (exit 0/1)
#   nixify-gate check-subject TEXT      the commit-message rule for one subject line
#   nixify-gate role                    print "operator NAME" or "agent NAME"
#
# Who is acting: $NIXIFY_ACTOR, else `git config nixify.actor`. The actor is the
# operator when the name is listed in `git config nixify.operators`; anyone else,
# unnamed included, is an agent (fail closed). Configuration (git config):
#   nixify.agents     agent owners      (default: claude gemini copilot codex)
#   nixify.operators  operator names    (default: none)
#   nixify.types      branch/commit types (default: feat fix refactor docs chore ci test)
#   nixify.protected  protected branch globs (default: main master operator/* release/*);
#                     every operator's personal namespace <operator>/* is protected too.
# Branch names: <owner>/<type>/<topic>, owner an agent or operator, type from
# the types, topic [A-Za-z0-9._-] words separated by /.
set -u

agents="claude gemini copilot codex"
operators=""
types="feat fix refactor docs chore ci test"
protected="main master operator/* release/*"
actor=""
# One git process for all configuration (list values may be space or comma separated).
cfg=$(git config --get-regexp '^nixify\.' 2>/dev/null)
if [ -n "$cfg" ]; then
  while IFS=' ' read -r key value; do
    case $key in
      nixify.agents) agents=$value ;;
      nixify.operators) operators=$value ;;
      nixify.types) types=$value ;;
      nixify.protected) protected=$value ;;
      nixify.actor) actor=$value ;;
    esac
  done <<EOCFG
$cfg
EOCFG
fi
# Lists split on spaces or commas (no extra processes on the commit path).
IFS=' ,	
'
actor=${NIXIFY_ACTOR:-$actor}

say() { printf 'nixify-gate: %s\n' "$*" >&2; }

in_list() { # WORD LIST...
  w=$1; shift
  for x in $*; do [ "$x" = "$w" ] && return 0; done
  return 1
}

is_operator() { [ -n "$actor" ] && in_list "$actor" $operators; }

who() { if [ -n "$actor" ]; then printf '%s' "$actor"; else printf 'an unnamed actor'; fi; }

is_protected() { # BRANCH
  set -f
  for pat in $protected; do
    # shellcheck disable=SC2254
    case $1 in $pat) set +f; return 0 ;; esac
  done
  set +f
  owner=${1%%/*}
  [ "$owner" != "$1" ] && in_list "$owner" $operators && return 0
  return 1
}

valid_name() { # BRANCH -> 0 when <owner>/<type>/<topic>
  b=$1
  owner=${b%%/*}; rest=${b#*/}
  [ "$owner" = "$b" ] && return 1
  btype=${rest%%/*}; topic=${rest#*/}
  [ "$btype" = "$rest" ] && return 1
  [ -n "$topic" ] || return 1
  case $topic in /*|*/|*//*|*[!A-Za-z0-9._/-]*) return 1 ;; esac
  in_list "$owner" $agents $operators || return 1
  in_list "$btype" $types || return 1
  return 0
}

check_branch() { # BRANCH VERB ("commit to" | "push to")
  b=$1; verb=$2
  if is_protected "$b"; then
    if is_operator; then return 0; fi
    say "refused: '$b' is a protected branch; agents never $verb it (actor: $(who))."
    say "  work on your own branch: <owner>/<type>/<topic>, e.g. claude/feat/my-topic;"
    say "  the operator integrates it (nixify integrate, fast-forward only)."
    return 1
  fi
  if ! valid_name "$b"; then
    say "refused: branch '$b' does not follow <owner>/<type>/<topic>."
    say "  owner: $agents${operators:+ $operators}"
    say "  type:  $types"
    say "  topic: letters, digits, . _ - and / (e.g. claude/fix/sops-mac)"
    return 1
  fi
  owner=${b%%/*}
  if ! is_operator && [ -n "$actor" ] && in_list "$actor" $agents && [ "$owner" != "$actor" ]; then
    say "refused: '$b' belongs to $owner; $actor does not touch another agent's branches."
    return 1
  fi
  return 0
}

check_subject() { # SUBJECT
  s=$1
  case $s in 'fixup! '*|'squash! '*|'amend! '*) s=${s#*! } ;; esac
  ctype=${s%%[(!:]*}
  rest=${s#"$ctype"}
  ok=1
  in_list "$ctype" $types || ok=0
  case $rest in
    '('*)
      scope=${rest%%)*}; scope=${scope#(}
      rest=${rest#*)}
      case $scope in ''|*[!A-Za-z0-9._/,-]*) ok=0 ;; esac ;;
  esac
  rest=${rest#!}
  case $rest in ': '[!\ ]*) ;; *) ok=0 ;; esac
  if [ $ok = 1 ]; then return 0; fi
  say "refused: commit message '$1'"
  say "  expected: type(scope): summary   (scope optional, '!' before ':' marks a breaking change)"
  say "  type one of: $types"
  say "  e.g.  feat(leak): scan git history   |   fix: quote the builder address"
  return 1
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  pre-commit)
    branch=$(git symbolic-ref --short -q HEAD) || {
      # Detached HEAD (rebase, bisect): the refs it ends up on are checked at push.
      exit 0
    }
    check_branch "$branch" "commit to" || exit 1
    ;;
  commit-msg)
    [ $# -ge 1 ] || { say "usage: nixify-gate commit-msg FILE"; exit 2; }
    subject=""
    while IFS= read -r line || [ -n "$line" ]; do
      case $line in '#'*|'') continue ;; esac
      subject=$line; break
    done < "$1"
    [ -n "$subject" ] || { say "refused: empty commit message"; exit 1; }
    check_subject "$subject" || exit 1
    ;;
  check-branch)
    check_branch "${1:?branch}" "commit to" || exit 1
    ;;
  check-subject)
    check_subject "${1:?subject}" || exit 1
    ;;
  role)
    if is_operator; then printf 'operator %s\n' "$actor"; else printf 'agent %s\n' "$actor"; fi
    ;;
  pre-push)
    remote=${1:-}
    zero=0000000000000000000000000000000000000000
    refs=$(cat)
    status=0
    while read -r lref lsha rref rsha; do
      [ -n "${rref:-}" ] || continue
      case $rref in
        refs/heads/*)
          name=${rref#refs/heads/}
          if [ "${lsha#"$zero"}" = "" ] || [ "$lsha" = "$zero" ]; then
            if is_protected "$name" && ! is_operator; then
              say "refused: deleting protected branch '$name' (actor: $(who))."
              status=1
            elif ! is_operator && [ -n "$actor" ] && in_list "$actor" $agents \
                && [ "${name%%/*}" != "$actor" ] && in_list "${name%%/*}" $agents; then
              say "refused: '$name' belongs to ${name%%/*}; $actor does not delete it."
              status=1
            fi
            continue
          fi
          check_branch "$name" "push to" || { status=1; continue; }
          # Commits made with --no-verify still meet the message rule here.
          if [ "$rsha" = "$zero" ]; then old=""; else old="^$rsha"; fi
          subjects=$(git log --format='%h %s' "$lsha" $old --not --remotes 2>/dev/null)
          [ -n "$subjects" ] || continue
          while read -r sha subject; do
            check_subject "$subject" || { say "  (commit $sha on '$name')"; status=1; }
          done <<EOSUBJ
$subjects
EOSUBJ
          ;;
        refs/tags/*)
          if ! is_operator; then
            say "refused: pushing tag '${rref#refs/tags/}'; tags are operator-only (actor: $(who))."
            status=1
          fi ;;
        *)
          if ! is_operator; then
            say "refused: pushing '$rref'; only branches under refs/heads are open to agents."
            status=1
          fi ;;
      esac
    done <<EOREFS
$refs
EOREFS
    [ $status = 0 ] || exit 1
    if [ -z "${NIXIFY_CMD:-}" ]; then
      say "refused: push-time validation needs nixify (NIXIFY_CMD unset; re-run nixify hooks install)."
      exit 1
    fi
    # NIXIFY_CMD is shell-quoted by `nixify hooks install`: eval honours the quoting.
    printf '%s\n' "$refs" | eval "$NIXIFY_CMD"' gate validate --remote "$remote"' || exit 1
    ;;
  *)
    say "usage: nixify-gate pre-commit | commit-msg FILE | pre-push REMOTE [URL]"
    say "       | check-branch NAME | check-subject TEXT | role"
    exit 2
    ;;
esac
exit 0
