"""Write the published JSON Schema of the job request, or check a request file against the model.

    python -m shared.flows.schema_file --write schemas/job-request.v1.json
    python -m shared.flows.schema_file --check examples/job-request.json

Exit codes: 0 done (or valid), 1 the request is not valid, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.pure.request import RequestInvalid, parse_request, request_hash, schema_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.flows.schema_file")
    parser.add_argument("--write", metavar="PATH", help="write the JSON Schema to PATH")
    parser.add_argument("--check", metavar="REQUEST", help="validate a request file")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        parser.print_help()
        return 2
    if args.write:
        Path(args.write).write_text(schema_text(), encoding="utf-8")
        print(f"wrote {args.write}")
    if args.check:
        try:
            req = parse_request(Path(args.check).read_bytes())
        except RequestInvalid as exc:
            print(f"invalid: {exc}", file=sys.stderr)
            return 1
        print(f"valid: {req.task_count()} tasks, hash {request_hash(req)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
