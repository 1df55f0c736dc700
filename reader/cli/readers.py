"""`sukumo-reader readers`: which readers this terminal can see and which one it uses.

Like `pcsc_scan`, in plain words: every PC/SC reader pcscd knows (contactless or not,
card on it or not), the nfcpy device on the configured path, and an arrow at the reader
the settings pick. Nothing is opened for longer than a look.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from reader.cli import EXIT_ENVIRONMENT, EXIT_OK
from reader.config import ReaderSettings, load_settings
from reader.errors import TransportUnavailableError
from reader.system.i18n import N_, _
from reader.transports import TransportInfo, transport_class

SURVEYED = ("pcsc", "nfcpy")  # the hardware backends; `virtual` is listed only when chosen
TITLES = {"pcsc": N_("PC/SC (pcscd: RC-S300 and other CCID readers)"),
          "nfcpy": N_("nfcpy (RC-S380 over USB, or a udp: test device)"),
          "virtual": N_("virtual reader (no hardware)")}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "readers", help=_("list the card readers this terminal sees and the one it uses"),
        description=_("Lists PC/SC readers (through pcscd) and the nfcpy device on the "
                    "configured path, and marks the reader the settings ([reader] transport, "
                    "pcsc_reader, nfc_path) pick. Exit 0 when that reader is there, 3 when "
                    "it is not."))
    p.add_argument("--json", action="store_true",
                   help=_('print {"transport": str, "found": bool, "backends": [...]}'))
    p.set_defaults(func=run)


def survey(settings: ReaderSettings) -> list[TransportInfo]:
    """What each backend sees; a backend whose library is missing says so."""
    names = [*SURVEYED] + ([settings.transport] if settings.transport not in SURVEYED else [])
    infos = []
    for name in names:
        try:
            infos.append(transport_class(name)(settings).describe())
        except TransportUnavailableError as exc:
            infos.append(TransportInfo(name, False, note=str(exc)))
    return infos


def configured_reader_found(settings: ReaderSettings, infos: list[TransportInfo]) -> bool:
    return any(info.backend == settings.transport and any(r.selected for r in info.readers)
               for info in infos)


def render(settings: ReaderSettings, infos: list[TransportInfo]) -> str:
    lines = [_("configured: transport = {transport}, {choice}").format(
        transport=settings.transport, choice=_choice(settings)), ""]
    for info in infos:
        used = info.backend == settings.transport
        title = _(TITLES[info.backend]) if info.backend in TITLES else info.backend
        lines.append(title + (_("  — the configured transport") if used else ""))
        if not info.available:
            lines.append(_("    not available: {why}").format(why=info.note))
        for reader in info.readers:
            card = {True: _("card on it"), False: _("no card"), None: ""}[reader.card_present]
            details = ", ".join(x for x in (reader.note, card) if x)
            mark = "→" if reader.selected and used else " "
            picked = _("   ← the terminal uses this one") if reader.selected and used else ""
            lines.append(f"  {mark} {reader.name}{f'  ({details})' if details else ''}{picked}")
        if info.available and not info.readers:
            lines.append(_("    no reader: {why}").format(why=info.note) if info.note
                         else _("    no reader"))
        elif info.available and info.note:
            lines.append(_("    note: {what}").format(what=info.note))
        lines.append("")
    found = configured_reader_found(settings, infos)
    lines.append(_("the configured reader is ready") if found else
                 _("the configured reader was NOT found: plug it in, or fix [reader] in the "
                   "settings"))
    return "\n".join(lines)


def _choice(settings: ReaderSettings) -> str:
    if settings.transport == "pcsc":
        return (f'pcsc_reader = "{settings.pcsc_reader}"' if settings.pcsc_reader
                else _("pcsc_reader not set (the first contactless reader)"))
    if settings.transport == "nfcpy":
        return f'nfc_path = "{settings.nfc_path}"'
    return "virtual_feed = " + (str(settings.virtual_feed) if settings.virtual_feed
                                else _("none (in-process)"))


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config).reader
    infos = survey(settings)
    found = configured_reader_found(settings, infos)
    if args.json:
        print(json.dumps({"transport": settings.transport, "found": found,
                          "backends": [asdict(i) for i in infos]}, indent=2, ensure_ascii=False))
    else:
        print(render(settings, infos))
    return EXIT_OK if found else EXIT_ENVIRONMENT
