#!/usr/bin/env python3
"""Fail when catalogue.py drifts from the metrics the code exports, or from DESIGN.md.

catalogue.py lists the exposed metric names by kind, by hand; the rule, dashboard and
federation checks trust it. This derives the same lists from metrics-common/src:

  names.rs      each instrument (`pub const X: InstrumentSpec = counter("name", "exposed", ...)`):
                its kind from the constructor, its unit (`Unit::Seconds` -> `_seconds`), hence the
                exposition name as the OpenTelemetry Prometheus exporter writes it: name + unit
                suffix, + `_total` for a counter; an up/down counter is exposed as a gauge; and the
                `exposed` name written beside it;
  gateway.rs, worker.rs, gpu.rs
                each instrument built (`instrument::counter(meter, &names::X)`);

and checks that catalogue.py's COUNTERS, GAUGES and HISTOGRAMS are exactly those instruments,
that names.rs's written names match the derived ones, that every spec is built, and, where
DESIGN.md is found (shared/DESIGN.md in or beside the repository), that its metric catalogue
names every metric the code exports, with the same kind where its table gives one (DESIGN.md
may name metrics planned and not built yet: those are listed, not failed). With --scraped PROM_URL (live_stack.sh),
every coder_* and nvidia_gpu_* name that Prometheus scraped from the real binaries must be
in catalogue.py as well.

usage: check_catalogue.py [--scraped PROM_URL]   (paths from this file's place in the repository)
"""
import argparse
import json
import pathlib
import re
import sys
import urllib.parse
import urllib.request

import catalogue

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent.parent
SRC = REPO / "metrics-common" / "src"
DESIGN_PLACES = [REPO / "shared" / "DESIGN.md", REPO.parent / "shared" / "DESIGN.md"]
KINDS = {"counter": "counter", "up_down_counter": "gauge", "gauge": "gauge", "seconds_histogram": "histogram",
         "count_histogram": "histogram"}
failures = []


def check(cond, what):
    print(f"{'PASS' if cond else 'FAIL'}  {what}")
    if not cond:
        failures.append(what)


def instruments():
    """[(const, kind, exposition name derived, exposition name written)] of every spec in names.rs."""
    text = (SRC / "names.rs").read_text()
    found = []
    for const, ctor, args in re.findall(r"pub const (\w+): InstrumentSpec = (\w+)\((.*?)\);", text, re.S):
        name, written = re.findall(r'"([^"]*)"', args)[:2]
        unit = re.search(r"Unit::(\w+)", args)
        if ctor == "seconds_histogram":
            unit = "seconds"
        elif unit:
            unit = unit.group(1).lower()
        derived = name + ("_" + unit if unit and not name.endswith("_" + unit) else "")
        if ctor == "counter":
            derived += "_total"
        found.append((const, KINDS[ctor], derived, written))
    return found


def built():
    """The spec constants an instrument is built from in the crate's other files."""
    return {const for path in sorted(SRC.glob("*.rs")) if path.name != "names.rs"
            for const in re.findall(r"instrument::\w+\(\s*meter,\s*&names::(\w+)\)", path.read_text())}


def design_catalogue(path):
    """({metric names in the catalogue section}, {name: kind its table gives})."""
    text = path.read_text()
    section = text[text.index("## Metric catalogue"):]
    section = section[:section.find("\n## ", 1)]
    names = set(re.findall(r"`((?:coder|nvidia_gpu)_[a-z0-9_]+)", section))
    kinds = {}
    for first, second in re.findall(r"^\|([^|]*)\|\s*(counter|gauge|histogram)", section, re.M):
        for name in re.findall(r"`(\w+)`", first):
            kinds[name] = second
    return names, kinds


def scraped_names(prom):
    query = urllib.parse.urlencode({"match[]": '{__name__=~"coder_.+|nvidia_gpu_.+"}'})
    with urllib.request.urlopen(f"{prom.rstrip('/')}/api/v1/label/__name__/values?{query}", timeout=10) as resp:
        return set(json.load(resp)["data"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scraped", metavar="PROM_URL", help="also check the names a live Prometheus holds")
    args = ap.parse_args()
    found = instruments()
    check(found, f"{len(found)} instrument specs in metrics-common/src/names.rs")
    for const, _, name, written in found:
        check(written == name, f"names.rs {const}: written `{written}`, exported `{name}`")
    unbuilt = sorted({c for c, _, _, _ in found} - built())
    check(not unbuilt, f"every spec in names.rs has an instrument built (unbuilt: {unbuilt})")

    listed = {"counter": catalogue.COUNTERS, "gauge": catalogue.GAUGES, "histogram": catalogue.HISTOGRAMS}
    for kind, names in listed.items():
        code = {n for _, k, n, _ in found if k == kind}
        check(len(names) == len(set(names)) and set(names) == code,
              f"catalogue.py {kind}s == the code's: missing {sorted(code - set(names))}, "
              f"extra {sorted(set(names) - code)}")
    check(set(catalogue.SHARED_GAUGES) <= set(catalogue.GAUGES), "catalogue.py SHARED_GAUGES are gauges")

    design = next((p for p in DESIGN_PLACES if p.is_file()), None)
    if design is None:
        print(f"SKIP  DESIGN.md: not found at {', '.join(map(str, DESIGN_PLACES))}")
    else:
        names, kinds = design_catalogue(design)
        ours = {n: k for k, ns in listed.items() for n in ns}
        # DESIGN.md is the contract, and runs ahead of the code: every metric the code exports
        # must be in it; the ones it names that no code exports yet are planned, and listed.
        check(set(ours) <= names, f"{design}: names every metric the code exports (missing "
              f"{sorted(set(ours) - names)})")
        planned = sorted(names - set(ours))
        if planned:
            print(f"NOTE  {design}: planned, not exported yet: {planned}")
        wrong = {n: k for n, k in kinds.items() if ours.get(n) != k}
        check(not wrong, f"{design}: kinds in its table agree ({len(kinds)} given; differing: {wrong})")

    if args.scraped:
        names = scraped_names(args.scraped)
        check(names and names <= catalogue.EXPOSED,
              f"{len(names)} names scraped from the binaries, all in catalogue.py "
              f"(unknown: {sorted(names - catalogue.EXPOSED)})")

    print(f"catalogue checks: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
