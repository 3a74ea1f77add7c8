#!/usr/bin/env python3
"""Feeds one agent's HTTP intake and file tail for the agent's mixed-source benchmark
(agent/bench/run.sh mixed): every TICK seconds it POSTs HTTP_N pool readings (one request,
with an Idempotency-Key, on one kept-alive connection) and appends FILE_N CSV lines to the
tailed file, until killed. Prints the records the intake accepted when it stops.

  feed.py HTTP_PORT TOKEN CSV_PATH [HTTP_N=33] [FILE_N=33] [TICK=0.1]
"""
import http.client
import json
import signal
import sys
import time

port, token, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
http_n = int(sys.argv[4]) if len(sys.argv) > 4 else 33
file_n = int(sys.argv[5]) if len(sys.argv) > 5 else 33
tick = float(sys.argv[6]) if len(sys.argv) > 6 else 0.1
METRICS = [("ph", 7.4, "pH"), ("free_chlorine", 0.55, "mg/L"), ("water_temperature", 27.0, "Cel")]
accepted = 0
running = True


def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)

with open(path, "a") as f:
    f.write("metric,value,unit,ts_ms\n")
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
n = 0
start = time.monotonic()
while running:
    now = int(time.time() * 1000)
    body = [
        {"metric": m, "value": round(v + (i % 7) * 0.01, 2), "unit": u, "ts_ms": now}
        for i in range(http_n)
        for m, v, u in [METRICS[i % 3]]
    ]
    try:
        conn.request("POST", "/v1/records", json.dumps(body),
                     {**headers, "Idempotency-Key": f"feed-{n}"})
        r = conn.getresponse()
        answer = r.read()
        if r.status == 202:
            accepted += json.loads(answer)["accepted"]
    except (OSError, http.client.HTTPException):
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    with open(path, "a") as f:
        f.write("".join(
            f"{m},{round(v + (i % 5) * 0.01, 2)},{u},{now}\n"
            for i in range(file_n)
            for m, v, u in [METRICS[i % 3]]
        ))
    n += 1
    delay = start + n * tick - time.monotonic()
    if delay > 0:
        time.sleep(delay)
print(f"http accepted {accepted}, file lines {n * file_n}")
