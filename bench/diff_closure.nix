# Two synthetic system closures for bench/diff.py, made with builtins.toFile
# (no builds): `groups` groups of `perGroup` leaves plus one group file per
# group and a root, so groups * (perGroup + 1) + 1 paths. The "new" variant
# changes the leaves of the first `changedGroups` groups: even leaves get a
# version bump, odd ones new contents at the same version (a rebuild).
{ variant ? "old", groups ? 100, perGroup ? 99, changedGroups ? 5, salt ? "" }:
let
  letters = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  alpha = n: if n < 26 then builtins.elemAt letters n
    else alpha (n / 26 - 1) + builtins.elemAt letters (n - (n / 26) * 26);
  changed = g: variant == "new" && g < changedGroups;
  leaf = g: i:
    let
      k = g * perGroup + i;
      bump = changed g && i / 2 * 2 == i;
      rebuild = changed g && !bump;
      suffix = if k / 10 * 10 == k then "-dev" else if k / 10 * 10 + 1 == k then "-bin" else "";
      version = "${toString (k / 7)}.${if bump then "1" else "0"}";
    in builtins.toFile "pkg${alpha (k / 2)}-${version}${suffix}"
      "leaf ${toString k} ${salt} ${if rebuild then "rebuilt" else ""}\n";
  group = g: builtins.toFile "group${alpha g}-1.0"
    (builtins.concatStringsSep "\n" (builtins.genList (leaf g) perGroup));
in builtins.toFile "system"
  (builtins.concatStringsSep "\n" (builtins.genList group groups))
