#!/usr/bin/env python3
"""Reports the deployment package of every function `sam build` produced.

Lambda's package is a zip of `bootstrap`; this zips each one the way `sam
deploy` does (deflate) and prints the raw and zipped sizes against its
budget: 2.5 MB (2,500,000 bytes) for a receiver, whose package is its cold
start, 3 MiB for the events processor, the jobs worker and the scheduler.
Reads `.aws-sam/build/template.yaml` to find each function's
directory, so run `make build` first. Exit status 1 if any is over budget.
"""
import io
import os
import sys
import zipfile

RECEIVER_BUDGET = 2_500_000
OTHER_BUDGET = 3 * 1024 * 1024
NOT_RECEIVERS = {"EventsProcessorFunction", "JobsWorkerFunction", "RevelSchedulerFunction"}


def budget_of(name: str) -> int:
    return OTHER_BUDGET if name in NOT_RECEIVERS else RECEIVER_BUDGET
BUILD = os.path.join(".aws-sam", "build")


def zipped_size(path: str) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.write(path, "bootstrap")
    return len(buffer.getvalue())


def main() -> int:
    if not os.path.isdir(BUILD):
        print("no .aws-sam/build: run `make build` first", file=sys.stderr)
        return 2
    rows = []
    for name in sorted(os.listdir(BUILD)):
        bootstrap = os.path.join(BUILD, name, "bootstrap")
        if os.path.isfile(bootstrap):
            rows.append((name, os.path.getsize(bootstrap), zipped_size(bootstrap)))
    if not rows:
        print("no bootstrap found under .aws-sam/build", file=sys.stderr)
        return 2
    print("| function (arm64, provided.al2023) | bootstrap | zipped | budget | verdict |")
    print("| --- | ---: | ---: | ---: | --- |")
    over = 0
    for name, raw, zipped in rows:
        budget = budget_of(name)
        ok = zipped <= budget
        over += not ok
        margin = f"met by {budget - zipped:,} B" if ok else f"OVER by {zipped - budget:,} B"
        print(f"| {name} | {raw:,} B | {zipped:,} B | {budget:,} B | {margin} |")
    largest = max(rows, key=lambda r: r[2])
    print(f"\n{len(rows)} functions; largest zipped: {largest[0]} {largest[2]:,} bytes; over budget: {over}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
