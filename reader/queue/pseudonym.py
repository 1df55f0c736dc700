"""Member pseudonyms: HMAC-SHA256 of the member id under a secret of this terminal.

What the terminal keeps about a member at rest (mode state) and what it writes to its
logs, status.json and `STATUS=` names the member by pseudonym, never by id. Member ids
are guessable (a municipality's numbering), so anyone holding the secret can test a
guess: the hash keeps casual readers of a stolen SD card out, the pruning of mode state
(reader/queue/mode_state.py) is what protects. The secret is made once (provisioning, or
the first start), 0600, owned by the state directory's owner, and never leaves the
terminal: it is not logged, not sent, not in any bundle.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from reader.errors import ConfigError
from reader.system.i18n import _
from reader.system.ownership import adopt

KEY_FILE = "pseudonym.key"
_KEY_BYTES = 32
_HEX = 32  # 128 bits: no two members of a city share one


class Pseudonyms:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError(_("pseudonym secret too short"))
        self._secret = secret

    def of(self, mid: str) -> str:
        return "p-" + hmac.new(self._secret, mid.encode(), hashlib.sha256).hexdigest()[:_HEX]

    def __repr__(self) -> str:  # never the secret, not even in a traceback
        return "Pseudonyms(<secret>)"

    @classmethod
    def load_or_create(cls, path: Path) -> Pseudonyms:
        """The terminal's secret at `path` (made there, 0600, if there is none yet);
        ConfigError when it cannot be read or made."""
        try:
            return cls(path.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            raise ConfigError(_("pseudonym secret {path}: {why}; it must be a file of {n} "
                                "random bytes readable by the service").format(
                                    path=path, why=exc, n=_KEY_BYTES)) from None
        secret = secrets.token_bytes(_KEY_BYTES)
        # A name of its own: a shared one let a second process truncate and rewrite the
        # file the first had just linked into place, and use a different secret.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secret)
                fh.flush()
                os.fsync(fh.fileno())
            adopt(tmp, path.parent)
            # link, not replace: two processes starting together keep ONE secret.
            try:
                os.link(tmp, path)
            except FileExistsError:
                secret = path.read_bytes()
            finally:
                tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise ConfigError(_("cannot create the pseudonym secret {path}: {why} (check "
                                "paths.state_dir)").format(path=path, why=exc.strerror or exc)
                              ) from None
        return cls(secret)
