"""Who signs a bundle: a key in a file (a development city) or a key in a PKCS#11 token
(the city's HSM, a YubiKey through its PKCS#11 module; SoftHSM2 in tests).

Either way the bundle code gets a `Signer`: a function from the COSE Sig_structure to the
ES256 signature (r||s, 64 bytes) and the public point it verifies with. A token's key is
made in the token, marked sensitive and not extractable: it signs there and never leaves.
The PIN comes from SUKUMO_PKCS11_PIN or a prompt; it is never logged or stored.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reader.card.cose import RawSigner, point_of, private_key_from_scalar, sign_raw
from reader.errors import ConfigError

# Not SUKUMO_CITY_…: that prefix is the settings' own, and the PIN is never a setting.
PIN_ENV = "SUKUMO_PKCS11_PIN"


@dataclass(frozen=True)
class Signer:
    sign: RawSigner
    point: bytes  # the uncompressed P-256 public point (65 bytes): what terminals trust
    where: str  # "file:PATH" or "pkcs11:token=…;object=…", recorded with each signature

    @property
    def kid(self) -> bytes:
        return kid_of(self.point)


def kid_of(point: bytes) -> bytes:
    """The key id a bundle names by default: the first 8 bytes of SHA-256 over the public
    point (when the trust bundle gave the key another, name that one explicitly)."""
    return hashlib.sha256(point).digest()[:8]


def file_signer(path: Path) -> Signer:
    """A PEM private key, or a file holding the hex scalar (the dev issuer's form)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc.strerror}") from exc
    try:
        if text.startswith(b"-----"):
            key = serialization.load_pem_private_key(text, None)
        else:
            key = private_key_from_scalar(bytes.fromhex(text.decode().strip()))
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not an unencrypted P-256 private key "
                          "(PEM, or the hex scalar)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"{path} is not a P-256 key: bundles are ES256")
    return Signer(lambda message: sign_raw(key, message), point_of(key.public_key()),
                  f"file:{path}")


@dataclass(frozen=True)
class TokenKey:
    """Where a key lives in a PKCS#11 token."""

    module: Path  # the vendor's PKCS#11 library (/usr/lib/softhsm/libsofthsm2.so, …)
    token: str  # the token's label
    label: str  # the key's label (CKA_LABEL)

    def uri(self) -> str:
        return f"pkcs11:token={self.token};object={self.label}"


def read_pin(token: str) -> str:
    pin = os.environ.get(PIN_ENV)
    if pin:
        return pin
    if not sys.stdin.isatty():
        raise ConfigError(f"the PIN of token {token!r}: set {PIN_ENV} or run in a terminal")
    return getpass.getpass(f"PIN of token {token!r}: ")


def _open(where: TokenKey, pin: str) -> Any:  # python-pkcs11 ships no types
    import pkcs11

    try:
        lib = pkcs11.lib(str(where.module))
    except (OSError, RuntimeError, pkcs11.PKCS11Error) as exc:
        raise ConfigError(f"cannot load the PKCS#11 module {where.module}: {exc}") from exc
    try:
        token = lib.get_token(token_label=where.token)
    except pkcs11.NoSuchToken as exc:
        raise ConfigError(f"no PKCS#11 token labelled {where.token!r} "
                          f"in {where.module}") from exc
    try:
        return token.open(user_pin=pin, rw=True)
    except pkcs11.PinIncorrect as exc:
        raise ConfigError(f"wrong PIN for token {where.token!r}") from exc


def _point(public_key: Any) -> bytes:
    from pkcs11.util.ec import encode_ec_public_key

    loaded = serialization.load_der_public_key(encode_ec_public_key(public_key))  # SPKI
    if not isinstance(loaded, ec.EllipticCurvePublicKey):
        raise ConfigError("the token's key is not an EC key")
    return point_of(loaded)


def token_signer(where: TokenKey, pin: str | None = None) -> Signer:
    """The key `where` names, signing inside its token. Checked once here (the key is
    there, the PIN is right), then each signature opens its own short session."""
    import pkcs11
    from pkcs11 import KeyType, Mechanism, ObjectClass

    pin = pin if pin is not None else read_pin(where.token)
    with _open(where, pin) as session:
        try:
            public = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC, label=where.label)
        except (pkcs11.NoSuchKey, pkcs11.MultipleObjectsReturned) as exc:
            raise ConfigError(f"token {where.token!r} has no single EC key labelled "
                              f"{where.label!r}") from exc
        point = _point(public)

    def sign(message: bytes) -> bytes:
        # CKM_ECDSA signs a digest, so the SHA-256 of ES256 is computed here; the token
        # returns r||s, exactly COSE's form.
        digest = hashlib.sha256(message).digest()
        with _open(where, pin) as session:
            key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label=where.label)
            return bytes(key.sign(digest, mechanism=Mechanism.ECDSA))

    return Signer(sign, point, where.uri())


def token_keygen(where: TokenKey, pin: str | None = None) -> bytes:
    """Make a P-256 key pair in the token (private part sensitive, never extractable);
    its public point. Refuses when a key of that label is already there."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    pin = pin if pin is not None else read_pin(where.token)
    with _open(where, pin) as session:
        try:
            session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label=where.label)
        except pkcs11.NoSuchKey:
            pass
        else:
            raise ConfigError(f"token {where.token!r} already holds a key labelled "
                              f"{where.label!r}: choose another label")
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True)
        public, _private = params.generate_keypair(
            store=True, label=where.label,
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
        return _point(public)
