"""Bundle versions (mqtt-v1 §5): each new bundle of a kind has a greater one, within bounds.

Versions travel as CBOR unsigned integers and come back to the city as JSON numbers
(status `versions`): above 2^53 a JSON reader loses precision, and a bundle with version
2^64 - 1 would block every later one forever. A version may not jump more than
`verify.max_version_step` past the one held either (issue 22: one signed bundle with
version 2^53 refused every later one as a rollback, for good). A terminal stuck that way
(before this bound) is freed by the root: a trust bundle's `floors` ({kind: version}, for
denylist and config) lowers the version held of that kind when the bundle held was issued
before the trust bundle (its `issued`, in seconds), so the city's next one applies; a
bundle issued since keeps its own version, across restarts too. The trust bundle's own
version only grows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from reader.errors import BundleError
from reader.system.i18n import _
from reader.system.logs import fields

if TYPE_CHECKING:
    from reader.bundles.snapshot import Snapshot

log = logging.getLogger("reader.bundles.store")

MAX_VERSION = 2**53
DEFAULT_MAX_STEP = 2**32  # room for versions numbered by Unix time in seconds
FLOORED_KINDS = ("denylist", "config")


def check_version(version: Any, held: int, max_step: int | None) -> int:
    """The bundle's version if it may replace `held`; BundleError why not. `max_step`
    None: a bundle read back from disk (judged when it arrived)."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BundleError("malformed", _("its version is not an unsigned integer"))
    if version > MAX_VERSION:
        raise BundleError("malformed", _(
            "version {version} is above 2^53 (the largest a JSON status can carry "
            "exactly)").format(version=version))
    if max_step is not None and version - held > max_step:
        raise BundleError("version_jump", _(
            "version {version} jumps more than {step} past the version {held} this "
            "terminal holds (a mistake that would refuse every later bundle; see "
            "verify.max_version_step)").format(version=version, step=max_step, held=held))
    if version <= held:
        raise BundleError("rollback", _(
            "version {version} is not newer than the version {held} this terminal holds "
            "(an old or replayed bundle)").format(version=version, held=held))
    return version


def floors(value: Any) -> dict[str, int]:
    """A trust bundle's `floors`, checked (ValueError: the bundle is malformed)."""
    if not (isinstance(value, Mapping) and all(
            k in FLOORED_KINDS and isinstance(v, int) and not isinstance(v, bool)
            and 0 <= v <= MAX_VERSION for k, v in value.items())):
        raise ValueError(_("floors must map denylist or config to a version"))
    return dict(value)


def floored(snap: Snapshot) -> Snapshot:
    """The versions held, lowered to the trust bundle's floors for bundles issued before
    it."""
    trust_issued = snap.issued.get("trust", 0)
    lowered = {kind: floor for kind, floor in snap.floors.items()
               if snap.versions[kind] > floor and snap.issued.get(kind, 0) < trust_issued}
    if not lowered:
        return snap
    log.warning("bundle versions lowered by the trust bundle's floors", **fields(
        **{kind: f"{snap.versions[kind]} -> {v}" for kind, v in lowered.items()}))
    return replace(snap, versions={**snap.versions, **lowered})
