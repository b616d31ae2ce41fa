"""`telemetry-sim` against a real Mosquitto: what arrives, what it reports, how it stops."""

from __future__ import annotations

import asyncio
import io
import re
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiomqtt
import orjson
import pytest

from devices.progress import Progress, Tally
from devices.sim import main
from tests.brokers import Mosquitto, free_port
from tests.hubs import wait_until

PROJECT = Path(__file__).resolve().parents[1]


def summary(stdout: str) -> dict[str, float]:
    line = stdout.strip().splitlines()[-1]
    assert line.startswith("sent="), line
    fields = dict(re.findall(r"(\w+)=([\d.]+)", line))
    # The first six are the original line, which scripts parse; new keys go at the end.
    assert list(fields) == [
        "sent",
        "acknowledged",
        "errors",
        "duration",
        "rate",
        "readings",
        "buffered",
        "dropped",
        "commands",
    ]
    assert " msg/s " in line
    return {key: float(value) for key, value in fields.items()}


class Listener:
    """Everything a dashboard-like subscriber sees under one topic prefix."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.seqs: dict[str, list[int]] = defaultdict(list)
        self.statuses: dict[str, list[bytes]] = defaultdict(list)
        self.values: list[dict[str, object]] = []

    @property
    def telemetry(self) -> int:
        return sum(len(seqs) for seqs in self.seqs.values())

    async def listen(self) -> None:
        async for message in self.client.messages:
            _, device_id, kind = str(message.topic).split("/")
            assert isinstance(message.payload, bytes)
            if kind == "status":
                self.statuses[device_id].append(message.payload)
            else:
                envelope = orjson.loads(message.payload)
                self.seqs[device_id].append(envelope["seq"])
                self.values.append(envelope["values"])

    async def until(self, telemetry: int, statuses: int = 0) -> None:
        """Wait for `telemetry` readings and `statuses` status messages in all.
        Each device publishes on its own connection: the broker keeps each
        one's order, not an order across them, so a device's last status may
        come after another device's last reading."""
        await wait_until(
            lambda: (
                self.telemetry >= telemetry and sum(map(len, self.statuses.values())) >= statuses
            ),
            within=5,
            what=f"{telemetry} readings and {statuses} statuses",
        )


@asynccontextmanager
async def listening(broker: Mosquitto, prefix: str) -> AsyncIterator[Listener]:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(f"{prefix}/+/telemetry", qos=1)
        await client.subscribe(f"{prefix}/+/status", qos=1)
        listener = Listener(client)
        task = asyncio.create_task(listener.listen())
        try:
            yield listener
        finally:
            task.cancel()
            await asyncio.wait([task])


def sim_argv(broker: Mosquitto, *extra: str) -> list[str]:
    return ["--broker", broker.url, "--quiet", "--seed", "1", *extra]


