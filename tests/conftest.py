"""Shared fixtures: the spec's vectors, a TrustStore holding the vectors' bundles, and
hypothesis profiles."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from spec_vectors import load_vectors, vector_trust

from reader.bundles.store import TrustStore

# CI runs a quick profile; `HYPOTHESIS_PROFILE=nightly` runs >= 10,000 cases per property.
settings.register_profile("ci", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=10_000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return load_vectors()


@pytest.fixture
def trust(vectors: dict[str, Any]) -> TrustStore:
    return vector_trust(vectors)


@pytest.fixture(autouse=True)
def _root_logging_as_it_was() -> Iterator[None]:
    """Commands run in-process (`main([...])`) set up the root logger for their own
    stream; a later test must not inherit a handler whose stream pytest has closed."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
