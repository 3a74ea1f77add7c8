#!/usr/bin/env python3
"""Writes the dashboards JSON files in this folder (see README.md)."""
import json, os
OUT = os.path.dirname(os.path.abspath(__file__))
INFLUX = {"type": "influxdb", "uid": "spotcheck-influxdb"}
PROM = {"type": "prometheus", "uid": "spotcheck-prometheus"}

def influx_target(q, ref="A", fmt="time_series"):
    return {"refId": ref, "datasource": INFLUX, "query": q, "rawQuery": True, "resultFormat": fmt}

def prom_target(expr, legend, ref="A"):
    return {"refId": ref, "datasource": PROM, "expr": expr, "legendFormat": legend, "range": True}

def thresholds(steps):
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}

_id = [0]
def panel(title, targets, ds, x, y, w=12, h=8, kind="timeseries", unit=None, steps=None, desc=None, show_thresholds=True):
    _id[0] += 1
    defaults = {}
    if unit: defaults["unit"] = unit
    if steps:
        defaults["thresholds"] = thresholds(steps)
        if kind == "timeseries" and show_thresholds:
            defaults["custom"] = {"thresholdsStyle": {"mode": "line+area"}}
    p = {"id": _id[0], "type": kind, "title": title, "datasource": ds,
         "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "fieldConfig": {"defaults": defaults, "overrides": []},
         "options": {}, "targets": targets}
    if desc: p["description"] = desc
    return p

def var(name, label, query, ds=INFLUX):
    return {"name": name, "label": label, "type": "query", "datasource": ds, "query": query,
            "definition": query, "refresh": 2, "sort": 1, "includeAll": False, "multi": False,
            "current": {}, "options": [], "hide": 0}

def dashboard(uid, title, panels, variables=(), tags=("spotcheck",), time_from="now-6h"):
    return {"uid": uid, "title": title, "tags": list(tags), "timezone": "browser",
            "schemaVersion": 39, "version": 1, "editable": True, "graphTooltip": 1,
            "time": {"from": time_from, "to": "now"}, "refresh": "30s",
            "templating": {"list": list(variables)},
            "annotations": {"list": []}, "links": [], "panels": panels}

def save(name, d):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(d, f, ensure_ascii=False, indent=2)
        f.write("\n")

