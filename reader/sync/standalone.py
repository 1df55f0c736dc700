"""The status of the sync running alone (`sukumo-reader sync`, no reader): what it knows."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from reader import __version__
from reader.config import Settings
from reader.wire.status import QueueSummary, SyncStatus, TerminalStatus

if TYPE_CHECKING:
    from reader.bundles.store import TrustStore


def standalone_status(settings: Settings, queue: QueueSummary, sync: SyncStatus,
                      trust: TrustStore) -> TerminalStatus:
    now_ms = int(time.time() * 1000)
    return TerminalStatus(
        tid=settings.terminal.id, mode=settings.terminal.mode,
        facility=settings.terminal.facility, reader="none", audio="none", queue=queue,
        sync=sync, app_version=__version__, bundle_versions=trust.versions,
        rejected_bundles=trust.refused, pid=os.getpid(), started_at_ms=now_ms,
        updated_at_ms=now_ms)
