#!/usr/bin/env python3
"""Check file-based discovery's relabelling as a running Prometheus applies it (/api/v1/targets).

live_stack.sh starts a Prometheus with only prometheus.yml's file_sd job (relabel_configs as
written), reading a copy of targets/fleet.json.example and a file naming the live gateway and
worker. For every target of the given files, Prometheus's own labels must be what
prometheus.yml and infra/README.md promise:

  job       the file's `job` label (not the scrape job's name)
  instance  the file's `instance` label where it sets one, else the host without the port
  others    the file's other labels (env) unchanged
  and every target keeps a distinct (job, instance). Targets of the --live files must also be
  scraped (health "up"); the example's hosts do not exist here, so only their labels count.

usage: check_file_sd.py PROM_URL TARGET_FILE... [--live TARGET_FILE...] [--wait 30]
Standard library only.
"""
import argparse
import json
import re
import sys
import time
import urllib.request


def expected(files):
    """{address: (labels Prometheus must show, group of a --live file?)} from file_sd files."""
    out = {}
    for path, live in files:
        with open(path) as fh:
            groups = json.load(fh)
        for group in groups:
            for address in group["targets"]:
                labels = dict(group["labels"])
                labels.setdefault("instance", re.sub(r":[0-9]+$", "", address))
                out[address] = (labels, live)
    return out


def active_targets(prom):
    with urllib.request.urlopen(f"{prom}/api/v1/targets?state=active", timeout=10) as resp:
        targets = json.load(resp)["data"]["activeTargets"]
    return {t["discoveredLabels"]["__address__"]: t for t in targets}


def verdicts(want, got):
    """(ok, line) per expected target."""
    for address, (labels, live) in sorted(want.items()):
        target = got.get(address)
        if target is None:
            yield False, f"{address}: not discovered"
            continue
        shown = {k: target["labels"].get(k) for k in labels}
        ok = shown == labels and (not live or target["health"] == "up")
        health = f", health {target['health']}" if live else ""
        yield ok, f"{address} -> {target['labels']}{health} (want {labels})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prom_url")
    ap.add_argument("files", nargs="+", help="file_sd files: labels checked")
    ap.add_argument("--live", nargs="*", default=[], help="file_sd files: labels checked, and up")
    ap.add_argument("--wait", type=float, default=30, help="seconds for discovery and scrapes")
    args = ap.parse_args()
    prom = args.prom_url.rstrip("/")
    want = expected([(f, False) for f in args.files] + [(f, True) for f in args.live])

    deadline = time.monotonic() + args.wait
    while True:
        got = active_targets(prom)
        results = list(verdicts(want, got))
        if all(ok for ok, _ in results) or time.monotonic() >= deadline:
            break
        time.sleep(1)

    for ok, line in results:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    keys = [(t["labels"].get("job"), t["labels"].get("instance")) for t in got.values()]
    distinct = len(set(keys)) == len(keys) == len(want)
    print(f"{'PASS' if distinct else 'FAIL'}  {len(keys)} targets, {len(set(keys))} distinct (job, instance)")
    failed = sum(not ok for ok, _ in results) + (not distinct)
    print(f"file_sd checks: {len(results) + 1 - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
