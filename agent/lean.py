"""Imports the agent's third-party runtime the lean way, before anything else imports it
(memory, issue #15). `run` and `once` call `import_runtime()` first; a module imported earlier
keeps its normal form, so calling it late is harmless, only less lean.

Two import-time costs that the running agent never uses:

- aiohttp builds two default TLS contexts when `aiohttp.connector` is imported, and each loads
  the whole system CA file (~140 certificates, ~0.9 MiB of OpenSSL objects each). The agent
  never opens a connection with them: its only HTTPS client is aiobotocore, which builds its own
  context from botocore's CA bundle. During that one import `SSL_CERT_FILE` names an empty file,
  so those two contexts load no file of certificates (OpenSSL's lookup by hashed directory stays,
  and loads a CA only when a verification needs it). The variable is restored right after.
- frozenlist's compiled extension is C++ and maps libstdc++ (~1 MiB) for aiohttp's signal lists,
  which are built once at start; the pure-Python FrozenList has the same behaviour.

Neither changes what the agent does; tests/unit/test_lean.py checks both in a fresh interpreter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: OpenSSL's variable for its default CA file (read when a context loads the default paths).
CA_FILE_ENV = "SSL_CERT_FILE"
FROZENLIST_ENV = "FROZENLIST_NO_EXTENSIONS"


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """`values` in the environment for the block, then exactly what was there before (children
    started later inherit nothing of it)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def import_runtime() -> None:
    """Import frozenlist and aiohttp (client and server) without their unused weight."""
    with _environ(**{CA_FILE_ENV: os.devnull, FROZENLIST_ENV: "1"}):
        import aiohttp.connector  # noqa: F401
        import frozenlist  # noqa: F401
