"""Output alarms and forwarding: how soon a printed line fires an alarm, reaches a
rule's webhook, and arrives at an OTLP receiver.

    python bench/alarms.py [--runs 20]

A real server and agent on loopback, an alarm on "ERROR" over 1 minute, a rule sending
its state changes to a webhook, and the server forwarding output to an OTLP/HTTP
receiver. Each run creates a fresh alarm, sends `echo ERROR ...` and measures from the
send to the alarm's ALARM state (seen through the API), to the webhook receiving that
change, and to the line arriving at the OTLP receiver. The times include sending the
command and running the script (bench/latency.py measures those alone).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import SERVER_ENV, percentile
from tests.e2e.logsinks import OtlpReceiver
from tests.e2e.receivers import WebhookReceiver
from tests.harness import fleet, wait_for

SECRET = "bench-secret-bench-secret"
PATTERN = {
    "source": ["fleetrun"],
    "detail-type": ["Output Alarm State-change Notification"],
    "detail": {"state": {"value": ["ALARM"]}},
}


def _fired(hook: WebhookReceiver, name: str) -> bool:
    return any(json.loads(r.body)["detail"]["alarm-name"] == name for r in hook.delivered())


def run(runs: int) -> None:
    otlp = OtlpReceiver().start()
    env = {**SERVER_ENV, "FLEETRUN_FORWARD_OTLP": otlp.url}
    try:
        with tempfile.TemporaryDirectory() as tmp, fleet(Path(tmp), env=env) as f:
            agent = f.add_agent()
            with WebhookReceiver(SECRET) as hook:
                f.client.create_rule(
                    "bench",
                    pattern=PATTERN,
                    targets=[{"target": f"webhook:{hook.url}", "secret": SECRET}],
                )
                to_alarm, to_hook, to_otlp = [], [], []
                for i in range(runs):
                    name = f"bench-{i}"
                    f.client.create_alarm(name, pattern="ERROR", threshold=1, period="1m")
                    wait_for(lambda n=name: f.client.get_alarm(n).state == "OK", interval_s=0.005)
                    line = f"ERROR number {i}"
                    t0 = time.perf_counter()
                    f.client.send_command(script=f"echo '{line}'", node_ids=[agent.node_id])
                    wait_for(lambda n=name: f.client.get_alarm(n).state == "ALARM", interval_s=0.02)
                    to_alarm.append(time.perf_counter() - t0)
                    wait_for(lambda n=name: _fired(hook, n), interval_s=0.005)
                    to_hook.append(time.perf_counter() - t0)
                    wait_for(lambda t=line: any(b == t for *_, b in otlp.records), interval_s=0.001)
                    to_otlp.append(time.perf_counter() - t0)
                    f.client.delete_alarm(name)
    finally:
        otlp.stop()
    for what, times in (
        ("send -> alarm in ALARM", to_alarm),
        ("send -> alarm webhook received", to_hook),
        ("send -> line at the OTLP receiver", to_otlp),
    ):
        ms = [t * 1000 for t in times]
        print(f"{what}, {runs} runs: p50 {percentile(ms, 50):.0f} ms, max {max(ms):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    run(parser.parse_args().runs)


if __name__ == "__main__":
    main()
