#!/usr/bin/env python3
"""Checks a running SCIM 2.0 service with scim2-tester, an independent protocol checker.

scim2-tester (PyPI, by python-scim) reads the service's discovery endpoints
(/ServiceProviderConfig, /ResourceTypes, /Schemas), builds its models of the
resources from what /Schemas publishes, then creates, reads, lists, replaces,
patches and deletes resources of every published resource type with random
values, checking each answer against RFC 7643 and RFC 7644.

This script runs it against BASE_URL (e.g. http://127.0.0.1:8080/scim/v2) with
"Authorization: Bearer TOKEN" on every request, prints one line per result
(status, check, resource type, reason), then a closing line
"scim2-tester: N passed, M failed, K skipped", and exits 1 when any result is
an error (ERROR or CRITICAL), or when no check passed at all.

It needs scim2-tester with an HTTP engine in the Python that runs it:
    pip install "scim2-tester[httpx2]==0.5.2" "scim2-client[httpx2]==0.13.2" \
        "scim2-models==0.12.3" "httpx2==2.17.0"

Usage: scim-check.py [options] BASE_URL TOKEN
Exit codes: 0 every check passed or was skipped, 1 a check failed,
2 the checker could not be run (bad arguments, missing packages).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from typing import Any, TextIO

try:
    import httpx2
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import CheckResult, Status, check_server, get_all_available_tags
except ImportError as exc:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        f"scim-check: {exc}; install the checker with\n"
        '  pip install "scim2-tester[httpx2]==0.5.2" "scim2-client[httpx2]==0.13.2" '
        '"scim2-models==0.12.3" "httpx2==2.17.0"\n'
    )
    sys.exit(2)

# How the statuses scim2-tester reports are counted. ERROR and CRITICAL break a
# MUST of the RFCs; DEVIATION departs from a SHOULD and is shown but not failed.
FAILED = {Status.ERROR, Status.CRITICAL}
SKIPPED = {Status.SKIPPED}
LABELS = {
    Status.SUCCESS: "ok",
    Status.COMPLIANT: "ok",
    Status.ACCEPTABLE: "ok",
    Status.DEVIATION: "warn",
    Status.ERROR: "FAIL",
    Status.CRITICAL: "FAIL",
    Status.SKIPPED: "skip",
}
REASON_WIDTH = 300
SCIM_MEDIA_TYPE = "application/scim+json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scim-check.py",
        description="Run the scim2-tester SCIM 2.0 protocol checker against a running service.",
    )
    parser.add_argument("base_url", help="the SCIM base URL, e.g. http://127.0.0.1:8080/scim/v2")
    parser.add_argument("token", help="the bearer token sent as 'Authorization: Bearer TOKEN'")
    parser.add_argument(
        "--resource-type",
        action="append",
        dest="resource_types",
        metavar="NAME",
        help="check only this resource type (e.g. User, Group); can be repeated",
    )
    parser.add_argument(
        "--include-tag",
        action="append",
        dest="include_tags",
        metavar="TAG",
        help="run only the checks with this tag (e.g. discovery, crud, crud:read, patch); "
        "can be repeated",
    )
    parser.add_argument(
        "--exclude-tag",
        action="append",
        dest="exclude_tags",
        metavar="TAG",
        help="skip the checks with this tag (e.g. patch:remove, crud:read:attributes); "
        "can be repeated",
    )
    parser.add_argument(
        "--media-type",
        choices=("scim", "json"),
        default="scim",
        help="the Content-Type and Accept of the requests: application/scim+json (default, "
        "as identity providers send) or application/json (scim2-client's own default)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)"
    )
    parser.add_argument(
        "--trace",
        metavar="FILE",
        help="write every HTTP exchange (method, URL, request and response bodies) "
        "to FILE as JSON lines",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print the full reason and the debugging data of the failed checks",
    )
    parser.add_argument(
        "--list-tags", action="store_true", help="print the tags scim2-tester knows and exit"
    )
    # --list-tags needs neither positional argument.
    if "--list-tags" in argv:
        print("\n".join(get_all_available_tags()))
        sys.exit(0)
    return parser.parse_args(argv)


def scim_media_type(request: httpx2.Request) -> None:
    """Sends application/scim+json (RFC 7644 section 8.1) instead of httpx2's application/json."""
    request.headers["Accept"] = SCIM_MEDIA_TYPE
    if request.content:
        request.headers["Content-Type"] = SCIM_MEDIA_TYPE


class Tracer:
    """Writes each HTTP exchange the checker makes as one JSON line."""

    def __init__(self, out: TextIO):
        self.out = out

    def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        response.read()
        entry = {
            "method": request.method,
            "url": str(request.url),
            "request_headers": {
                k: v for k, v in request.headers.items() if k.lower() != "authorization"
            },
            "request_body": _decode(request.content),
            "status": response.status_code,
            "response_headers": dict(response.headers.items()),
            "response_body": _decode(response.content),
        }
        self.out.write(json.dumps(entry) + "\n")
        self.out.flush()


def _decode(body: bytes) -> Any:
    if not body:
        return None
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def one_line(text: str | None, width: int = REASON_WIDTH) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def describe(result: CheckResult) -> str:
    label = LABELS.get(result.status, result.status.name)
    name = result.title or "?"
    if result.resource_type:
        name = f"{name}[{result.resource_type}]"
    line = f"{label:<4} {name}"
    if result.status in FAILED or result.status in SKIPPED or result.status == Status.DEVIATION:
        line += f" - {one_line(result.reason) or result.status.name}"
    return line


def print_details(result: CheckResult) -> None:
    print(f"     reason: {result.reason}")
    if result.data is not None:
        print(f"     data: {result.data!r}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    base_url = args.base_url.rstrip("/")

    trace_file = open(args.trace, "w", encoding="utf-8") if args.trace else None
    hooks: dict[str, list[Any]] = {"request": [], "response": []}
    if args.media_type == "scim":
        hooks["request"].append(scim_media_type)
    if trace_file:
        hooks["response"].append(Tracer(trace_file).on_response)
    http = httpx2.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {args.token}"},
        timeout=args.timeout,
        # Proxy variables of the environment must not reroute a local service.
        trust_env=False,
        event_hooks=hooks,
    )
    scim = SyncSCIMClient(http)

    started = time.monotonic()
    try:
        results = check_server(
            scim,
            raise_exceptions=False,
            include_tags=set(args.include_tags) if args.include_tags else None,
            exclude_tags=set(args.exclude_tags) if args.exclude_tags else None,
            resource_types=args.resource_types,
        )
    except Exception as exc:  # the checker itself broke, not one of its checks
        print(f"scim2-tester could not run against {base_url}: {exc!r}", file=sys.stderr)
        print("scim2-tester: 0 passed, 1 failed, 0 skipped")
        return 1
    finally:
        http.close()
        if trace_file:
            trace_file.close()

    counts: Counter[str] = Counter()
    for result in results:
        print(describe(result))
        if result.status in FAILED:
            counts["failed"] += 1
            if args.verbose:
                print_details(result)
        elif result.status in SKIPPED:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
            if result.status == Status.DEVIATION:
                counts["deviations"] += 1

    elapsed = time.monotonic() - started
    if counts["deviations"]:
        print(f"({counts['deviations']} passed with a deviation from a SHOULD of the RFCs)")
    print(f"(checked {base_url} in {elapsed:.1f}s)")
    print(
        f"scim2-tester: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped"
    )
    if counts["failed"]:
        return 1
    if not counts["passed"]:
        print("scim-check: no check passed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
