"""mqtt-v1 §6 (and §7's csr/cert topics) as mosquitto's acl_file: the exact ACL that
DevBroker serves and docs/city-integration.md documents."""

from __future__ import annotations

RECEIVER_CN = "city-receiver"


def acl_text(prefix: str, muni: str, receiver_cn: str = RECEIVER_CN,
             towns: dict[str, tuple[str, ...]] | None = None) -> str:
    """mqtt-v1 §6 as a mosquitto acl_file: a terminal (username = CN = tid) may publish only
    its own events, status and certificate requests and read only its own acks, config and
    certificate answers (§7) and its municipality's trust and denylist; the city receiver
    reads events, status and requests and writes acks, bundles and certificates.

    One town: `pattern` lines, so a terminal added later needs no broker reload. Several
    towns on one broker (`towns`: muni -> its terminals): a pattern cannot tie a username
    to ITS town (mosquitto substitutes only %u and %c), so each terminal gets its own
    `user` block naming its town; adding a terminal is a line in this file and a SIGHUP.

    A terminal may read every town's denylist: one that accepts a neighbouring town's
    cards (横展開, [verify] accept_munis) follows that town's list, and which towns it
    accepts is the city's config bundle, which the broker cannot see. A denylist names
    revoked cards only and every bundle is verified by the terminal; a deployment that
    wants it tighter writes a line per terminal and neighbour.

    With an acl_file mosquitto never refuses a SUBSCRIBE; it filters what it delivers and
    refuses (PUBACK 0x87 under MQTT 5) a PUBLISH that no line allows.
    """
    p, m = prefix, muni
    if towns:
        terminals = [
            "# mqtt-v1 §6, one block per terminal: its town is in its topics.",
            *(line for town, tids in sorted(towns.items()) for tid in tids for line in (
                f"user {tid}",
                f"topic write {p}/{town}/{tid}/events",
                f"topic write {p}/{town}/{tid}/status",
                f"topic read {p}/{town}/{tid}/acks",
                f"topic read {p}/{town}/{tid}/config",
                f"topic write {p}/{town}/{tid}/csr",
                f"topic read {p}/{town}/{tid}/cert",
                f"topic read {p}/{town}/trust",
                f"topic read {p}/+/denylist",  # any town's: see the docstring
                ""))]
    else:
        terminals = [
            "# mqtt-v1 §6. %u is the username = the client certificate CN = the terminal id.",
            f"pattern write {p}/{m}/%u/events",
            f"pattern write {p}/{m}/%u/status",
            f"pattern read {p}/{m}/%u/acks",
            f"pattern read {p}/{m}/%u/config",
            f"pattern write {p}/{m}/%u/csr",
            f"pattern read {p}/{m}/%u/cert",
            # Municipality-wide: a pattern is the only ACL line that applies to every user
            # (`topic` lines above any `user` line apply to anonymous clients only).
            # mosquitto logs "does not contain %c or %u" for these two lines: expected.
            f"pattern read {p}/{m}/trust",
            f"pattern read {p}/+/denylist",  # any town's: see the docstring
            ""]
    return "\n".join([
        *terminals,
        f"user {receiver_cn}",
        f"topic read {p}/+/+/events",
        f"topic read {p}/+/+/status",
        f"topic write {p}/+/+/acks",
        f"topic write {p}/+/+/config",
        f"topic read {p}/+/+/csr",
        f"topic write {p}/+/+/cert",
        f"topic write {p}/+/trust",
        f"topic write {p}/+/denylist",
        "",
    ])
