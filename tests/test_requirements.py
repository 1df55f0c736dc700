"""requirements.txt is uv.lock exported, every pin with its hashes: what pip installs in
the Debian package's venv (debian/rules) and in scripts/install.sh, hash-checked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_requirements_txt_is_uv_lock_exported() -> None:
    uv = os.environ.get("UV") or shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not available to export uv.lock")
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-emit-project"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    def body(text: str) -> list[str]:  # the header names the command line; skip it
        return [line for line in text.splitlines() if not line.startswith("#    uv export")]

    assert body(exported) == body((REPO / "requirements.txt").read_text()), (
        "requirements.txt is stale: run `uv export --frozen --no-dev --no-emit-project "
        "-o requirements.txt`")
