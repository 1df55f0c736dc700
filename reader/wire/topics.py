"""The mqtt-v1 §1 topic table for one terminal, and the reverse map topic → bundle kind."""

from __future__ import annotations

from dataclasses import dataclass

# The signed bundle kinds of mqtt-v1 §5, each on its own topic: the one list of them.
BUNDLE_KINDS = ("trust", "denylist", "config")


@dataclass(frozen=True)
class Topics:
    prefix: str
    muni: str
    tid: str

    @property
    def events(self) -> str:
        return f"{self.prefix}/{self.muni}/{self.tid}/events"

    @property
    def acks(self) -> str:
        return f"{self.prefix}/{self.muni}/{self.tid}/acks"

    @property
    def status(self) -> str:
        return f"{self.prefix}/{self.muni}/{self.tid}/status"

    @property
    def config(self) -> str:
        return f"{self.prefix}/{self.muni}/{self.tid}/config"

    @property
    def csr(self) -> str:
        """§7: the terminal's certificate request."""
        return f"{self.prefix}/{self.muni}/{self.tid}/csr"

    @property
    def cert(self) -> str:
        """§7: the city's answer to it."""
        return f"{self.prefix}/{self.muni}/{self.tid}/cert"

    @property
    def trust(self) -> str:
        return f"{self.prefix}/{self.muni}/trust"

    @property
    def denylist(self) -> str:
        return f"{self.prefix}/{self.muni}/denylist"

    def town_denylist(self, muni: str) -> str:
        """Another town's denylist (a neighbour whose residents this terminal accepts)."""
        return f"{self.prefix}/{muni}/denylist"

    def denylist_town(self, topic: str) -> str | None:
        """The town of a denylist topic other than ours, None for any other topic."""
        head, _, leaf = topic.rpartition("/")
        prefix, _, muni = head.rpartition("/")
        if leaf != "denylist" or prefix != self.prefix or muni == self.muni or not muni:
            return None
        return muni

    def bundle(self, kind: str) -> str:
        """The topic a bundle of `kind` arrives on (config is per terminal, §1)."""
        if kind not in BUNDLE_KINDS:
            raise ValueError(f"unknown bundle kind {kind!r}")
        return getattr(self, kind)

    def subscriptions(self) -> list[str]:
        """What a terminal subscribes to (§1), trust first: the other two are verified with
        keys the trust bundle carries, and mosquitto sends retained messages in this order.
        `cert` (§7) carries the answers to our certificate requests."""
        return [self.trust, self.denylist, self.config, self.acks, self.cert]

    def bundle_kind(self, topic: str) -> str | None:
        """The kind a bundle topic implies, None for any other topic."""
        for kind in BUNDLE_KINDS:
            if topic == self.bundle(kind):
                return kind
        return None


def events_filter(prefix: str, group: str | None = None) -> str:
    """The city side's subscription to every terminal's events, shared when `group` is set."""
    plain = f"{prefix}/+/+/events"
    return f"$share/{group}/{plain}" if group else plain


def split_terminal_topic(topic: str, prefix: str) -> tuple[str, str, str] | None:
    """`prefix/muni/tid/leaf` → (muni, tid, leaf); None when the topic is not of that form."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head):].split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]
