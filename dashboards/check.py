#!/usr/bin/env python3
"""Checks every dashboard in this folder against real data.

For each JSON file: load it into grafana-foundation-sdk's dashboard model (Dashboard.from_json,
panel types and Prometheus queries through the SDK's registered plugin models; InfluxQL
targets, for which the SDK has no model, by shape), check the datasource uids against
provisioning/datasources/spotcheck.yaml, resolve the template variables by running their own
queries, substitute Grafana's macros, run every panel query (InfluxQL against InfluxDB,
PromQL against a Prometheus API) and require series. A panel whose queries return nothing for
every value of its variables fails.

    python3 dashboards/check.py --influx http://127.0.0.1:8086 --database spotcheck \\
        --prometheus http://127.0.0.1:8428

Run by tests/tests/tsdb.rs against InfluxDB 1.x filled by the collector's sink with demo data
and VictoriaMetrics scraping the demo's /metrics.
"""

import argparse
import itertools
import json
import pathlib
import re
import sys
import urllib.parse
import urllib.request

import yaml
from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus

HERE = pathlib.Path(__file__).resolve().parent
MAX_COMBINATIONS = 60


def post(url, form):
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
        return json.load(r)


class Influx:
    def __init__(self, url, database, time_range):
        self.url, self.db, self.range = url.rstrip("/"), database, time_range

    def run(self, query):
        answer = post(self.url + "/query", {"db": self.db, "q": query, "epoch": "ms"})
        result = answer["results"][0]
        if "error" in result:
            raise ValueError(f"InfluxDB: {result['error']} in: {query}")
        return result.get("series", [])

    def substitute(self, query, values):
        query = query.replace("$timeFilter", f"time > now() - {self.range}")
        query = query.replace("$__interval", "1m")
        return substitute_vars(query, values)

    def has_series(self, query, values):
        series = self.run(self.substitute(query, values))
        return any(s.get("values") for s in series)

    def variable_values(self, query, values):
        series = self.run(self.substitute(query, values))
        # SHOW TAG VALUES answers rows of [key, value], one series per measurement.
        return sorted({row[1] for s in series for row in s.get("values", [])})


class Prometheus:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def has_series(self, expr, values):
        expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
        expr = substitute_vars(expr, values)
        answer = post(self.url + "/api/v1/query", {"query": expr})
        if answer.get("status") != "success":
            raise ValueError(f"PromQL: {answer} for: {expr}")
        return len(answer["data"]["result"]) > 0


def substitute_vars(text, values):
    for name, value in values.items():
        text = re.sub(r"\$\{?" + re.escape(name) + r"\}?(?![A-Za-z0-9_])", lambda _: value, text)
    if re.search(r"\$(?!timeFilter|__)[A-Za-z_]", text):
        raise ValueError(f"unresolved template variable in: {text}")
    return text


def validate(path, data, datasource_uids):
    """The SDK's dashboard model accepts the file; panels, queries and datasources are known."""
    problems = []
    plugins.register_default_plugins()
    rt = runtime.Runtime()
    dash = model.Dashboard.from_json(data)
    if not dash.uid or not dash.title:
        problems.append("a dashboard needs a uid and a title")
    if len(dash.to_json().get("panels", [])) != len(data["panels"]):
        problems.append("panels lost in the SDK's round trip")
    for panel in dash.panels or []:
        if not isinstance(panel, model.Panel):
            problems.append(f"panel {panel!r} is not a panel")
            continue
        if rt.panelcfg_config(panel.type_val) is None:
            problems.append(f"panel {panel.title!r}: unknown panel type {panel.type_val!r}")
        if not panel.targets:
            problems.append(f"panel {panel.title!r} has no queries")
        ds = panel.datasource
        if ds is None or ds.uid not in datasource_uids or datasource_uids[ds.uid] != ds.type_val:
            problems.append(f"panel {panel.title!r}: datasource {ds and ds.to_json()} is not provisioned")
        for raw in data["panels"][[p.get("id") for p in data["panels"]].index(panel.id_val)]["targets"]:
            kind = raw.get("datasource", {}).get("type")
            if kind == "prometheus":
                q = rt.dataquery_from_json(raw, "prometheus")
                if not isinstance(q, prometheus.Dataquery) or not q.expr:
                    problems.append(f"panel {panel.title!r}: not a Prometheus query: {raw}")
            elif kind == "influxdb":
                if not (raw.get("rawQuery") is True and isinstance(raw.get("query"), str) and raw.get("refId")):
                    problems.append(f"panel {panel.title!r}: an InfluxQL target needs refId, rawQuery: true and query")
            else:
                problems.append(f"panel {panel.title!r}: unknown target datasource {kind!r}")
    for v in (dash.templating.list_val if dash.templating and dash.templating.list_val else []):
        if v.datasource is None or v.datasource.uid not in datasource_uids:
            problems.append(f"variable {v.name!r}: datasource is not provisioned")
    return [f"{path.name}: {p}" for p in problems]


