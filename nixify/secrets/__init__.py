"""Secrets: SSH host keys as age recipients, the sops file format, rekey runs, audit.

Modules, from the bottom up:

* ``bech32``, ``ssh_to_age``: ed25519 SSH keys -> ``age1...`` / ``AGE-SECRET-KEY-1...``
  (``host_identity`` is a stdlib-only copy of the private half, run on hosts).
* ``tree``, ``yamlio``, ``jsonio``: documents as sops holds them (comments kept),
  read and written as sops 3.11 reads and writes YAML and JSON.
* ``sopsfile``: ``SopsFile`` (load, data_key, decrypt_tree, plaintext,
  with_recipients = updatekeys, rotated) and ``encrypt_tree``.
* ``keys``: identity lookup like sops; ``recipients``: the recipients record;
  ``rules``: ``.sops.yaml`` creation rules from the inventory.
* ``rekey``: parallel, atomic, idempotent rekey runs; ``audit``: the blast-radius
  matrix; ``install``: the on-host
  install script; ``cli``: ``nixify secrets ...`` and ``nixify ssh-to-age``.

The pyinfra side (the host-key fact, the install operation) is
``operations/secrets.py``.
"""
