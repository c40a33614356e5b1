"""The fleet's shared, signed binary cache and its builder pool.

* ``keys``: the cache signing key, made by ``nix-store --generate-binary-cache-key``
  and kept only as a sops file (decrypted in memory, handed to the signer on stdin).
* ``config``: where the cache is (the URL hosts substitute from, the URL builders
  push to), which public keys hosts trust, and the ``nix.conf`` lines for hosts.
* ``pool``: one evaluation per builder, its builds spread over the builder pool
  by Nix's own distributed builds; closures signed, pushed, fetched by targets.
* ``server``: a directory served as an HTTP binary cache (GET for hosts, PUT for
  builders), stdlib only, for small fleets.
"""

from nixify.cache.config import CacheConfig, load_cache_config
from nixify.cache.keys import SigningKey, generate_signing_key, load_signing_key

__all__ = [
    "CacheConfig",
    "SigningKey",
    "generate_signing_key",
    "load_cache_config",
    "load_signing_key",
]