def referenced(text, names):
    return {n for n in names if re.search(r"\$\{?" + re.escape(n) + r"(?![A-Za-z0-9_])", text)}


def combinations(variables, influx, used):
    """Every assignment of the template variables a query uses (and those they depend on),
    each variable's values from its own query, in the dashboard's order."""
    names = [v["name"] for v in variables]
    needed = set(used)
    for v in reversed(variables):
        if v["name"] in needed:
            needed |= referenced(v["query"], names)
    chain = [v for v in variables if v["name"] in needed]
    out = []

    def walk(i, values):
        if len(out) >= MAX_COMBINATIONS:
            return
        if i == len(chain):
            out.append(dict(values))
            return
        v = chain[i]
        for value in influx.variable_values(v["query"], values):
            walk(i + 1, {**values, v["name"]: value})

    walk(0, {})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--influx", required=True, help="InfluxDB base URL (InfluxQL /query)")
    ap.add_argument("--database", default="spotcheck")
    ap.add_argument("--prometheus", required=True, help="Prometheus API base URL")
    ap.add_argument("--range", default="24h", help="the time range $timeFilter stands for")
    args = ap.parse_args()
    influx = Influx(args.influx, args.database, args.range)
    prom = Prometheus(args.prometheus)

    provisioned = yaml.safe_load((HERE / "provisioning/datasources/spotcheck.yaml").read_text())
    uids = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    providers = yaml.safe_load((HERE / "provisioning/dashboards/spotcheck.yaml").read_text())
    failures = []
    if not providers.get("providers"):
        failures.append("provisioning/dashboards/spotcheck.yaml names no provider")

    checked = 0
    files = sorted(HERE.glob("*.json"))
    if not files:
        failures.append("no dashboards found")
    for path in files:
        data = json.loads(path.read_text())
        failures += validate(path, data, uids)
        variables = data.get("templating", {}).get("list", [])
        names = [v["name"] for v in variables]
        for panel in data["panels"]:
            checked += 1
            for target in panel["targets"]:
                kind = target["datasource"]["type"]
                text = target["query"] if kind == "influxdb" else target["expr"]
                combos = combinations(variables, influx, referenced(text, names) | referenced(panel["title"], names))
                run = (lambda vals: influx.has_series(text, vals)) if kind == "influxdb" \
                    else (lambda vals: prom.has_series(text, vals))
                where = f"{path.name} / {panel['title']} / {target['refId']}"
                try:
                    hit = next((c for c in combos if run(c)), None)
                except ValueError as e:
                    failures.append(f"{where}: {e}")
                    continue
                if hit is None:
                    failures.append(f"{where}: no series for any of {len(combos)} assignments of its variables")
                else:
                    print(f"ok  {where} {hit if hit else ''}")
    if failures:
        print("\n".join(["FAILED:"] + failures), file=sys.stderr)
        sys.exit(1)
    print(f"{checked} panels checked in {len(files)} dashboards: every query returns series")


if __name__ == "__main__":
    main()
