"""`make bench`: every benchmark, each printing its figures against a baseline measured in the same run."""

from __future__ import annotations

import importlib
import json
import sys

BENCHMARKS = ["bench.bench_batch", "bench.bench_orchestrator", "bench.bench_servicebus", "bench.bench_collect",
              "bench.bench_collection", "bench.bench_download"]


def main(names: list[str]) -> int:
    selected = [b for b in BENCHMARKS if not names or any(n in b for n in names)]
    results, failed = {}, []
    for name in selected:
        print(f"== {name}", flush=True)
        try:
            results[name] = importlib.import_module(name).run()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"{name} failed: {exc}", file=sys.stderr)
            failed.append(name)
    print(json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
