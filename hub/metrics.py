"""Counters and gauges, rendered in the Prometheus text format at /metrics.

Deliberately tiny: components bump plain dict entries on their hot paths and
the rendering walks them once per scrape.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

LabelSet = tuple[tuple[str, str], ...]

_HELP = {
    "hub_messages_received_total": ("counter", "Device messages received, by source"),
    "hub_readings_stored_total": ("counter", "Readings committed to the store, by source"),
    "hub_readings_duplicate_total": ("counter", "Readings dropped as repeats of a device seq"),
    "hub_rejections_total": ("counter", "Payloads or values rejected, by source and reason"),
    "hub_commits_total": ("counter", "Store transactions committed"),
    "hub_commit_seconds_total": ("counter", "Time spent committing"),
    "hub_commit_failures_total": ("counter", "Store transactions that failed (and were retried)"),
    "hub_commands_total": ("counter", "Admin commands, by outcome"),
    "hub_command_replies_unmatched_total": ("counter", "MQTT replies matching no pending command"),
    "hub_dashboards_lagging_total": ("counter", "Dashboards taken out of their room for lagging"),
    "hub_busy_total": ("counter", "Submissions refused because the store queue was full"),
    "hub_ack_timeouts_total": ("counter", "Submissions not committed within the ack timeout"),
    "hub_readings_purged_total": ("counter", "Readings deleted by retention"),
    "hub_replays_total": ("counter", "Replays ended, by outcome"),
    "hub_replay_readings_total": ("counter", "Readings sent by replays"),
    "hub_replay_gaps_total": ("counter", "gap events sent, by reason"),
    "hub_broadcast_frames_total": ("counter", "readings frames emitted to dashboard rooms"),
    "hub_broadcast_readings_total": ("counter", "Readings put into broadcast frames"),
}


class Metrics:
    def __init__(self, node: str = "") -> None:
        self.node = node  # a cluster's hub names itself in hub_node_info
        self.counters: defaultdict[tuple[str, LabelSet], float] = defaultdict(float)
        # name -> (Prometheus type, reader): values another component keeps
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += amount

    def gauge(self, name: str, read: Callable[[], float]) -> None:
        """Register a gauge read at scrape time."""
        self._gauges[name] = ("gauge", read)

    def counted(self, name: str, read: Callable[[], float]) -> None:
        """Register a counter that another component keeps, read at scrape time."""
        self._gauges[name] = ("counter", read)

    def value(self, name: str, **labels: str) -> float:
        """A counter's value, or a registered gauge's as it reads now."""
        registered = self._gauges.get(name)
        if registered is not None and not labels:
            return registered[1]()
        return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        by_name: defaultdict[str, list[tuple[LabelSet, float]]] = defaultdict(list)
        for (name, labels), amount in sorted(self.counters.items()):
            by_name[name].append((labels, amount))
        for name, samples in by_name.items():
            kind, text = _HELP.get(name, ("counter", name))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            lines += [f"{name}{_labels(labels)} {_number(amount)}" for labels, amount in samples]
        for name, (kind, read) in sorted(self._gauges.items()):
            lines += [f"# TYPE {name} {kind}", f"{name} {_number(read())}"]
        if self.node:
            lines += [
                "# TYPE hub_node_info gauge",
                f"hub_node_info{_labels((('node', self.node),))} 1",
            ]
        return "\n".join(lines) + "\n"


def _labels(labels: LabelSet) -> str:
    if not labels:
        return ""
    escaped = (
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels
    )
    return "{" + ",".join(escaped) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
