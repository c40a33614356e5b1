#!/bin/sh
# The lab's stand-in for NixOS's switch-to-configuration: the same actions and
# exit codes (0 ok, 1 usage or activation error, 4 when units failed).
# test/switch activate: /run/current-system moves here, units are (re)started
# and their state recorded under /run/nixify-lab/units. switch/boot install
# the "boot loader" entry (/nix/var/nixify-lab/boot/default).
set -u
out=@out@
action=${1:-}
case "$action" in
  dry-activate|test|switch|boot) ;;
  *) echo "Usage: $0 [switch|boot|test|dry-activate]" >&2; exit 1 ;;
esac

units_of() { [ -f "$1/units" ] && grep -v '^$' "$1/units" | cut -d' ' -f1 | sort; }
old=$(readlink -f /run/current-system 2>/dev/null || true)

if [ -e "$out/broken-activation" ] && [ "$action" != boot ]; then
  echo "activation script failed: $out/broken-activation" >&2
  exit 1
fi

if [ "$action" = dry-activate ]; then
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
[ "$action" = switch ] && install_boot

# activate (a system may declare that its units take a while to start)
delay=$(sed -n 's/^activationSeconds=//p' "$out/settings" 2>/dev/null)
[ -n "$delay" ] && sleep "$delay"
mkdir -p /run/nixify-lab/units
ln -sfn "$out" /run/current-system.tmp
mv -T /run/current-system.tmp /run/current-system
if [ -n "$old" ] && [ -f "$old/units" ]; then
  for u in $(units_of "$old"); do
    grep -q "^$u " "$out/units" || rm -f "/run/nixify-lab/units/$u"
  done
fi
failed=""
while read -r name state; do
  [ -n "$name" ] || continue
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
