"""Device-id churn: a million distinct devices, one MQTT message each, through
the real hub, and what its memory does.

Every table the hub keys by device id, topic or client has a bound
(docs/architecture.md, "Memory: what grows with what"). This drives them all
at once: a publisher process sends `--devices` messages over MQTT (QoS 1),
each from a device id never seen before, while the hub's anonymous RSS is
sampled. With `presence.offline_after` short, devices go offline soon after
their message and presence lets go of them; the caches fill to their bounds
and stay there. The last row is taken once every message is stored and every
device has gone offline.

    python -m bench.churn [--devices 1000000] [--offline-after 10s]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from typing import Any

import paho.mqtt.client as paho

from bench.harness import broker, hub, machine
from bench.soak import MiB, rss, scrape


def publish_distinct(port: int, count: int) -> None:
    """`count` messages, each from its own device id, at QoS 1."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="churn")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    last = None
    for n in range(count):
        last = client.publish(f"devices/churn-{n:07d}/telemetry", b'{"temperature": 21.5}', qos=1)
        if n % 1000 == 999:
            last.wait_for_publish(60)
    if last is not None:
        last.wait_for_publish(60)
    client.loop_stop()
    client.disconnect()


def run(devices: int, offline_after: str) -> dict[str, Any]:
    rows: list[dict[str, float]] = []
    with (
        broker() as mosquitto,
        hub(mosquitto.url, presence__offline_after=offline_after) as running,
    ):
        pid = running.process.pid
        time.sleep(2)
        start_anon, _ = rss(pid)
        publisher = multiprocessing.Process(target=publish_distinct, args=(mosquitto.port, devices))
        started = time.monotonic()
        publisher.start()
        print(f"{'t s':>6} {'stored':>10} {'online':>8} {'anon MiB':>9}")
        settled = 0.0
        while True:
            time.sleep(2)
            metrics = scrape(running.url)
            anon, _ = rss(pid)
            row = {
                "t": time.monotonic() - started,
                "stored": metrics.get("hub_readings_stored_total", 0.0),
                "online": metrics.get("hub_devices_online", 0.0),
                "anon": anon,
            }
            rows.append(row)
            print(
                f"{row['t']:6.0f} {row['stored']:10,.0f} {row['online']:8,.0f} {anon / MiB:9.1f}",
                flush=True,
            )
            if row["stored"] >= devices and row["online"] == 0:
                settled = settled or row["t"]
                if row["t"] - settled >= 10:  # a few samples at rest
                    break
            if row["t"] > 1800:
                raise RuntimeError("the churn did not settle within 30 minutes")
        publisher.join(60)
    peak = max(r["anon"] for r in rows)
    return {
        "machine": machine(),
        "devices": devices,
        "rss_anon_start": start_anon,
        "rss_anon_peak": peak,
        "rss_anon_end": rows[-1]["anon"],
        "seconds": rows[-1]["t"],
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--offline-after", default="10s")
    args = parser.parse_args()
    result = run(args.devices, args.offline_after)
    before, peak, end = (
        result[key] / MiB for key in ("rss_anon_start", "rss_anon_peak", "rss_anon_end")
    )
    print(
        f"{result['devices']:,} distinct devices: anonymous RSS {before:.1f} MiB before, "
        f"peak {peak:.1f} MiB, {end:.1f} MiB once all were offline ({machine()})"
    )


if __name__ == "__main__":
    main()
