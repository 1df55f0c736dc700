"""requirements.txt is uv.lock exported, every pin with its hashes: what pip installs in
the Debian package's venv (debian/rules) and in scripts/install.sh, hash-checked."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# The city's package (packaging/sukumo-city): the `city` extra, without the terminal's
# hardware libraries (city/ never imports them; pruned, every pin left is a wheel).
CITY_EXPORT = ["--extra", "city", "--prune", "pyscard", "--prune", "nfcpy",
               "--prune", "simpleaudio", "--prune", "gpiozero"]


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv") or str(REPO / ".tools" / "bin" / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not available to export uv.lock")
    return uv


def _body(text: str) -> list[str]:  # the header names the command line; skip it
    return [line for line in text.splitlines() if not line.startswith("#    uv export")]


def test_requirements_txt_is_uv_lock_exported() -> None:
    exported = subprocess.run(
        [_uv(), "export", "--frozen", "--no-dev", "--no-emit-project"],
        cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert _body(exported) == _body((REPO / "requirements.txt").read_text()), (
        "requirements.txt is stale: run `uv export --frozen --no-dev --no-emit-project "
        "-o requirements.txt`")


def test_city_requirements_are_uv_lock_exported_with_the_city_extra() -> None:
    target = "packaging/sukumo-city/requirements.txt"
    command = ["export", "--frozen", "--no-dev", "--no-emit-project", *CITY_EXPORT]
    exported = subprocess.run([_uv(), *command], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout
    assert _body(exported) == _body((REPO / target).read_text()), (
        f"{target} is stale: run `uv {' '.join(command)} -o {target}`")
    pins = {line.split("==")[0] for line in exported.splitlines() if "==" in line}
    assert {"psycopg", "psycopg-pool", "prometheus-client", "python-pkcs11"} <= pins
    assert not pins & {"pyscard", "nfcpy", "simpleaudio", "gpiozero", "pydes"}
