"""How long a big flow takes to load and prove, against plain YAML parsing of the same bytes.

The service loads every flow on start and on each reload, and the issue sets a budget: a
1,000-step flow parsed *and* validated in at most 200 ms. Absolute milliseconds depend on the
machine, so the same run also times ``yaml.safe_load`` of the same files: the ratio says how
much the marks-keeping parse, the typed fields and the policy proof cost on top of the YAML
parser itself, whatever the machine.

Run ``python bench/flowload.py`` (``--help`` for options, ``--profile`` for a cProfile of
one load). Nothing here is a test: it prints figures and exits 0 unless the flow is invalid.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from callflow.language import source
from callflow.language.loader import flow_files, load_flowset
from callflow.language.source import load_text
from callflow.language.validate import validate

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FLOWS = ROOT / "flows"
TARGET_MS = 200.0
TEAMS = 10
# Fixed steps outside the repeated sections: welcome, open-now, closed.
PREAMBLE_STEPS = 3
SECTION_STEPS = 12


def _section(i: int, last: bool) -> dict[str, dict[str, Any]]:
    """Twelve steps that use every kind but notice: a menu whose options lead to speech, audio,
    an hours branch, a connect with its fallback, endings, and on to the next section.

    Every loop passes back through the section's menu, so the proof finds no trap; every step
    can end the call or reach a person, so it finds no dead end.
    """
    p = f"s{i}"
    team = f"team-{i % TEAMS}"
    return {
        f"{p}-menu": {
            "kind": "menu",
            "prompt": (f"Section {i}. To hear about our services, press 1. To hear a recorded "
                       "message, press 2. To speak to someone now, press 3. For more options, "
                       "press 4. To check our opening hours, press 5. To end the call, press 0."),
            "options": {1: f"{p}-info", 2: f"{p}-audio", 3: f"{p}-connect", 4: f"{p}-more",
                        5: f"{p}-hours", 0: f"{p}-bye"},
            "on_no_input": f"{p}-connect",
            "on_invalid": f"{p}-end",
            "timeout": 5,
            "retries": 2,
        },
        f"{p}-info": {"kind": "say", "text": f"Section {i}: we offer confidential advice and "
                      "support to anyone who asks for it.", "next": f"{p}-info2"},
        f"{p}-info2": {"kind": "say", "text": "You can also find information and our webchat on "
                       "our website.", "voice": "Polly.Brian", "next": f"{p}-back"},
        f"{p}-back": {"kind": "goto", "next": f"{p}-menu"},
        f"{p}-audio": {"kind": "play", "url": f"https://audio.example.org/section-{i}.mp3",
                       "next": f"{p}-menu"},
        f"{p}-connect": {"kind": "connect", "team": team, "timeout": 25,
                         "whisper": "{helpline} call from section " + str(i) +
                         ". Press 1 to accept.", "on_no_answer": f"{p}-busy"},
        f"{p}-busy": {"kind": "message", "text": "Sorry, everyone is busy helping other "
                      "callers. Please try again shortly. If you are in immediate danger, "
                      "call 999."},
        f"{p}-more": {"kind": "goto", "next": "s0-menu" if last else f"s{i + 1}-menu"},
        f"{p}-hours": {"kind": "hours", "open": f"{p}-connect", "closed": f"{p}-closed"},
        f"{p}-closed": {"kind": "message", "text": "We are closed right now. If you are in "
                        "immediate danger, call 999."},
        f"{p}-bye": {"kind": "message", "text": "Thank you for calling. Goodbye."},
        f"{p}-end": {"kind": "hangup"},
    }


def big_flow(steps: int) -> dict[str, Any]:
    """A valid flow of exactly ``steps`` steps: a notice first, then chained menu sections,
    padded with a chain of ``say`` steps between the notice and the hours branch."""
    sections, padding = divmod(steps - PREAMBLE_STEPS, SECTION_STEPS)
    if sections < 1:
        raise SystemExit(f"--steps must be at least {PREAMBLE_STEPS + SECTION_STEPS}")
    chain = [f"intro-{n}" for n in range(padding)]
    body: dict[str, dict[str, Any]] = {
        "welcome": {"kind": "notice", "next": chain[0] if chain else "open-now"},
    }
    for n, name in enumerate(chain):
        body[name] = {"kind": "say", "text": f"Introduction, part {n + 1}.",
                      "next": chain[n + 1] if n + 1 < len(chain) else "open-now"}
    body["open-now"] = {"kind": "hours", "open": "s0-menu", "closed": "closed"}
    body["closed"] = {"kind": "message", "text": "{helpline} is closed right now. If you are "
                      "in immediate danger, call 999."}
    for i in range(sections):
        body.update(_section(i, last=i == sections - 1))
    assert len(body) == steps, (len(body), steps)
    return {
        "helpline": "Benchmark Line",
        "numbers": ["+441632960099"],
        "timezone": "Europe/London",
        "voice": "Polly.Amy",
        "language": "en-GB",
        "hours": {day: "09:00-17:00" for day in
                  ("monday", "tuesday", "wednesday", "thursday", "friday")},
        "closures": ["2026-12-25", "2026-12-26", "2027-01-01"],
        "degraded": {"team": "team-0"},
        "start": "welcome",
        "steps": body,
    }


def teams() -> dict[str, Any]:
    """Teams for the big flow, on fictional numbers (Ofcom's drama range)."""
    return {"teams": {f"team-{t}": {"workers": [
        {"name": f"Worker {t}-{w}", "number": f"+4477009{t:03d}{w:02d}"} for w in range(3)
    ]} for t in range(TEAMS)}}


def write_flowset(directory: Path, steps: int) -> Path:
    """Write the big flow and its teams as an admin would, block style, keys in order."""
    flow = directory / "benchmark-line.yaml"
    flow.write_text(yaml.safe_dump(big_flow(steps), sort_keys=False, width=100,
                                   allow_unicode=True), encoding="utf-8")
    (directory / "teams.yaml").write_text(yaml.safe_dump(teams(), sort_keys=False),
                                          encoding="utf-8")
    return flow


def interleaved(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Milliseconds of each function per run, taking turns within each run.

    Taking turns means a noisy moment on a shared machine hits every variant of the same run
    alike, so the per-run ratios hold even when the absolute times wander. One untimed warm-up
    call of each comes first.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            started = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - started) * 1000)
    return times


