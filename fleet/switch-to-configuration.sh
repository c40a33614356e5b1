#!/bin/sh
# The lab's stand-in for NixOS's switch-to-configuration: the same actions and
# exit codes (0 ok, 1 usage or activation error, 4 when units failed).
# test/switch activate: this system's secrets are set up first (as sops-nix
# does in the activation script: /run/secrets.d/N, /run/secrets switched
# atomically; a failure exits 1 before anything else moves), then
# /run/current-system moves here, units are (re)started and their state
# recorded under /run/nixify-lab/units (a unit that reads a secret records the
# digest and generation it read, never the value). switch/boot install the
# "boot loader" entry (/nix/var/nixify-lab/boot/default). dry-activate proves
# every secret of this system decrypts with this host's key.
set -u
out=@out@
action=${1:-}
case "$action" in
  dry-activate|test|switch|boot) ;;
  *) echo "Usage: $0 [switch|boot|test|dry-activate]" >&2; exit 1 ;;
esac

# what the operator uploaded for this system (manifest.json, files/); none: no secrets
secrets_src=/var/lib/nixify/secrets/by-closure/${out##*/}
run_secrets() {
  [ -d "$secrets_src" ] || return 0
  if [ ! -x "$out/sw/bin/nixify-secrets" ]; then
    echo "secrets: $secrets_src exists but this system has no secrets activation" >&2
    return 1
  fi
  "$out/sw/bin/nixify-secrets" "$1" "$secrets_src"
}

units_of() { [ -f "$1/units" ] && grep -v '^$' "$1/units" | cut -d' ' -f1 | sort; }
old=$(readlink -f /run/current-system 2>/dev/null || true)

if [ -e "$out/broken-activation" ] && [ "$action" != boot ]; then
  echo "activation script failed: $out/broken-activation" >&2
  exit 1
fi

if [ "$action" = dry-activate ]; then
  run_secrets dry-activate || exit 1
  new_units=$(units_of "$out")
  old_units=$( [ -n "$old" ] && units_of "$old" || true)
  for u in $new_units; do
    if printf '%s\n' "$old_units" | grep -qxF "$u"; then
      echo "would restart the following units: $u"
    else
      echo "would start the following units: $u"
    fi
  done
  for u in $old_units; do
    printf '%s\n' "$new_units" | grep -qxF "$u" || echo "would stop the following units: $u"
  done
  exit 0
fi

install_boot() {
  mkdir -p /nix/var/nixify-lab/boot
  ln -sfn "$out" /nix/var/nixify-lab/boot/default.tmp
  mv -T /nix/var/nixify-lab/boot/default.tmp /nix/var/nixify-lab/boot/default
}

if [ "$action" = boot ]; then
  install_boot
  exit 0
fi
# secrets before anything else moves, and before any unit starts
run_secrets activate || exit 1
[ "$action" = switch ] && install_boot

# activate (a system may declare that its units take a while to start)
delay=$(sed -n 's/^activationSeconds=//p' "$out/settings" 2>/dev/null)
[ -n "$delay" ] && sleep "$delay"
mkdir -p /run/nixify-lab/units
ln -sfn "$out" /run/current-system.tmp
mv -T /run/current-system.tmp /run/current-system
if [ -n "$old" ] && [ -f "$old/units" ]; then
  for u in $(units_of "$old"); do
    grep -q "^$u " "$out/units" || rm -f "/run/nixify-lab/units/$u" "/run/nixify-lab/units/$u.secret"
  done
fi
failed=""
while read -r name state secret; do
  [ -n "$name" ] || continue
  rm -f "/run/nixify-lab/units/$name.secret"
  if [ -n "$secret" ]; then
    # the unit reads its secret as it starts: record what it saw (digest, generation)
    if [ -r "/run/secrets/$secret" ]; then
      digest=$(sha256sum < "/run/secrets/$secret" | cut -d' ' -f1)
      printf 'sha256:%s %s\n' "$digest" "$(readlink -f "/run/secrets/$secret")" \
        > "/run/nixify-lab/units/$name.secret"
    else
      echo "absent /run/secrets/$secret" > "/run/nixify-lab/units/$name.secret"
    fi
  fi
  if [ "$state" = fail ]; then
    echo failed > "/run/nixify-lab/units/$name"
    failed="$failed $name"
  else
    echo active > "/run/nixify-lab/units/$name"
  fi
done < "$out/units"
if [ -n "$failed" ]; then
  echo "warning: the following units failed:$failed" >&2
  exit 4
fi
exit 0
