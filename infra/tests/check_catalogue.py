#!/usr/bin/env python3
"""Fail when catalogue.py drifts from the metrics the code exports, or from DESIGN.md.

catalogue.py lists the exposed metric names by kind, by hand; the rule, dashboard and
federation checks trust it. This derives the same lists from metrics-common/src:

  names.rs      each instrument-name constant with the exposition name written beside it,
                and each unit constant with the suffix the exporter appends for it;
  gateway.rs, worker.rs, gpu.rs
                each instrument builder (`.u64_counter(names::X)` ... `.build()`): its kind
                and unit, hence the exposition name as the OpenTelemetry Prometheus exporter
                writes it: name + unit suffix, + `_total` for a counter; an up/down counter
                is exposed as a gauge;

and checks that catalogue.py's COUNTERS, GAUGES and HISTOGRAMS are exactly those instruments,
that names.rs's written names match the derived ones, and, where DESIGN.md is found
(shared/DESIGN.md in or beside the repository), that its metric catalogue names the same
metrics, with the same kind where its table gives one. With --scraped PROM_URL (live_stack.sh),
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
KINDS = {"counter": "counter", "up_down_counter": "gauge", "gauge": "gauge", "histogram": "histogram"}
failures = []


def check(cond, what):
    print(f"{'PASS' if cond else 'FAIL'}  {what}")
    if not cond:
        failures.append(what)


def names_rs():
    """({const: instrument name}, {const: name written in its doc}, {unit const: suffix})."""
    text = (SRC / "names.rs").read_text()
    consts = dict(re.findall(r'pub const (\w+): &str = "([^"]*)";', text))
    written = dict((c, n) for n, c in re.findall(r"/// `(\w+)`\npub const (\w+): &str", text))
    suffixes = dict((c, s) for s, c in re.findall(r"appends `_(\w+)`\.\npub const (UNIT_\w+):", text))
    return consts, written, suffixes


def instruments(consts, suffixes):
    """[(const, kind, exposition name)] of every instrument builder in the crate."""
    found = []
    for path in sorted(SRC.glob("*.rs")):
        builders = re.findall(
            r"\.[ufi]64_(counter|up_down_counter|gauge|histogram)\(names::(\w+)\)(.*?)\.build\(\)",
            path.read_text(), re.S)
        for kind, const, chain in builders:
            unit = re.search(r"\.with_unit\(names::(\w+)\)", chain)
            name = consts[const]
            if unit and not name.endswith("_" + suffixes[unit.group(1)]):
                name += "_" + suffixes[unit.group(1)]
            if kind == "counter":
                name += "_total"
            found.append((const, KINDS[kind], name))
    return found


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
    consts, written, suffixes = names_rs()
    found = instruments(consts, suffixes)
    check(found, f"{len(found)} instrument builders in metrics-common/src")
    for const, _, name in found:
        check(written.get(const) == name, f"names.rs {const}: written `{written.get(const)}`, exported `{name}`")
    unused = sorted(set(written) - {c for c, _, _ in found})
    check(not unused, f"every documented name in names.rs has an instrument (unused: {unused})")

    listed = {"counter": catalogue.COUNTERS, "gauge": catalogue.GAUGES, "histogram": catalogue.HISTOGRAMS}
    for kind, names in listed.items():
        code = {n for _, k, n in found if k == kind}
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
        check(names == set(ours), f"{design}: names the catalogue's metrics: missing "
              f"{sorted(set(ours) - names)}, extra {sorted(names - set(ours))}")
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
