# The lab fleet's systems, one per host: `nix-build fleet -A hosts.<name>`.
#
# Hosts are discovered from hosts/*.nix (each declares its role and may add
# profiles, units or settings); there is no hand-kept list. `extraHosts`
# ("name=role,name=role") adds hosts that have no file, composed from their
# role's defaults: the lab uses it for fleets larger than the declared one.
{ release ? "26.11", extraHosts ? "" }:
let
  systemOf = nixSystem:
    let
      lib = import ./lib.nix { system = nixSystem; };
      pkgs = import ./packages.nix { inherit lib; };
      profiles = import ./profiles { inherit pkgs; };
    in { inherit lib pkgs profiles; roles = import ./roles.nix profiles; };

  stripNix = f: builtins.substring 0 (builtins.stringLength f - 4) f;
  hostFiles = builtins.filter (f: builtins.match ".*\\.nix" f != null)
    (builtins.attrNames (builtins.readDir ./hosts));

  mkHost = name: decl:
    let
      nixSystem = decl.system or "x86_64-linux";
      s = systemOf nixSystem;
      extra = if decl ? profiles then decl.profiles s.profiles else [ ];
    in
    s.lib.mkSystem {
      hostName = name;
      role = decl.role;
      inherit release;
      profiles = s.roles.${decl.role} ++ extra;
      units = decl.units or { };
      settings = decl.settings or { };
    };

  declared = builtins.listToAttrs (map
    (f: { name = stripNix f; value = import (./hosts + "/${f}"); })
    hostFiles);

  extraPairs = builtins.filter (x: x != "" && builtins.isString x)
    (builtins.split "," extraHosts);
  extra = builtins.listToAttrs (map
    (pair:
      let parts = builtins.filter builtins.isString (builtins.split "=" pair);
      in { name = builtins.elemAt parts 0; value = { role = builtins.elemAt parts 1; }; })
    extraPairs);
in
{
  hosts = builtins.mapAttrs mkHost (extra // declared);
  # The package sets, for tests and benchmarks that want single packages.
  packages = builtins.mapAttrs (_: s: (systemOf s).pkgs)
    { x86_64-linux = "x86_64-linux"; aarch64-linux = "aarch64-linux"; };
}