def ratio(times: dict[str, list[float]], top: str, bottom: str) -> float:
    """The median of the per-run ratios (robust to a run that was slow for every variant)."""
    return statistics.median(a / b for a, b in zip(times[top], times[bottom], strict=True))


def safe_load_all(paths: list[Path]) -> Callable[[], object]:
    """The baseline: plain ``yaml.safe_load`` of every file the loader reads, bytes read too."""
    return lambda: [yaml.safe_load(p.read_bytes().decode("utf-8")) for p in paths]


def _parse(text: str) -> object:
    """The parse alone: every event of the parser ``callflow.language.source`` uses (libyaml when
    available), which ``source`` builds the values from."""
    loader = source.LOADER(text)
    try:
        while loader.check_event():
            loader.get_event()
    finally:
        loader.dispose()


def _load_pure_python(directory: Path) -> object:
    """What ``load_flowset`` takes with PyYAML's pure-Python parser (no libyaml)."""
    with mock.patch.object(source, "LOADER", yaml.SafeLoader):
        return load_flowset(directory)


def report(label: str, directory: Path, runs: int, target: float | None,
           breakdown: bool) -> None:
    """Time one folder's load against plain YAML parsing of its files, and for the big flow
    split the load into its parts, so a miss of the target names its cause."""
    flowset = load_flowset(directory)  # also proves the generated flow is valid
    for warning in flowset.warnings:
        print(f"  warning: {warning}", file=sys.stderr)
    steps = sum(len(f.steps) for f in flowset.flows.values())
    paths = flow_files(directory)
    texts = [(p.read_text(encoding="utf-8"), str(p)) for p in paths]
    fns: dict[str, Callable[[], object]] = {
        "load": lambda: load_flowset(directory),
        "safe_load": safe_load_all(paths),
    }
    if breakdown:
        fns.update({
            "parse": lambda: [_parse(text) for text, _ in texts],
            "load_text": lambda: [load_text(text, path) for text, path in texts],
            "validate": lambda: validate(flowset),
            "pure": lambda: _load_pure_python(directory),
        })
    times = interleaved(fns, runs)
    med = {name: statistics.median(values) for name, values in times.items()}
    load = med["load"]
    print(f"{label}: {len(flowset.flows)} flow(s), {steps} steps, {len(flowset.teams)} teams")
    print(f"  load_flowset    median {load:8.2f} ms  (min {min(times['load']):.2f}, "
          f"max {max(times['load']):.2f}, {runs} runs)")
    print(f"  yaml.safe_load  median {med['safe_load']:8.2f} ms  (baseline: the same files)")
    print(f"  ratio load_flowset / safe_load: {ratio(times, 'load', 'safe_load'):.2f}x")
    if target is not None:
        verdict = "within" if load <= target else "OVER"
        print(f"  target {target:.0f} ms: {verdict} ({load / target:.2f} of the budget)")
    if not breakdown:
        return
    # Fastest runs for the split: the work is deterministic, so noise only ever adds time.
    best = {name: min(values) for name, values in times.items()}
    parser = "libyaml" if source.LOADER is not yaml.SafeLoader else "pure-Python"
    parts = [(f"YAML parse ({parser} parser's events)", best["parse"]),
             ("values with file:line:col (source._document)", best["load_text"] - best["parse"]),
             ("validate(): the policy proof over the graph", best["validate"]),
             ("the rest: policy key scan, typed fields, teams",
              best["load"] - best["load_text"] - best["validate"])]
    print(f"  where one load's time goes (fastest runs, load {best['load']:.1f} ms):")
    for name, ms in parts:
        print(f"    {name:<48} {ms:7.1f} ms {ms / best['load']:5.0%}")
    same = _load_pure_python(directory).flows == flowset.flows
    print(f"  with PyYAML's pure-Python parser instead: {med['pure']:.2f} ms "
          f"({ratio(times, 'pure', 'load'):.1f}x slower), identical flows: {same}")


