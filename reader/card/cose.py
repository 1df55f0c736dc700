"""COSE_Sign1 with ES256 only (RFC 9052), as card-ap-v1 §3 and mqtt-v1 §5 use it.

Pure functions: bytes and keys in, a decoded structure or an exception out. COSE carries
ECDSA signatures as raw `r || s` (32 + 32 bytes); cryptography speaks DER, so the two
are converted here and nowhere else.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

COSE_SIGN1_TAG = 18
ALG_ES256 = -7
HDR_ALG = 1
HDR_KID = 4
_CURVE = ec.SECP256R1()
_ECDSA = ec.ECDSA(hashes.SHA256())
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class CoseError(ValueError):
    """The bytes are not a COSE_Sign1 of the form this project accepts."""


@dataclass(frozen=True)
class Sign1:
    protected: bytes  # the serialized protected header, exactly as signed
    kid: bytes
    payload: bytes
    signature: bytes  # raw r || s

    def verify(self, public_key: ec.EllipticCurvePublicKey) -> bool:
        return verify_raw(public_key, self.signature, sig_structure(self.protected, self.payload))

    def payload_map(self) -> dict[str, Any]:
        """The payload decoded as a CBOR map (CoseError if it is not one)."""
        value = loads_strict(self.payload)
        if not isinstance(value, Mapping):
            raise CoseError("payload is not a CBOR map")
        return dict(value)


def loads_strict(data: bytes) -> Any:
    """Decode exactly one CBOR item; trailing bytes or any decoder error -> CoseError."""
    try:
        # cbor2 accepts trailing garbage with loads(); a streaming decoder lets us refuse it.
        fp = io.BytesIO(data)
        value = cbor2.CBORDecoder(fp).decode()
        if fp.tell() != len(data):
            raise CoseError("trailing bytes after the CBOR item")
        return value
    except CoseError:
        raise
    except Exception as exc:  # cbor2 raises several types, incl. ValueError/TypeError
        raise CoseError(f"not valid CBOR: {exc}") from None


def decode_sign1(data: bytes) -> Sign1:
    """Parse a tagged or untagged COSE_Sign1 with an ES256 protected header and a kid."""
    obj = loads_strict(data)
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != COSE_SIGN1_TAG:
            raise CoseError(f"CBOR tag {obj.tag} is not COSE_Sign1 (18)")
        obj = obj.value
    if not isinstance(obj, list | tuple) or len(obj) != 4:
        raise CoseError("COSE_Sign1 must be an array of 4 items")
    protected, unprotected, payload, signature = obj
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise CoseError("protected header and payload must be byte strings")
    if not isinstance(unprotected, Mapping):
        raise CoseError("unprotected header must be a map")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise CoseError("signature must be 64 bytes r||s")
    header = loads_strict(protected) if protected else {}
    if not isinstance(header, Mapping):
        raise CoseError("protected header is not a map")
    if header.get(HDR_ALG) != ALG_ES256:
        raise CoseError("only alg ES256 (-7) is accepted")
    kid = header.get(HDR_KID)
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= 32:
        raise CoseError("kid must be a byte string of 1-32 bytes")
    return Sign1(protected, kid, payload, signature)


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def public_key_from_point(point: bytes) -> ec.EllipticCurvePublicKey:
    """An uncompressed P-256 point (65 bytes, 04||X||Y) -> key; ValueError if off-curve."""
    if len(point) != 65 or point[0] != 4:
        raise ValueError("public key must be a 65-byte uncompressed P-256 point")
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point)


def point_of(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def private_key_from_scalar(scalar: int | bytes) -> ec.EllipticCurvePrivateKey:
    if isinstance(scalar, bytes):
        scalar = int.from_bytes(scalar, "big")
    return ec.derive_private_key(scalar, _CURVE)


def verify_raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes) -> bool:
    """Verify a raw r||s ES256 signature over message."""
    if len(signature) != 64:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
        return False
    try:
        public_key.verify(encode_dss_signature(r, s), message, _ECDSA)
    except InvalidSignature:
        return False
    return True


def sign_raw(private_key: ec.EllipticCurvePrivateKey, message: bytes) -> bytes:
    r, s = decode_dss_signature(private_key.sign(message, _ECDSA))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign1(payload: dict[str, Any] | bytes, private_key: ec.EllipticCurvePrivateKey, kid: bytes,
          *, tagged: bool = True) -> bytes:
    """Make a COSE_Sign1 (issuer side: dev issuer, tests, `sukumo-city publish-bundle`)."""
    body = payload if isinstance(payload, bytes) else cbor2.dumps(payload)
    protected = cbor2.dumps({HDR_ALG: ALG_ES256, HDR_KID: kid})
    signature = sign_raw(private_key, sig_structure(protected, body))
    item: Any = [protected, {}, body, signature]
    if tagged:
        item = cbor2.CBORTag(COSE_SIGN1_TAG, item)
    return cbor2.dumps(item)
