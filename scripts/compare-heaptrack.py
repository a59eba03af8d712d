"""Times memscope's analyzer against heaptrack_print on the same program.

    python3 scripts/compare-heaptrack.py [--runs N] [--allocs N] [--threads N] [--mix small|default] [--out-dir DIR]

Records the allocbench workload of `scripts/measure-recorder.sh` (the
release build of `benches/recorder`, built first) once under memscope's
recorder, with stacks as by default, and once under heaptrack, then times
two analyses of the same events with each tool, whole process (start,
reading the trace, output to /dev/null, exit), the two tools taking
turns:

* leaks: `memscope-analyze TRACE --sql queries/leaks.sql` against
  `heaptrack_print --print-peaks 0 --print-allocators 0 --print-temporary 0
  --print-leaks 1 FILE`;
* report: `memscope-analyze report TRACE` against `heaptrack_print FILE`
  (its default report: peaks, top allocators and temporary allocations).

It prints the median wall time and CPU time (user + system) and the
highest peak RSS of each, events analysed per second of wall time (the workload's allocation,
deallocation and reallocation events, the same for both tools), and the
median of the per-run ratios of memscope's rate to heaptrack_print's.
Needs heaptrack (Debian: `apt install heaptrack`) on the PATH.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from turns import alternate

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"


class Run:
    """Wall and CPU seconds and peak RSS (bytes) of one process."""

    def __init__(self, wall: float, cpu: float, rss: int):
        self.wall, self.cpu, self.rss = wall, cpu, rss


def timed(command: list) -> Run:
    """Runs `command` with its output to /dev/null and times it; exits
    with its error output when it fails."""
    # Error output to a file, not a pipe: the child never blocks on it.
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr) as child:
            # wait4 gives this child's own resource use, not all children's.
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.perf_counter() - start
            child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            stderr.seek(0)
            errors = stderr.read().decode(errors="replace")
            sys.exit(f"{' '.join(map(str, command))} failed ({child.returncode}):\n{errors}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


def record(command: list) -> int:
    """Runs the workload `command` and returns the events it made; exits
    with its output when it fails."""
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(map(str, command))} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    m = re.search(r"events=(\d+)", out.stdout)
    if not m:
        sys.exit(f"no event count from {command[0]}: {out.stdout}{out.stderr}")
    return int(m.group(1))


def heaptrack_file(prefix: Path) -> Path:
    """The file heaptrack wrote for `-o prefix`: it appends `.zst` or `.gz`."""
    for suffix in (".zst", ".gz"):
        if prefix.with_name(prefix.name + suffix).exists():
            return prefix.with_name(prefix.name + suffix)
    sys.exit(f"heaptrack wrote no {prefix}.zst nor {prefix}.gz")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each tool (default 5)")
    parser.add_argument(
        "--allocs", type=int, default=5_000_000, help="allocations per thread of the workload"
    )
    parser.add_argument("--threads", type=int, default=1, help="threads of the workload")
    parser.add_argument("--mix", choices=["small", "default"], default="default")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "target" / "compare-heaptrack")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for tool in ("heaptrack", "heaptrack_print"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on the PATH: install it (Debian: apt install heaptrack)")

    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "memscope-allocbench", "--bins"],
        check=True,
        cwd=ROOT,
    )
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "memscope-analyzer", "--bin", "memscope-analyze"],
        check=True,
        cwd=ROOT,
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    workload = ["--threads", str(args.threads), "--allocs", str(args.allocs), "--mix", args.mix]
    trace = args.out_dir / "memscope.trace"
    prefix = args.out_dir / "heaptrack"
    for old in (trace, prefix.with_name("heaptrack.zst"), prefix.with_name("heaptrack.gz")):
        old.unlink(missing_ok=True)
    events = record([RELEASE / "allocbench-memscope", *workload, "--out", trace])
    heaptrack_events = record(
        ["heaptrack", "-o", prefix, RELEASE / "allocbench-system", *workload, "--out", os.devnull]
    )
    if heaptrack_events != events:
        sys.exit(f"the two recordings made {events} and {heaptrack_events} events")
    profile = heaptrack_file(prefix)

    analyze = RELEASE / "memscope-analyze"
    print(
        f"allocbench --mix {args.mix} --threads {args.threads} --allocs {args.allocs}: "
        f"{events:,} events; memscope trace {trace.stat().st_size / 1e6:,.0f} MB, "
        f"heaptrack file {profile.stat().st_size / 1e6:,.0f} MB; {args.runs} runs each, taking turns"
    )
    print()
    print(
        "| analysis | tool | wall (median) | events/s | CPU (median) | peak RSS | memscope ÷ heaptrack_print, events/s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    quiet = ["--print-peaks", "0", "--print-allocators", "0", "--print-temporary", "0"]
    analyses = [
        (
            "leaks",
            [analyze, trace, "--quiet", "--sql", ROOT / "queries" / "leaks.sql"],
            ["heaptrack_print", *quiet, "--print-leaks", "1", profile],
        ),
        ("report", [analyze, "report", trace, "--quiet"], ["heaptrack_print", profile]),
    ]
    for name, ours, theirs in analyses:
        runs = {"memscope-analyze": [], "heaptrack_print": []}
        alternate(
            args.runs,
            lambda: runs["memscope-analyze"].append(timed(ours)),
            lambda: runs["heaptrack_print"].append(timed(theirs)),
        )
        # Per turn: memscope's rate over heaptrack_print's, i.e. their
        # time over ours.
        ratio = statistics.median(
            h.wall / m.wall for m, h in zip(runs["memscope-analyze"], runs["heaptrack_print"])
        )
        for tool, measured in runs.items():
            wall = statistics.median(r.wall for r in measured)
            cpu = statistics.median(r.cpu for r in measured)
            rss = max(r.rss for r in measured)
            cell = f"**{ratio:.2f}**" if tool == "memscope-analyze" else ""
            print(
                f"| {name} | {tool} | {wall:.2f} s | {events / wall / 1e6:.1f} M | "
                f"{cpu:.2f} s | {rss / 2**20:,.0f} MiB | {cell} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
