"""The API token: read from http.token_file, or created there (mode 0440) when absent."""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path

TOKEN_MODE = 0o440
TOKEN_DIR_MODE = 0o750


class TokenError(Exception):
    """The token file cannot be read or created; the message names the file."""


def load_or_create_token(path: Path) -> str:
    """The token in `path` (surrounding whitespace ignored), created first if the file is absent."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        return _create(path)
    except FileExistsError:
        # Another agent created it between our read and our create: use theirs.
        return _read(path)


def _read(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenError(f"{path}: cannot read the token file: {exc}") from None
    if not token:
        raise TokenError(f"{path}: the token file is empty")
    return token


def _create(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        if not path.parent.exists():
            path.parent.mkdir(mode=TOKEN_DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TOKEN_MODE)
        try:
            os.fchmod(fd, TOKEN_MODE)  # exactly 0440, whatever the umask
            os.write(fd, token.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        # link() is atomic and never replaces: a reader sees no file or the whole token, and a
        # token another agent just wrote is kept (FileExistsError).
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:
        raise TokenError(f"{path}: cannot create the token file: {exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return token


class TokenCheck:
    """Constant-time comparison of a presented header value with the token."""

    def __init__(self, token: str) -> None:
        self.expected = token.encode()

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(self.expected, presented.encode("utf-8", "surrogateescape"))
