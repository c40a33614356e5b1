#!/bin/sh
# managed-by: nixify hooks install
# nixify git gate: the one source of truth for branch policy and commit shape.
# POSIX sh, no dependencies beyond git; installed as .git/hooks/nixify-gate by
# `nixify hooks install`, called by the pre-commit, commit-msg and pre-push
# hooks (and by `nixify gate ...`, `nixify integrate`, `nixify worktree`).
#
#   nixify-gate pre-commit              refuse commits on protected/ill-named branches, then
#                                       $NIXIFY_CMD gate staged: the leak scan of the staged blobs
#   nixify-gate commit-msg FILE         refuse messages not shaped `type(scope): summary`
#   nixify-gate pre-push REMOTE [URL]   refuse pushes to protected/ill-named refs (refs on
#                                       stdin as git gives them), then run $NIXIFY_CMD gate
#                                       validate for the heavy checks
#   nixify-gate check-branch NAME       policy for committing to branch NAME (exit 0/1)
#   nixify-gate check-name NAME         the naming rule alone, whoever acts: prints
#                                       "protected" or "branch" (exit 0), else exit 1
#   nixify-gate check-subject TEXT      the commit-message rule for one subject line
#   nixify-gate check-subjects          "SHA SUBJECT" lines on stdin; prints the failing SHAs
#   nixify-gate is-protected NAME...    prints the NAMEs that are protected branches
#   nixify-gate operators               prints the configured operator names, one a line
#   nixify-gate role                    print "operator NAME" or "agent NAME" (why on stderr)
#
# Who is acting: $NIXIFY_ACTOR, else `git config nixify.actor`. The name only
# says which configured identity to use; it never grants one. The actor is the
# operator when the name is listed in `git config nixify.operators` AND this
# repository's signing key proves it: `gpg.format` is ssh, `user.signingkey`'s
# public key is listed for that name in the allowed-signers file
# (`gpg.ssh.allowedSignersFile`, principal = the name or name@domain), and the
# private half is usable here (a readable key file, or held by ssh-agent).
# Anyone else, unnamed included, is an agent (fail closed). Configuration:
#   nixify.owners     who may own branches (default: claude gemini copilot codex; several
#                     entries add up; the older nixify.agents is read when owners is unset)
#   nixify.operators  operator names    (default: none); operators own branches too
#   nixify.types      branch/commit types
#                     (default: feat fix refactor docs chore ci test perf build style revert)
#   nixify.protected  protected branch globs (default: main master operator/* release/*);
#                     every operator's personal namespace <operator>/* is protected too.
# Branch names: <owner>/<type>/<topic>, owner an owner or operator, type from
# the types, topic [A-Za-z0-9._-] words separated by /.
set -u

owners=""
agents="claude gemini copilot codex"
operators=""
types="feat fix refactor docs chore ci test perf build style revert"
protected="main master operator/* release/*"
actor=""
gpgformat=""
signingkey=""
signers=""
# One git process for all configuration (list values may be space or comma separated).
cfg=$(git config --get-regexp '^nixify\.' 2>/dev/null)
if [ -n "$cfg" ]; then
  while IFS=' ' read -r key value; do
    case $key in
      nixify.owners) owners=${owners:+$owners }$value ;;
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
[ -n "$owners" ] || owners=$agents
# Lists split on spaces or commas (no extra processes on the commit path).
IFS=' ,	
'
actor=${NIXIFY_ACTOR:-$actor}

say() { printf 'nixify-gate: %s\n' "$*" >&2; }

tilde() { case $1 in "~/"*) printf '%s' "${HOME:-}/${1#"~/"}" ;; *) printf '%s' "$1" ;; esac; }