async def test_every_message_sent_arrives(
    mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = sim_argv(
        mosquitto, "--devices", "3", "--rate", "20", "--duration", "2", "--prefix", "fleet"
    )
    async with listening(mosquitto, "fleet") as listener:
        status = await asyncio.to_thread(main, argv)
        out = capsys.readouterr().out
        result = summary(out)
        # the simulator has exited: what it sent is all there is
        await listener.until(int(result["sent"]), statuses=3 * 2)
    assert status == 0
    assert result["sent"] == result["acknowledged"] == listener.telemetry == 3 * 20 * 2
    assert result["errors"] == 0
    assert result["readings"] == result["acknowledged"] * 3
    assert result["duration"] == pytest.approx(2.0, abs=0.3)
    assert result["rate"] == pytest.approx(60, rel=0.15)
    assert sorted(listener.seqs) == ["sim-000", "sim-001", "sim-002"]
    for seqs in listener.seqs.values():
        assert seqs == list(range(seqs[0], seqs[0] + 40))
    first = listener.values[0]
    assert set(first) == {"temperature", "humidity", "pressure"}
    assert first["pressure"] == {"value": pytest.approx(1013, abs=40), "unit": "hPa"}
    for device_id, statuses in listener.statuses.items():
        assert statuses == [b"online", b"offline"], device_id


async def test_ids_metrics_and_prefix_follow_the_options(
    mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = sim_argv(mosquitto, "--devices", "2", "--rate", "10", "--duration", "0.5")
    argv += ["--id-prefix", "greenhouse", "--metrics", "co2,voltage,rpm", "--prefix", "site"]
    async with listening(mosquitto, "site") as listener:
        assert await asyncio.to_thread(main, argv) == 0
        result = summary(capsys.readouterr().out)
        await listener.until(int(result["sent"]))
    assert sorted(listener.seqs) == ["greenhouse-000", "greenhouse-001"]
    assert result["readings"] == result["sent"] * 3
    assert {key for values in listener.values for key in values} == {"co2", "voltage", "rpm"}
    assert all(isinstance(values["rpm"], float) for values in listener.values)


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "0"],
        ["--rate", "fast"],
        ["--devices", "0"],
        ["--duration", "-1"],
        ["--protocol", "carrier-pigeon"],
        ["--metrics", "temperature,,humidity"],
        ["--broker", "http://127.0.0.1:1883"],
        ["--hub", "hub:8080", "--protocol", "http"],
        ["--id-prefix", "has space"],
        ["--transports", "carrier-pigeon"],
        ["--no-such-option"],
        ["--buffer", "-1"],
        ["--buffer-policy", "drop_random"],
        ["--flush-rate", "0"],
        ["--offline-every", "1"],
        ["--offline-for", "1"],
        ["--offline-every", "1", "--offline-for", "1"],
        ["--offline-every", "0", "--offline-for", "0.5"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "error" in captured.err
    assert captured.out == ""


def test_help_explains_the_rate_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "messages per second PER DEVICE" in text
    assert "sent=N acknowledged=N errors=N" in text
    assert "buffered=N dropped=N" in text
    assert "--offline-every SECONDS" in text


def test_no_broker_exits_1_and_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    broker = f"mqtt://127.0.0.1:{free_port()}"
    status = main(["--broker", broker, "--devices", "2", "--duration", "1", "--quiet"])
    captured = capsys.readouterr()
    assert status == 1
    assert "mqtt connect for 'sim-000' failed" in captured.err
    assert summary(captured.out)["sent"] == 0


async def run_sim(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "devices.sim",
        *argv,
        cwd=PROJECT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_stops_the_sim_cleanly(mosquitto: Mosquitto, signum: int) -> None:
    async with listening(mosquitto, "devices") as listener:
        sim = await run_sim(*sim_argv(mosquitto, "--devices", "2", "--rate", "50"))
        await listener.until(20)
        sim.send_signal(signum)
        async with asyncio.timeout(10):
            out, err = await sim.communicate()
        result = summary(out.decode())
        await listener.until(int(result["sent"]), statuses=2 * 2)
    assert sim.returncode == 0, err.decode()
    assert result["sent"] == result["acknowledged"] == listener.telemetry
    assert result["errors"] == 0
    assert listener.statuses == {
        "sim-000": [b"online", b"offline"],
        "sim-001": [b"online", b"offline"],
    }


@pytest.mark.slow
async def test_without_a_buffer_a_broker_outage_counts_errors_and_the_fleet_comes_back(
    mosquitto: Mosquitto,
) -> None:
    async with listening(mosquitto, "devices") as listener:
        sim = await run_sim(
            *sim_argv(
                mosquitto, "--devices", "2", "--rate", "20", "--duration", "4", "--buffer", "0"
            )
        )
        await listener.until(10)
    mosquitto.stop()
    await asyncio.sleep(1.0)  # the outage the scenario is about, 1 s long
    mosquitto.start()
    async with listening(mosquitto, "devices") as listener:
        await listener.until(10)  # sent after the devices reconnected
        async with asyncio.timeout(15):
            out, err = await sim.communicate()
    result = summary(out.decode())
    assert sim.returncode == 1
    assert result["errors"] > 0
    assert result["acknowledged"] > 0
    assert result["sent"] == result["acknowledged"] + result["errors"]
    assert result["buffered"] == result["dropped"] == 0
    assert "reconnected" in err.decode()


async def test_with_the_default_buffer_a_broker_outage_loses_nothing(
    mosquitto: Mosquitto,
) -> None:
    sim = await run_sim(*sim_argv(mosquitto, "--devices", "2", "--rate", "20", "--duration", "3"))
    async with listening(mosquitto, "devices") as listener:
        await listener.until(10)
    await asyncio.to_thread(mosquitto.stop)
    await asyncio.sleep(1.0)  # the outage the scenario is about, 1 s long
    await asyncio.to_thread(mosquitto.start)
    async with asyncio.timeout(15):
        out, err = await sim.communicate()
    result = summary(out.decode())
    assert sim.returncode == 0, err.decode()
    assert result["sent"] == result["acknowledged"] == 2 * 20 * 3
    assert result["errors"] == result["dropped"] == 0
    assert result["buffered"] >= 2 * 20 * 0.5
    assert "link down, buffering" in err.decode()
    assert "reconnected, buffer flushed" in err.decode()


async def test_progress_redraws_one_line_on_a_terminal() -> None:
    stream = io.StringIO()
    tally = Tally()
    async with Progress(tally, stream, interactive=True, redraw_s=0.05):
        for n in range(1, 6):
            tally.sent += 10
            tally.acknowledged += 10
            await wait_until(lambda n=n: f"acknowledged {10 * n}" in stream.getvalue())
    text = stream.getvalue()
    assert text.count("\r") >= 5
    assert "\n" not in text
    assert "msg/s" in text
    assert text.endswith("\r\x1b[K")  # the live line is gone before the summary


async def test_progress_writes_plain_lines_elsewhere_and_nothing_when_quiet() -> None:
    plain, quiet = io.StringIO(), io.StringIO()
    tally = Tally(sent=3, acknowledged=2, errors=1)
    async with (
        Progress(tally, plain, interactive=False, log_every_s=0.05),
        Progress(tally, quiet, quiet=True, interactive=False, log_every_s=0.05),
    ):
        await wait_until(lambda: plain.getvalue().count("\n") >= 2)
    lines = plain.getvalue().splitlines()
    assert len(lines) >= 2
    assert lines[0].startswith(
        "sent 3  acknowledged 2  errors 1  buffered 0 (waiting 0)  dropped 0"
    )
    assert "\r" not in plain.getvalue()
    assert quiet.getvalue() == ""


def test_the_summary_line_keeps_its_names() -> None:
    line = Tally(sent=120, acknowledged=110, errors=2, buffered=30, dropped=8).summary(2.0, 3)
    assert line == (
        "sent=120 acknowledged=110 errors=2 duration=2.00 rate=60.0 msg/s readings=330 "
        "buffered=30 dropped=8 commands=0"
    )
