#!/usr/bin/env python3
"""Reports the deployment package of every function `sam build` produced.

Lambda's package is a zip of `bootstrap`; this zips each one the way `sam
deploy` does (deflate) and prints the raw and zipped sizes against the 3 MB
budget. Reads `.aws-sam/build/template.yaml` to find each function's
directory, so run `make build` first. Exit status 1 if any is over budget.
"""
import io
import os
import sys
import zipfile

BUDGET = 3 * 1024 * 1024
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
    print("| function (arm64, provided.al2023) | bootstrap | zipped | budget 3 MiB |")
    print("| --- | ---: | ---: | --- |")
    over = 0
    for name, raw, zipped in rows:
        ok = zipped <= BUDGET
        over += not ok
        print(f"| {name} | {raw / 1e6:.2f} MB | {zipped / 1e6:.2f} MB | {'ok' if ok else 'OVER'} |")
    largest = max(rows, key=lambda r: r[2])
    print(f"\n{len(rows)} functions; largest zipped: {largest[0]} {largest[2]:,} bytes; over budget: {over}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
