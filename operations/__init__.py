"""pyinfra operations and facts for nixify: Nix builds, the gates, pins, secrets."""
