"""Scrapes a kv-server's /metrics and parses it with prometheus_client's text parser.

usage: metrics_scrape.py URL NODE_ID

Checks what holds for any scrape: the content type is text format 0.0.4, every sample carries
node_id=NODE_ID and no cluster label, every histogram's buckets are cumulative and end in +Inf
equal to its count, and an unknown path is 404. Prints one line per family ("family NAME TYPE")
and per sample ("sample NAME{k=v,...} VALUE", labels sorted, node_id left out) for the C++ test
to compare with the operations it did. Exits 1 with the reason on stderr when a check fails.
"""
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def fail(why):
    print("metrics_scrape: " + why, file=sys.stderr)
    sys.exit(1)


def main():
    url, node_id = sys.argv[1], sys.argv[2]
    with urllib.request.urlopen(url, timeout=10) as reply:
        ctype = reply.headers.get("Content-Type", "")
        text = reply.read().decode("utf-8")
    if not ctype.startswith("text/plain; version=0.0.4"):
        fail("content type %r is not the text format 0.0.4" % ctype)
    try:
        urllib.request.urlopen(url.rsplit("/", 1)[0] + "/nothing-here", timeout=10)
        fail("an unknown path was answered")
    except urllib.error.HTTPError as e:
        if e.code != 404:
            fail("an unknown path got HTTP %d, not 404" % e.code)

    out = []
    for family in text_string_to_metric_families(text):
        out.append("family %s %s" % (family.name, family.type))
        buckets = {}
        counts = {}
        for s in family.samples:
            labels = dict(s.labels)
            if labels.pop("node_id", None) != node_id:
                fail("%s %r lacks node_id=%s" % (s.name, s.labels, node_id))
            if "cluster" in labels:
                fail("%s has a cluster label outside cluster mode" % s.name)
            le = labels.pop("le", None)
            series = ",".join("%s=%s" % kv for kv in sorted(labels.items()))
            if s.name.endswith("_bucket"):
                buckets.setdefault(series, []).append((le, s.value))
            if s.name.endswith("_count"):
                counts[series] = s.value
            if le is not None:
                series = ",".join(x for x in (series, "le=" + le) if x)
            out.append("sample %s{%s} %r" % (s.name, series, s.value))
        if family.type == "histogram":
            for series, bs in buckets.items():
                values = [v for _, v in bs]
                if values != sorted(values):
                    fail("%s{%s}: buckets are not cumulative" % (family.name, series))
                if bs[-1][0] != "+Inf" or bs[-1][1] != counts.get(series):
                    fail("%s{%s}: +Inf bucket is not the count" % (family.name, series))
    print("\n".join(out))


if __name__ == "__main__":
    main()
