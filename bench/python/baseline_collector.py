#!/usr/bin/env python3
"""The baseline: the collector a bureau's IT staff would write with paho-mqtt and sqlite3.

Subscribes to every readings topic at QoS 1, decodes each payload with json.loads, inserts
every reading into a SQLite table (WAL, default synchronous = FULL like the Spotcheck
collector), commits every 1000 messages or 100 ms, and exits once the expected number of
readings is committed. paho acknowledges each message when on_message returns (before the
commit: the usual way such a script is written).

Prints "ready" once subscribed and done_unix_ns=... when the last reading is committed.
Needs paho-mqtt 2.x (bench/ingest.sh installs paho-mqtt==2.1.0 in a virtualenv).
"""

import argparse
import json
import sqlite3
import sys
import time

import paho.mqtt.client as mqtt

COMMIT_EVERY_MESSAGES = 1000
COMMIT_EVERY_SECONDS = 0.1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
    ap.add_argument("--readings", type=int, required=True, help="readings to wait for")
    ap.add_argument("--db", required=True, help="SQLite file")
    args = ap.parse_args()
    host, port = args.broker.rsplit(":", 1)

    db = sqlite3.connect(args.db)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS readings ("
        " agent TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL,"
        " metric TEXT NOT NULL, value REAL NOT NULL, unit TEXT NOT NULL,"
        " ts_ms INTEGER NOT NULL, quality TEXT NOT NULL)"
    )
    db.commit()

    state = {"pending_msgs": 0, "pending_readings": 0, "stored": 0,
             "last_commit": time.monotonic(), "first": None}

    def commit():
        db.commit()
        state["stored"] += state["pending_readings"]
        state["pending_msgs"] = state["pending_readings"] = 0
        state["last_commit"] = time.monotonic()

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        if any(rc.is_failure for rc in reason_codes):
            sys.exit("subscription refused")
        print("ready", flush=True)

    def on_message(client, userdata, msg):
        if state["first"] is None:
            state["first"] = time.monotonic()
        try:
            batch = json.loads(msg.payload)
            rows = [
                (batch["agent"], batch["seq"], msg.topic, r["metric"], r["value"], r["unit"],
                 r["ts_ms"], r.get("quality", "good"))
                for r in batch["readings"]
            ]
        except (ValueError, KeyError, TypeError) as e:
            print(f"bad payload on {msg.topic}: {e}", file=sys.stderr)
            return
        db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        state["pending_msgs"] += 1
        state["pending_readings"] += len(rows)
        if state["pending_msgs"] >= COMMIT_EVERY_MESSAGES:
            commit()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-python-{time.time_ns()}",
                         clean_session=True)
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.max_inflight_messages_set(1000)
    client.connect(host, int(port))
    client.subscribe("spotcheck/v1/+/+/+/readings", qos=1)

    while state["stored"] < args.readings:
        rc = client.loop(timeout=COMMIT_EVERY_SECONDS)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            sys.exit(f"MQTT loop failed: {mqtt.error_string(rc)}")
        if state["pending_msgs"] and (
            state["stored"] + state["pending_readings"] >= args.readings
            or time.monotonic() - state["last_commit"] >= COMMIT_EVERY_SECONDS
        ):
            commit()
    print(f"done_unix_ns={time.time_ns()}", flush=True)
    secs = time.monotonic() - state["first"]
    print(f"python: {state['stored']} readings committed, first to last {secs:.3f} s "
          f"({state['stored'] / secs:.0f} readings/s)", file=sys.stderr)
    client.disconnect()
    db.close()


if __name__ == "__main__":
    main()