# operator_key: 0 when the configured signing key is listed for $actor in the
# allowed-signers file and its private half is usable here; else 1, the reason
# in $keywhy. Read only when the actor names an operator (agents pay nothing).
keywhy=""
operator_key() {
  gpgformat=$(git config --get gpg.format 2>/dev/null) || gpgformat=""
  signingkey=$(git config --get user.signingkey 2>/dev/null) || signingkey=""
  signers=$(git config --get gpg.ssh.allowedSignersFile 2>/dev/null) || signers=""
  if [ "$gpgformat" != ssh ]; then
    keywhy="no SSH commit signing here (git config gpg.format ssh; it is '${gpgformat}')"
    return 1
  fi
  [ -n "$signingkey" ] || { keywhy="no signing key (git config user.signingkey)"; return 1; }
  [ -n "$signers" ] || {
    keywhy="no allowed-signers file (git config gpg.ssh.allowedSignersFile)"; return 1; }
  signers=$(tilde "$signers")
  [ -r "$signers" ] || { keywhy="allowed-signers file $signers is not readable"; return 1; }
  priv=""
  case $signingkey in
    key::*) pub=${signingkey#key::} ;;
    ssh-*|ecdsa-*|sk-*) pub=$signingkey ;;
    *)
      kf=$(tilde "$signingkey")
      case $kf in *.pub) priv=${kf%.pub}; pubfile=$kf ;; *) priv=$kf; pubfile=$kf.pub ;; esac
      if [ -r "$pubfile" ]; then
        pub=$(cat "$pubfile")
      elif [ -r "$priv" ]; then
        pub=$(ssh-keygen -y -f "$priv" 2>/dev/null) || pub=""
      else
        keywhy="signing key $kf does not exist"; return 1
      fi ;;
  esac
  set -f
  # shellcheck disable=SC2086
  set -- $pub
  set +f
  blob=${2:-}
  [ -n "$blob" ] || { keywhy="cannot read a public key from user.signingkey"; return 1; }
  listed=1
  while IFS=' 	' read -r princ rest || [ -n "${princ:-}" ]; do
    case $princ in '#'*|'') continue ;; esac
    hit=1
    set -f
    for w in $rest; do [ "$w" = "$blob" ] && hit=0; done
    [ $hit = 0 ] || { set +f; continue; }
    for p in $princ; do
      p=${p#\"}; p=${p%\"}
      if [ "$p" = "$actor" ] || [ "${p%%@*}" = "$actor" ]; then listed=0; fi
    done
    set +f
  done < "$signers"
  if [ $listed != 0 ]; then
    keywhy="the signing key ($signingkey) is not listed for '$actor' in $signers"; return 1
  fi
  [ -n "$priv" ] && [ -r "$priv" ] && return 0
  if ssh-add -L 2>/dev/null | grep -q -F -e "$blob"; then return 0; fi
  keywhy="the private half of $signingkey is neither a readable file nor held by ssh-agent"
  return 1
}

in_list() { # WORD LIST...
  w=$1; shift
  for x in $*; do [ "$x" = "$w" ] && return 0; done
  return 1
}

opstate=""
is_operator() {
  if [ -z "$opstate" ]; then
    opstate=1
    if [ -n "$actor" ] && in_list "$actor" $operators; then
      if operator_key; then opstate=0; fi
    fi
  fi
  return $opstate
}

# Why a named operator is not acting as one (empty when not applicable).
not_proven() {
  if [ -n "$actor" ] && in_list "$actor" $operators && ! is_operator; then
    say "  '$actor' is a configured operator, but this checkout does not prove it: $keywhy."
    say "  The operator is whoever holds a signing key listed for them in the allowed-signers"
    say "  file; NIXIFY_ACTOR only names which identity to use, it grants nothing."
  fi
}

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

badpart=""
valid_name() { # BRANCH -> 0 when <owner>/<type>/<topic>; else 1, $badpart: shape|owner|type
  b=$1
  badpart=shape
  owner=${b%%/*}; rest=${b#*/}
  [ "$owner" = "$b" ] && return 1
  btype=${rest%%/*}; topic=${rest#*/}
  [ "$btype" = "$rest" ] && return 1
  [ -n "$topic" ] || return 1
  case $owner in ''|*[!A-Za-z0-9._-]*) return 1 ;; esac
  case $topic in /*|*/|*//*|*[!A-Za-z0-9._/-]*) return 1 ;; esac
  badpart=owner
  in_list "$owner" $owners $operators || return 1
  badpart=type
  in_list "$btype" $types || return 1
  badpart=""
  return 0
}

