"""Reader backends, in one table, imported lazily.

A missing vendor library (pyscard, nfcpy) makes only its own backend unavailable, with
a clear error; `virtual` is a real backend that needs nothing and runs the whole daemon
on any laptop, in the demo and in the tests.
"""

from __future__ import annotations

import importlib

from reader.config import ReaderSettings
from reader.errors import TransportUnavailableError
from reader.system.i18n import _
from reader.transports.base import CardLink, ReaderInfo, TapSource, Transport, TransportInfo

BACKENDS: dict[str, tuple[str, str]] = {
    "virtual": ("reader.transports.virtual", "VirtualTransport"),
    "pcsc": ("reader.transports.pcsc", "PcscTransport"),
    "nfcpy": ("reader.transports.nfc", "NfcpyTransport"),
}


def transport_class(name: str) -> type[Transport]:
    try:
        module_name, class_name = BACKENDS[name]
    except KeyError:
        raise TransportUnavailableError(_("unknown transport {name!r}; known: {known}").format(
            name=name, known=", ".join(BACKENDS))) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TransportUnavailableError(_(
            "transport {name!r} is not available here: {why} (install the package that "
            "provides {module!r})").format(name=name, why=exc, module=exc.name)) from exc
    return getattr(module, class_name)


def create_transport(settings: ReaderSettings, name: str | None = None) -> Transport:
    """Build the configured backend (or `name`), not yet opened."""
    return transport_class(name or settings.transport)(settings)


__all__ = [
    "BACKENDS",
    "CardLink",
    "ReaderInfo",
    "TapSource",
    "Transport",
    "TransportInfo",
    "create_transport",
    "transport_class",
]
