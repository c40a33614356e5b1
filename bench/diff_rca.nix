# Derivation closures for bench/diff.py --rca N: N packages over one base
# library; every third package uses it directly, each uses up to 3 earlier
# ones, plus `unchanged` packages nothing changed touches. `variant` is an
# environment value of the base library: the one leaf cause.
{ n ? 200, unchanged ? 200, variant ? "1" }:
let
  mk = name: deps: extra: derivation ({
    inherit name;
    builder = "/bin/sh";
    system = "x86_64-linux";
    PATH = "/usr/bin:/bin";
    refs = deps;
    args = [ "-c" "mkdir -p $out && printf '%s\\n' $refs > $out/refs" ];
  } // extra);
  mod = a: b: a - (a / b) * b;
  base = mk "base-1.0" [ ] { V = variant; };
  other = builtins.genList (i: mk "other${toString i}-1.0" [ ] { }) unchanged;
  pkgs = builtins.genList (i:
    mk "pkg${toString i}-1.0"
      ((if mod i 3 == 0 then [ base ] else [ ])
        ++ builtins.genList (k: builtins.elemAt pkgs (mod (i * 7 + k * 13) i)) (if i < 1 then 0 else 3)
        ++ [ (builtins.elemAt other (mod i unchanged)) ])
      { }) n;
in mk "system" (pkgs ++ other) { }
