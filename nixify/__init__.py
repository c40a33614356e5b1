"""nixify: deploy and validate a NixOS fleet declared by role."""

__version__ = "0.1.0"