name_refusal() { # BRANCH (after valid_name failed)
  if [ "$badpart" = owner ]; then
    say "refused: '$1': '$owner' is not a branch owner in this repository."
    say "  owners: $owners${operators:+ (operators: $operators)}"
    say "  to add one: git config nixify.owners \"$owners $owner\""
    return
  fi
  say "refused: branch '$1' does not follow <owner>/<type>/<topic>."
  say "  owner: $owners${operators:+ $operators}  (git config nixify.owners)"
  say "  type:  $types"
  say "  topic: letters, digits, . _ - and / (e.g. claude/fix/sops-mac)"
}

check_branch() { # BRANCH VERB ("commit to" | "push to")
  b=$1; verb=$2
  if is_protected "$b"; then
    if is_operator; then return 0; fi
    say "refused: '$b' is a protected branch; agents never $verb it (actor: $(who))."
    not_proven
    say "  work on your own branch: <owner>/<type>/<topic>, e.g. claude/feat/my-topic;"
    say "  the operator integrates it (nixify integrate, fast-forward only)."
    return 1
  fi
  if ! valid_name "$b"; then
    name_refusal "$b"
    return 1
  fi
  owner=${b%%/*}
  if ! is_operator && [ -n "$actor" ] && in_list "$actor" $owners && [ "$owner" != "$actor" ]; then
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

# The leak scan of what is being committed (nothing staged, nothing to scan:
# an empty commit costs one git call).
staged_scan() {
  git diff --cached --quiet 2>/dev/null && return 0
  if [ -z "${NIXIFY_CMD:-}" ]; then
    say "refused: the commit-time leak scan needs nixify (NIXIFY_CMD unset; re-run nixify hooks install)."
    exit 1
  fi
  eval "$NIXIFY_CMD"' gate staged' || exit 1
}

# "SHA SUBJECT" lines on stdin; each failing SHA on stdout (explanations on stderr).
check_subjects() {
  while read -r sha subject; do
    [ -n "$sha" ] || continue
    check_subject "$subject" || printf '%s\n' "$sha"
  done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  pre-commit)
    branch=$(git symbolic-ref --short -q HEAD) || {
      # Detached HEAD (rebase, bisect): the refs it ends up on are checked at push.
      staged_scan
      exit 0
    }
    check_branch "$branch" "commit to" || exit 1
    staged_scan
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
  check-subjects)
    check_subjects
    ;;
  check-name)
    if is_protected "${1:?branch}"; then echo protected; exit 0; fi
    valid_name "$1" || { name_refusal "$1"; exit 1; }
    echo branch
    ;;
  is-protected)
    for b in "$@"; do is_protected "$b" && printf '%s\n' "$b"; done
    ;;
  operators)
    for o in $operators; do printf '%s\n' "$o"; done
    ;;
  role)
    if is_operator; then printf 'operator %s\n' "$actor"; else
      printf 'agent %s\n' "$actor"
      if [ -n "$keywhy" ]; then say "$keywhy"; fi
    fi
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
              not_proven
              status=1
            elif ! is_operator && [ -n "$actor" ] && in_list "$actor" $owners \
                && [ "${name%%/*}" != "$actor" ] && in_list "${name%%/*}" $owners; then
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
          bad=$(printf '%s\n' "$subjects" | check_subjects)
          for sha in $bad; do say "  (commit $sha on '$name')"; status=1; done
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
    say "       | check-branch NAME | check-name NAME | check-subject TEXT | check-subjects"
    say "       | is-protected NAME... | operators | role"
    exit 2
    ;;
esac
exit 0