def profile(directory: Path, top: int) -> None:
    """Where one load's time goes, by own time and by cumulative time."""
    load_flowset(directory)
    profiler = cProfile.Profile()
    profiler.enable()
    load_flowset(directory)
    profiler.disable()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(top)
        print(f"\n--- cProfile of one load, by {order} ---")
        print(out.getvalue().split("\n\n", 1)[-1].rstrip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps in the generated flow")
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each (median kept)")
    parser.add_argument("--target-ms", type=float, default=TARGET_MS)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one load")
    parser.add_argument("--top", type=int, default=25, help="rows of the profile to print")
    parser.add_argument("--keep", type=Path, help="write the generated flow here and keep it")
    args = parser.parse_args(argv)

    print(f"Python {sys.version.split()[0]}, PyYAML {yaml.__version__} "
          f"(libyaml available: {yaml.__with_libyaml__})")
    with tempfile.TemporaryDirectory(prefix="callflow-bench-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        flow = write_flowset(directory, args.steps)
        print(f"generated {flow.name}: {flow.stat().st_size / 1024:.0f} KiB")
        report(f"generated flow ({args.steps} steps)", directory, args.runs, args.target_ms,
               breakdown=True)
        report("shipped flows/", SHIPPED_FLOWS, args.runs, None, breakdown=False)
        if args.profile:
            profile(directory, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
