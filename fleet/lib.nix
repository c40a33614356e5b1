# Building blocks of the lab fleet's systems: plain derivations, no nixpkgs.
# Every builder is /bin/sh with PATH=/usr/bin:/bin, so everything builds offline.
{ system }:
let
  join = builtins.concatStringsSep;
  mapAttrsToList = f: attrs: map (n: f n attrs.${n}) (builtins.attrNames attrs);
in
rec {
  inherit join mapAttrsToList;

  # A package with a name and a version (so closure diffs are meaningful),
  # a small program, a payload of `size` KiB and references to its `deps`.
  mkPackage = { pname, version, deps ? [ ], size ? 8, env ? { } }:
    derivation ({
      name = "${pname}-${version}";
      inherit system pname version;
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      deps = join " " (map toString deps);
      inherit size;
      args = [ "-c" ''
        set -e
        mkdir -p "$out/bin" "$out/share/$pname"
        printf '#!/bin/sh\necho %s %s\n' "$pname" "$version" > "$out/bin/$pname"
        chmod +x "$out/bin/$pname"
        head -c $(( size * 1024 )) /dev/zero | tr '\0' "$(printf %s "$pname" | head -c 1)" > "$out/share/$pname/payload"
        for d in $deps; do echo "$d"; done > "$out/share/$pname/deps"
      '' ];
    } // env);

  # A binary provided as a fixed-output path (recursive sha256 of a directory with
  # bin/<pname>), the way nixpkgs provides prebuilt binaries. Nothing builds it:
  # the lab seeds it with `nix-store --add-fixed --recursive sha256`, a builder
  # without it fails here with this message.
  mkSeeded = { pname, version, hash }:
    derivation {
      name = "${pname}-${version}";
      inherit system pname version;
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      outputHashMode = "recursive";
      outputHashAlgo = "sha256";
      outputHash = hash;
      args = [ "-c" "echo '${pname}-${version}: a seeded fixed-output path, not built here (nixify lab up seeds the builders)' >&2; exit 1" ];
    };

  # The secrets step of activation (sops-nix's role): host_activation.py and the
  # ssh->age helper host_identity.py (stdlib Python, run by the host's python3),
  # with this system's sops. bin/nixify-secrets dry-activate|activate DIR.
  mkSecretsActivation = { sops, version }:
    derivation {
      name = "nixify-secrets-${version}";
      pname = "nixify-secrets";
      inherit system version sops;
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      identity = builtins.readFile ./secrets/host_identity.py;
      activation = builtins.readFile ./secrets/host_activation.py;
      args = [ "-c" ''
        set -e
        lib="$out/libexec/nixify"
        mkdir -p "$out/bin" "$lib"
        printf '%s' "$identity" > "$lib/host_identity.py"
        printf '%s' "$activation" > "$lib/host_activation.py"
        key="/usr/bin/python3 $lib/host_identity.py /etc/ssh/ssh_host_ed25519_key"
        {
          echo '#!/bin/sh'
          echo "exec /usr/bin/python3 $lib/host_activation.py --sops $sops/bin/sops --key-cmd '$key' \"\$@\""
        } > "$out/bin/nixify-secrets"
        chmod +x "$out/bin/nixify-secrets"
      '' ];
    };

  # Merge profiles: packages are concatenated (deduplicated by name), units
  # and settings are merged, later profiles winning.
  mergeProfiles = profiles: {
    packages = builtins.concatLists (map (p: p.packages or [ ]) profiles);
    units = builtins.foldl' (acc: p: acc // (p.units or { })) { } profiles;
    settings = builtins.foldl' (acc: p: acc // (p.settings or { })) { } profiles;
  };

  # A system closure standing in for config.system.build.toplevel: packages
  # under sw/, declared units, and bin/switch-to-configuration.
  mkSystem = { hostName, role, release, profiles, units ? { }, settings ? { } }:
    let
      merged = mergeProfiles profiles;
      allUnits = merged.units // units;
      allSettings = merged.settings // settings;
      # "name ok|fail [secret]": a unit may read one secret file when it starts
      unitLines = join "\n" (mapAttrsToList
        (name: u: "${name} ${if u.fails or false then "fail" else "ok"}"
          + (if u ? readsSecret then " ${u.readsSecret}" else ""))
        allUnits);
      settingLines = join "\n" (mapAttrsToList (n: v: "${n}=${toString v}") allSettings);
    in
    derivation {
      name = "nixos-system-${hostName}-${release}";
      inherit system hostName role release;
      builder = "/bin/sh";
      PATH = "/usr/bin:/bin";
      packages = join " " (map toString merged.packages);
      units = unitLines;
      settings = settingLines;
      brokenActivation = if allSettings.brokenActivation or false then "1" else "";
      switchScript = ./switch-to-configuration.sh;
      args = [ "-c" ''
        set -e
        mkdir -p "$out/bin" "$out/sw/bin"
        for p in $packages; do
          echo "$p" >> "$out/packages"
          for b in "$p"/bin/*; do ln -sf "$b" "$out/sw/bin/"; done
        done
        touch "$out/packages"
        printf '%s\n' "$units" > "$out/units"
        printf '%s\n' "$settings" > "$out/settings"
        printf '%s\n' "$hostName" > "$out/hostname"
        printf '%s\n' "$role" > "$out/role"
        printf '%s\n' "$release" > "$out/nixos-version"
        printf '%s\n' "$system" > "$out/system"
        if [ -n "$brokenActivation" ]; then touch "$out/broken-activation"; fi
        sed "s|@out@|$out|g" "$switchScript" > "$out/bin/switch-to-configuration"
        chmod +x "$out/bin/switch-to-configuration"
      '' ];
    };
}
