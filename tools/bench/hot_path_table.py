#!/usr/bin/env python3
"""Prints `make bench-hot-path`'s figures as tables, each against its budget.

Reads what criterion left under target/criterion (the mean of each
benchmark and its 95% confidence interval) and the sample events in
events/ (each body's size). The budget (issue 12): the order sample, API
Gateway event in to DynamoDB item out, at most 50 µs; every other sample
(at most 2.5 KB of body) at most 15 µs. A budget is met when the mean is
within it; the upper end of the interval is shown beside it. Reports; the
exit status is 0 unless the figures are missing.
"""
import json
import os
import sys

CRITERION = os.path.join("target", "criterion")
EVENTS = "events"
ORDER = "revel-order-finalized"
BUDGET_ORDER_US = 50.0
BUDGET_SMALL_US = 15.0
# A group of `make bench-hot-path` takes at most a few minutes.
STALE_AFTER_SECONDS = 600


def estimate(group: str, name: str):
    path = os.path.join(CRITERION, group, name, "new", "estimates.json")
    with open(path) as f:
        mean = json.load(f)["mean"]
    return mean["point_estimate"] / 1000.0, mean["confidence_interval"]["upper_bound"] / 1000.0


def body_len(sample: str) -> int:
    with open(os.path.join(EVENTS, sample + ".json")) as f:
        return len((json.load(f).get("body") or "").encode())


def verdict(mean: float, budget: float) -> str:
    margin = budget - mean
    if margin >= 0:
        return f"met by {margin:.1f} µs"
    return f"missed by {-margin:.1f} µs ({mean / budget:.2f}×)"


def main() -> int:
    group = "receiver_before_first_network_call"
    directory = os.path.join(CRITERION, group)
    if not os.path.isdir(directory):
        print("no criterion figures: run `make bench-hot-path`", file=sys.stderr)
        return 2
    print("| sample | body | mean µs | 95% upper µs | budget µs | verdict |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for sample in sorted(os.listdir(directory)):
        if not os.path.isfile(os.path.join(directory, sample, "new", "estimates.json")):
            continue
        if not os.path.isfile(os.path.join(EVENTS, sample + ".json")):
            continue  # a sample no longer in events/
        mean, upper = estimate(group, sample)
        budget = BUDGET_ORDER_US if sample == ORDER else BUDGET_SMALL_US
        print(f"| {sample} | {body_len(sample):,} B | {mean:.1f} | {upper:.1f} | {budget:.0f} | {verdict(mean, budget)} |")
    for group, title in [("steps", "steps of the order and the customer"), ("archive_codecs", "archive codecs")]:
        directory = os.path.join(CRITERION, group)
        if not os.path.isdir(directory):
            continue
        print()
        print(f"| {title} | mean µs | 95% upper µs |")
        print("| --- | ---: | ---: |")
        found = []
        for root, dirs, files in os.walk(directory):
            if os.path.basename(root) == "new" and "estimates.json" in files:
                when = os.path.getmtime(os.path.join(root, "estimates.json"))
                found.append((os.path.relpath(os.path.dirname(root), directory), when))
        # Benchmarks of earlier runs stay in criterion's directory: only the
        # latest run's are shown.
        newest = max((when for _, when in found), default=0)
        names = [name for name, when in found if when >= newest - STALE_AFTER_SECONDS]
        for name in sorted(names):
            if name.endswith("report") or name == "report":
                continue
            mean, upper = estimate(group, name)
            print(f"| {name} | {mean:.1f} | {upper:.1f} |")
    sizes = os.path.join(CRITERION, "archive_codecs", "sizes.json")
    if os.path.isfile(sizes):
        with open(sizes) as f:
            rows = json.load(f)
        print()
        print("| body | raw | gzip level 1 | snappy | lz4 |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for row in rows:
            print(f"| {row['name']} | {row['raw']:,} B | {row['gzip']:,} B | {row['snappy']:,} B | {row['lz4']:,} B |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
