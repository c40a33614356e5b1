"""Helpers that build the diff tests' closures with the real Nix, offline."""
