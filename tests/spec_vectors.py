"""The spec's interop vectors, read from ../shared/spec at test time (never copied)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from reader.bundles.store import TrustStore

REPO = Path(__file__).resolve().parents[1]
SPEC_DIR = Path(os.environ.get("SUKUMO_SPEC_DIR", REPO.parent / "shared" / "spec"))
VECTORS_PATH = SPEC_DIR / "vectors" / "card-ap-v1.json"

def load_vectors() -> dict[str, Any]:
    if not VECTORS_PATH.exists():
        pytest.fail(f"spec vectors not found at {VECTORS_PATH} (set SUKUMO_SPEC_DIR)")
    return json.loads(VECTORS_PATH.read_text())



def vector_trust(vectors: dict[str, Any], bundle_dir: Path | None = None,
                 tid: str = "t-0001") -> TrustStore:
    """A TrustStore as the vectors say: trust the trust bundle, apply the denylist."""
    store = TrustStore(bytes.fromhex(vectors["root_public_hex"]), vectors["issuer"]["muni"],
                       tid, bundle_dir)
    for kind in ("trust", "denylist"):
        store.apply(kind, bytes.fromhex(vectors["bundles"][f"{kind}_bundle_hex"]),
                    now=vectors["now"])
    return store
