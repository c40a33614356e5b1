# Profiles: composable building blocks. A host is a small composition of them.
{ pkgs }:
{
  base = {
    packages = with pkgs; [ glibc bash coreutils systemd openssh nix node-exporter ];
    units = { "sshd.service" = { }; "nix-daemon.service" = { }; "node-exporter.service" = { }; };
  };
  secrets = {
    packages = with pkgs; [ age sops nixify-secrets ];
    units = { "sops-install-secrets.service" = { }; };
  };
  dev = {
    packages = with pkgs; [ git tmux neovim ripgrep direnv python3 ];
  };
  wsl = {
    packages = with pkgs; [ nixos-wsl-utils ];
    units = { "wsl-init.service" = { }; };
    settings = { maxJobs = 0; };
  };
  laptop = {
    packages = with pkgs; [ networkmanager tlp firefox ];
    units = { "NetworkManager.service" = { }; "tlp.service" = { }; };
    settings = { maxJobs = 0; };
  };
  builder = {
    packages = with pkgs; [ git nix-serve ];
    units = { "nix-serve.service" = { }; };
  };
  ci = {
    packages = with pkgs; [ buildkite-agent git ];
    units = { "buildkite-agent.service" = { }; };
  };
  storage = {
    packages = with pkgs; [ samba zfs nfs-utils restic ];
    units = {
      "samba-smbd.service" = { }; "zfs-mount.service" = { }; "nfs-server.service" = { };
      "restic-backup.timer" = { };
      # reads its secret when it starts: the lab records which generation it saw
      "chronyd.service" = { readsSecret = "common/ntp.yaml"; };
    };
  };
  ml = {
    packages = with pkgs; [ cuda-runtime onnxruntime python3 ];
    units = { "inference.service" = { }; };
    settings = { maxJobs = 0; };
  };
  operator = {
    packages = with pkgs; [ git age sops tmux neovim ];
  };
}
