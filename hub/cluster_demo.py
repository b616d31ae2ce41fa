"""`make cluster`: three hubs on one PostgreSQL database (created if
missing), one Mosquitto whose telemetry they split by a shared subscription,
HAProxy in front of them (sticky by cookie, as long-polling needs),
simulated devices, and the dashboard's address. Ctrl-C stops everything,
devices first, then HAProxy, the hubs (which drain) and the broker.

    python -m hub.cluster_demo [--hubs 3] [--devices 6] [--rate 1] [--database URL]

The database is `--database`, else `HUB_STORAGE__URL`, else
`postgresql://postgres@127.0.0.1:5432/telemetry_hub`. HAProxy's
configuration is `deploy/haproxy.cfg` with this run's ports.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from hub.demo import (
    answers,
    free_port,
    run_until_interrupted,
    simulator,
    start_mosquitto,
    stop_all,
    wait_ready,
)

DATABASE = "postgresql://postgres@127.0.0.1:5432/telemetry_hub"
HAPROXY_CONFIG = Path(__file__).resolve().parent.parent / "deploy" / "haproxy.cfg"
GROUP = "hubs"  # mqtt.shared_group


def haproxy_config(front: int, hubs: list[int]) -> str:
    """deploy/haproxy.cfg, listening on `front`, with a server per hub port."""
    text = HAPROXY_CONFIG.read_text()
    text = re.sub(r"bind 127\.0\.0\.1:\d+", f"bind 127.0.0.1:{front}", text)
    text = re.sub(r"\n    server .*", "", text).rstrip("\n")
    servers = [f"    server hub-{p} 127.0.0.1:{p} cookie hub-{p}" for p in hubs]
    return text + "\n" + "\n".join(servers) + "\n"


def haproxy_binary() -> str | None:
    return shutil.which("haproxy") or next(
        (p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hub.cluster_demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hubs", type=int, default=3)
    parser.add_argument("--devices", type=int, default=6)
    parser.add_argument("--rate", type=float, default=1.0, help="messages/s per device")
    parser.add_argument("--database", metavar="URL")
    args = parser.parse_args(argv)
    database = args.database or os.environ.get("HUB_STORAGE__URL") or DATABASE
    server = urlsplit(database)
    if not answers(server.hostname or "127.0.0.1", server.port or 5432):
        print(
            f"PostgreSQL does not answer at {server.hostname}:{server.port or 5432}: install "
            "and start it (Debian: sudo apt install postgresql), or pass --database URL",
            file=sys.stderr,
        )
        return 2
    haproxy = haproxy_binary()
    if haproxy is None:
        print("HAProxy is not installed (Debian: sudo apt install haproxy)", file=sys.stderr)
        return 2

    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    scratch = Path(tempfile.mkdtemp(prefix="telemetry-hub-cluster-"))
    try:
        process, broker_port = start_mosquitto(scratch)
        children.append(("mosquitto", process))
        broker = f"mqtt://127.0.0.1:{broker_port}"
        ports = [free_port() for _ in range(args.hubs)]
        for port in ports:
            environment = {
                **os.environ,
                "HUB_STORAGE__URL": database,
                "HUB_MQTT__URL": broker,
                "HUB_MQTT__SHARED_GROUP": GROUP,
                "HUB_MQTT__CLIENT_ID": f"cluster-hub-{port}",
                "HUB_CLUSTER__NODE_ID": f"hub-{port}",
                "HUB_SERVER__PORT": str(port),
                "HUB_SERVER__HOST": "127.0.0.1",
            }
            hub = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "serve"], env=environment, process_group=0
            )
            children.append((f"hub-{port}", hub))
        for (_, hub), port in zip(children[1:], ports, strict=True):
            wait_ready(f"http://127.0.0.1:{port}", hub, seconds=60)
        front = 8080 if not answers("127.0.0.1", 8080) else free_port()
        config = scratch / "haproxy.cfg"
        config.write_text(haproxy_config(front, ports))
        balancer = subprocess.Popen([haproxy, "-f", str(config), "-db"], process_group=0)
        children.append(("haproxy", balancer))
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", front):
            if time.monotonic() > deadline or balancer.poll() is not None:
                raise SystemExit(f"haproxy did not start with {config}")
            time.sleep(0.05)
        front_url = f"http://127.0.0.1:{front}"
        sim = simulator(args.devices, args.rate, "mqtt", broker, front_url, dict(os.environ))
        children.append(("devices", sim))
        print(
            f"\n  Dashboard: {front_url}/\n\n  {args.hubs} hubs "
            f"({', '.join(f'127.0.0.1:{p}' for p in ports)}) on {database},\n"
            f"  behind HAProxy; {args.devices} simulated devices send over MQTT "
            f"(broker {broker}, shared group {GROUP!r}). Ctrl-C stops everything.\n",
            flush=True,
        )
        return run_until_interrupted(children)
    except KeyboardInterrupt:
        print("\nstopping: devices, HAProxy, the hubs (draining), then the broker")
        return 0
    finally:
        stop_all(children)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
