#!/usr/bin/env python3
"""Reads an Autobahn fuzzingclient report (index.json) and prints a one-line JSON summary.

Usage: verdict.py INDEX_JSON AGENT MIN_CASES

Exit status 0 only when the report exists, at least MIN_CASES cases ran, and none FAILED (in its
behaviour or its close behaviour), was UNIMPLEMENTED (permessage-deflate, 12.* and 13.*, is
implemented) or passed only NON-STRICT: a run that stopped early cannot pass.
"""
import collections
import json
import sys


def case_key(case):
    return [int(part) for part in case.split(".")]


def main():
    path, agent, min_cases = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        with open(path) as report:
            results = json.load(report).get(agent, {})
    except (OSError, ValueError) as error:
        print(json.dumps({"agent": agent, "error": "no report: %s" % error}))
        return 2

    def cases_where(predicate):
        return sorted((c for c, r in results.items() if predicate(r)), key=case_key)

    failed = cases_where(lambda r: "FAILED" in (r["behavior"], r["behaviorClose"]))
    unimplemented = cases_where(lambda r: r["behavior"] == "UNIMPLEMENTED")
    summary = {
        "agent": agent,
        "cases": len(results),
        "expected_at_least": min_cases,
        "behavior": dict(collections.Counter(r["behavior"] for r in results.values())),
        "behavior_close": dict(collections.Counter(r["behaviorClose"] for r in results.values())),
        "failed": failed,
        "non_strict": cases_where(lambda r: r["behavior"] == "NON-STRICT"),
        "unimplemented_by_group": dict(collections.Counter(c.split(".")[0] for c in unimplemented)),
    }
    print(json.dumps(summary, sort_keys=True))
    if len(results) < min_cases:
        print("autobahn: only %d of at least %d cases ran" % (len(results), min_cases), file=sys.stderr)
        return 1
    if unimplemented or summary["non_strict"]:
        print("autobahn: cases UNIMPLEMENTED or NON-STRICT", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
