# A synthetic system closure for the diff tests, no nixpkgs.
#
# packages: a list of { name; deps ? [ names ]; payload ? ""; size ? 0;
#   env ? { }; source ? null (text stored with builtins.toFile, an input source);
#   fixed ? null ({ content; hash; url } -> a fixed-output input);
#   buildDeps ? [ names ] (used at build time only, not referenced at run time);
#   buildOnly ? false (left out of the root, so only build-time users see it);
#   outputs ? [ "out" ] (every output is written, and all are in the root);
#   script ? "" (an extra line of the build script: a change in the builder's args) }.
# Every package becomes one derivation whose output references its deps; the
# root ("system" unless rootName says otherwise) references every package, so
# the closure holds them all.
{ packages, rootName ? "system", rootEnv ? { } }:
let
  sh = "/bin/sh";
  fixedInput = spec: f: derivation {
    name = "${spec.name}-src";
    builder = sh;
    system = "x86_64-linux";
    PATH = "/usr/bin:/bin";
    url = f.url or "https://example.invalid/${spec.name}";
    content = f.content;
    args = [ "-c" "printf %s \"$content\" > $out" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = f.hash;
  };
  build = spec: derivation ({
    name = spec.name;
    builder = sh;
    system = "x86_64-linux";
    PATH = "/usr/bin:/bin";
    payload = spec.payload or "";
    size = toString (spec.size or 0);
    refs = map (d: drvs.${d}) (spec.deps or [ ]);
    buildInputs = map (d: drvs.${d}) (spec.buildDeps or [ ]);
    src = if spec ? source then builtins.toFile "${spec.name}-source.txt" spec.source else "";
    fixedSrc = if spec ? fixed then "${fixedInput spec spec.fixed}" else "";
    args = [
      "-c"
      ''
        for o in $outputs; do d=$(printenv "$o"); mkdir -p "$d"; echo "$o" > "$d/output"; done
        mkdir -p $out
        printf '%s\n' "$payload" > $out/payload
        head -c "$size" /dev/zero > $out/blob
        printf '%s\n' $refs > $out/refs
        if [ -n "$src" ]; then cat "$src" > $out/source; fi
        if [ -n "$fixedSrc" ]; then cat "$fixedSrc" > $out/fixed; fi
        for t in $buildInputs; do cat "$t/payload" >> $out/built-with; done
        ${spec.script or ""}
      ''
    ];
  } // (if spec ? outputs then { outputs = spec.outputs; } else { }) // (spec.env or { }));
  drvs = builtins.listToAttrs (map (s: { name = s.name; value = build s; }) packages);
in
derivation ({
  name = rootName;
  builder = sh;
  system = "x86_64-linux";
  PATH = "/usr/bin:/bin";
  refs = builtins.concatMap (s: map (o: drvs.${s.name}.${o}) (s.outputs or [ "out" ]))
    (builtins.filter (s: !(s.buildOnly or false)) packages);
  args = [ "-c" "mkdir -p $out && printf '%s\\n' $refs > $out/refs" ];
} // rootEnv)