# Pool water quality: one panel per metric, GB 37488-2019 limits as thresholds.
pool_metrics = [
    ("free_chlorine", "Free residual chlorine (GB 37488-2019: 0.3–1.0 mg/L)", "conmgm3", [("red", None), ("green", 0.3), ("red", 1.0)]),
    ("combined_chlorine", "Combined chlorine (GB 37488-2019: ≤ 0.4 mg/L)", None, [("green", None), ("red", 0.4)]),
    ("ph", "pH (GB 37488-2019: 7.0–7.8)", None, [("red", None), ("green", 7.0), ("red", 7.8)]),
    ("turbidity", "Turbidity (GB 37488-2019: ≤ 1 NTU)", None, [("green", None), ("red", 1.0)]),
    ("orp", "Oxidation-reduction potential (≥ 650 mV)", "mvolt", [("red", None), ("green", 650)]),
    ("water_temperature", "Water temperature (watched above 29 °C)", "celsius", [("green", None), ("orange", 29)]),
]
panels = []
for i, (metric, title, unit, steps) in enumerate(pool_metrics):
    q = ('SELECT mean("value") FROM "pool" WHERE "metric" = \'%s\' AND "entity" =~ /^$entity$/ '
         'AND $timeFilter GROUP BY time($__interval), "entity" fill(none)') % metric
    panels.append(panel(title, [influx_target(q)], INFLUX, (i % 2) * 12, (i // 2) * 8,
                        unit=None if unit == "conmgm3" else unit, steps=steps,
                        desc="Limits from collector/rules/pool.toml (GB 37488-2019; CJ/T 244-2016). Verdicts come from Spotcheck's store, not from this chart."))
panels.append(panel("Readings per minute and metric (gaps show missing data)", [influx_target(
    'SELECT count("value") FROM "pool" WHERE "entity" =~ /^$entity$/ AND $timeFilter GROUP BY time(1m), "metric" fill(0)')],
    INFLUX, 0, 24, w=24, kind="timeseries",
    desc="The rule pack treats a metric silent for 30 minutes as missing data (no_data rule)."))
save("pool-water-quality.json", dashboard("spotcheck-pool", "Spotcheck · Pool water quality", panels,
    [var("entity", "Pool", 'SHOW TAG VALUES FROM "pool" WITH KEY = "entity"')]))

# Online games: minors' protection.
_id[0] = 0
g = lambda field, kind: ('SELECT sum("%s") FROM "game_events" WHERE "kind" = \'%s\' AND "entity" =~ /^$entity$/ '
                         'AND $timeFilter GROUP BY time($__interval), "entity" fill(0)') % (field, kind)
panels = [
    panel("Minors' sessions outside Fri/Sat/Sun/holiday 20:00–21:00", [influx_target(g("minor_outside_window", "game_session"))], INFLUX, 0, 0,
          steps=[("green", None), ("red", 1)], desc="Sessions by minors (or unverified players) that started outside the window of the 2021 notice, per minute."),
    panel("Guest-mode sessions", [influx_target(g("guest", "game_session"))], INFLUX, 12, 0, steps=[("green", None), ("red", 1)]),
    panel("Sessions without real-name verification", [influx_target(g("unverified", "game_session"))], INFLUX, 0, 8),
    panel("Sessions, all and by minors", [influx_target(g("count", "game_session"), "A"), influx_target(g("minor", "game_session"), "B")], INFLUX, 12, 8),
    panel("Spending by minors (yuan)", [influx_target(
        'SELECT sum("minor_amount_fen") / 100 FROM "game_events" WHERE "kind" = \'game_payment\' AND "entity" =~ /^$entity$/ AND $timeFilter GROUP BY time($__interval), "entity" fill(0)')],
        INFLUX, 0, 16, unit="currencyCNY"),
    panel("All spending (yuan)", [influx_target(
        'SELECT sum("amount_fen") / 100 FROM "game_events" WHERE "kind" = \'game_payment\' AND "entity" =~ /^$entity$/ AND $timeFilter GROUP BY time($__interval), "entity" fill(0)')],
        INFLUX, 12, 16, unit="currencyCNY"),
    panel("Payments by minors (count)", [influx_target(g("minor", "game_payment"))], INFLUX, 0, 24, w=24),
]
save("online-game-compliance.json", dashboard("spotcheck-game", "Spotcheck · Online games: minors' protection", panels,
    [var("entity", "Operator", 'SHOW TAG VALUES FROM "game_events" WITH KEY = "entity"')], time_from="now-24h"))

# Internet hospitals.
_id[0] = 0
h = lambda field, kind: ('SELECT sum("%s") FROM "hospital_events" WHERE "kind" = \'%s\' AND "entity" =~ /^$entity$/ '
                         'AND $timeFilter GROUP BY time($__interval), "entity" fill(0)') % (field, kind)
panels = [
    panel("Consultations with a stand-in for the doctor", [influx_target(h("stand_in", "consultation"))], INFLUX, 0, 0, steps=[("green", None), ("red", 1)]),
    panel("Prescriptions without pharmacist review", [influx_target(h("unreviewed", "prescription"))], INFLUX, 12, 0, steps=[("green", None), ("red", 1)]),
    panel("Patients under 6 without a guardian", [influx_target(h("under6_no_guardian", "consultation"))], INFLUX, 0, 8, steps=[("green", None), ("red", 1)]),
    panel("First visits online", [influx_target(h("first_visit", "consultation"))], INFLUX, 12, 8, steps=[("green", None), ("red", 1)]),
    panel("Doctors not verified before the consultation", [influx_target(h("doctor_unverified", "consultation"))], INFLUX, 0, 16),
    panel("AI-generated prescriptions", [influx_target(h("ai_generated", "prescription"))], INFLUX, 12, 16, steps=[("green", None), ("red", 1)]),
    panel("Consultations and prescriptions", [influx_target(h("count", "consultation"), "A"), influx_target(h("count", "prescription"), "B")], INFLUX, 0, 24, w=24),
]
save("internet-hospital-compliance.json", dashboard("spotcheck-hospital", "Spotcheck · Internet hospitals", panels,
    [var("entity", "Hospital", 'SHOW TAG VALUES FROM "hospital_events" WITH KEY = "entity"')], time_from="now-24h"))

# Entity drill-down.
_id[0] = 0
panels = [
    panel("$metric at $entity", [influx_target(
        'SELECT mean("value") FROM /^(pool|game|hospital)$/ WHERE "entity" =~ /^$entity$/ AND "metric" =~ /^$metric$/ AND $timeFilter GROUP BY time($__interval), "metric", "unit" fill(none)')],
        INFLUX, 0, 0, w=24),
    panel("Every metric at $entity (last value)", [influx_target(
        'SELECT last("value") AS "value" FROM /^(pool|game|hospital)$/ WHERE "entity" =~ /^$entity$/ AND $timeFilter GROUP BY "metric", "unit", "agent"', fmt="table")],
        INFLUX, 0, 8, kind="table"),
    panel("Event records at $entity, per kind", [influx_target(
        'SELECT sum("count") FROM /_events$/ WHERE "entity" =~ /^$entity$/ AND $timeFilter GROUP BY time($__interval), "kind" fill(0)')],
        INFLUX, 12, 8, desc="Pools report readings, games and hospitals event records: an entity shows one or the other."),
]
save("entity-drill-down.json", dashboard("spotcheck-entity", "Spotcheck · Entity drill-down", panels, [
    var("department", "Department", 'SHOW TAG VALUES WITH KEY = "department"'),
    var("entity", "Entity", 'SHOW TAG VALUES WITH KEY = "entity" WHERE "department" =~ /^$department$/'),
    var("metric", "Metric", 'SHOW TAG VALUES WITH KEY = "metric" WHERE "entity" =~ /^$entity$/'),
], time_from="now-24h"))

# Collector and agent health (Prometheus: the collector's /metrics).
_id[0] = 0
p = lambda expr, legend, ref="A": prom_target(expr, legend, ref)
panels = [
    panel("Ingest rate (readings/s)", [p("sum(rate(spotcheck_readings_ingested_total[$__rate_interval]))", "readings/s"),
                                      p("sum(rate(spotcheck_events_ingested_total[$__rate_interval]))", "events/s", "B")], PROM, 0, 0, unit="ops"),
    panel("Rejected readings and records (dead letters)", [p("sum(increase(spotcheck_readings_rejected_total[$__rate_interval]))", "rejected")], PROM, 12, 0,
          steps=[("green", None), ("red", 1)]),
    panel("Agents online", [p("spotcheck_agents_online", "online")], PROM, 0, 8, w=6, kind="stat"),
    panel("Batches kept back behind a sequence gap", [p("spotcheck_batches_kept_back", "kept back")], PROM, 6, 8, w=6, kind="stat", steps=[("green", None), ("orange", 1)]),
    panel("Duplicates dropped", [p("sum(increase(spotcheck_duplicates_dropped_total[$__rate_interval]))", "duplicates")], PROM, 18, 8, w=6),
    panel("Time-series sink backlog", [p("spotcheck_sink_backlog", "backlog")], PROM, 0, 16, steps=[("green", None), ("orange", 100000)]),
    panel("Time-series sink lag (s)", [p("spotcheck_sink_lag_seconds", "lag")], PROM, 12, 16, unit="s", steps=[("green", None), ("orange", 60)]),
    panel("Sink: points written/s and write errors", [p("sum(rate(spotcheck_sink_points_written_total[$__rate_interval]))", "written/s"),
                                                      p("sum(increase(spotcheck_sink_write_errors_total[$__rate_interval]))", "write errors", "B"),
                                                      p("sum(increase(spotcheck_sink_points_dead_lettered_total[$__rate_interval]))", "dead-lettered", "C")], PROM, 0, 24, w=24),
    panel("Ingest up", [p("spotcheck_ingest_up", "up")], PROM, 12, 8, w=6, kind="stat", steps=[("red", None), ("green", 1)]),
    panel("Ingest-to-commit latency (p50, p99)", [
        p("histogram_quantile(0.5, sum(rate(spotcheck_ingest_commit_latency_seconds_bucket[$__rate_interval])) by (le))", "p50"),
        p("histogram_quantile(0.99, sum(rate(spotcheck_ingest_commit_latency_seconds_bucket[$__rate_interval])) by (le))", "p99", "B")],
        PROM, 0, 32, w=24, unit="s", steps=[("green", None), ("orange", 1)],
        desc="From ingest taking a message from the broker to the commit that stored it; seconds mean a backlog."),
]
save("collector-health.json", dashboard("spotcheck-health", "Spotcheck · Collector and agent health", panels, time_from="now-1h"))
