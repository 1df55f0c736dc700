"""AP profiles: which card application a mode SELECTs and whether the card must sign.

Sources, first match wins: `[ap]` in reader.toml (one profile for every mode, e.g. a
neighbouring town's AID on a one-purpose terminal), then `[profiles.<mode>]` of the file
`[paths] ap_profiles` (firmware_config/ap-profiles.toml), then the spec's defaults
(card-ap-v1 §1: nursery reads the nursery AP, every other mode the member AP, both with
INTERNAL AUTHENTICATE). A profile with `authenticate = false` is allowed (security level
chosen per scene); its events carry `proof: null`. A mode missing from the file uses the
default. The `ap` the record must carry follows the mode unless the profile names it.
The file's entries are validated by the same model as `[ap]` (settings.ApProfile).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_core import ErrorDetails

from reader.card.profiles import MEMBER_AID, NURSERY_AID, Profile
from reader.config.explain import problem
from reader.config.settings import AID_PATTERN, ApProfile, Section, Settings
from reader.errors import ConfigError
from reader.system import plain
from reader.system.i18n import _
from reader.wire.event import Mode

_DEFAULT_AP = {Mode.NURSERY: "nursery"}  # every other mode: "member"
_DEFAULT_AID = {"member": MEMBER_AID, "nursery": NURSERY_AID}


class ProfileEntry(ApProfile):
    # In the file an entry may leave `aid` out: the default AID of its `ap`.
    aid: str | None = Field(None, pattern=AID_PATTERN)  # type: ignore[assignment]
    # TOML has real booleans: "no" is a mistake here, not false.
    authenticate: bool = Field(True, strict=True)


class ProfilesFile(Section):
    profiles: dict[Mode, ProfileEntry] = Field(default_factory=dict)


def profile_for(settings: Settings) -> Profile:
    """The AP profile of `settings.terminal.mode`; ConfigError names the file and key."""
    mode = settings.terminal.mode
    default_ap = _DEFAULT_AP.get(mode, "member")
    if settings.ap is not None:
        ap = settings.ap.ap or default_ap
        return Profile(bytes.fromhex(settings.ap.aid), ap, settings.ap.authenticate,
                       tuple(bytes.fromhex(a) for a in settings.ap.more_aids))
    entry = ProfileEntry()
    if settings.paths.ap_profiles is not None:
        entry = read_profiles(settings.paths.ap_profiles).profiles.get(mode, entry)
    ap = entry.ap or default_ap
    return Profile(bytes.fromhex(entry.aid or _DEFAULT_AID[ap]), ap, entry.authenticate,
                   tuple(bytes.fromhex(a) for a in entry.more_aids))


def read_profiles(path: Path) -> ProfilesFile:
    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(_("cannot read AP profiles file {path} (paths.ap_profiles): "
                            "{reason}").format(path=path, reason=plain.os_words(exc))) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_("AP profiles file {path} is not valid TOML: {error}").format(
            path=path, error=plain.toml_words(exc))) from None
    try:
        return ProfilesFile.model_validate(data)
    except ValidationError as exc:
        lines = [_("AP profiles file {path}:").format(path=path),
                 *(_describe(err) for err in exc.errors())]
        raise ConfigError("\n  ".join(lines)) from None


def _describe(err: ErrorDetails) -> str:
    loc = [str(p) for p in err["loc"] if p != "[key]"]
    if err["loc"][0] != "profiles":
        return _("{key}: expected only [profiles.<mode>] tables").format(key=".".join(loc))
    if err["loc"][-1] == "[key]":
        return _("unknown mode(s) {modes}; allowed: {allowed}").format(
            modes=[loc[-1]], allowed=", ".join(Mode))
    if err["type"] == "extra_forbidden":
        return _("{table}: unknown key(s) {keys}; allowed: {allowed}").format(
            table=".".join(loc[:-1]), keys=[loc[-1]], allowed=sorted(ProfileEntry.model_fields))
    given = err.get("input")
    shown = "" if isinstance(given, dict | list) else f" = {given!r}"
    return f"{'.'.join(loc)}{shown}: {problem(err)}"
