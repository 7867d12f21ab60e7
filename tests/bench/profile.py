#!/usr/bin/python3
"""Profile mbgate under the bench workload (not part of `make bench`).

    tests/bench/run.sh must have built build/bench/{countsub,pubbench,storebench} once.
    /usr/bin/python3 tests/bench/profile.py [--rate 8000] [--layout tag] [--secs 10]
                                            [--tool perf|strace|both] [--drain N]

Starts mosquitto, the counting subscriber, the simulators and mbgate at the
given offered load (20 devices, 200 ms polls; --drain N pre-fills the outbox
with N samples first), then records the agent for --secs seconds:
  perf:   perf record -e cpu-clock -g (software clock: this VM has no PMU),
          report in build/bench/profile/perf-*.txt (flat, by symbol and by DSO)
  strace: strace -c -f (syscall counts per sample), build/bench/profile/strace-*.txt
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import (PROCS, RUN, NDEV, Agent, Broker, Sims, Sub, agent_config,  # noqa: E402
                   cpu_ticks, storebench, CLK)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=8000)
    ap.add_argument("--layout", default="tag")
    ap.add_argument("--secs", type=float, default=10)
    ap.add_argument("--tool", default="both", help="perf | strace | syscalls | both (perf + syscalls)")
    ap.add_argument("--drain", type=int, default=0)
    ap.add_argument("--tags", type=int, default=0, help="tags per device (overrides --rate, poll 1000 ms)")
    ap.add_argument("--bin", help="the mbgate to profile (default build/mbgate)")
    ap.add_argument("--name", default="", help="suffix for the report files")
    args = ap.parse_args()
    out = bench.OUT / "profile"
    out.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    if args.bin:
        bench.MBGATE = Path(args.bin).resolve()
    tag = f"{args.layout}-{int(args.rate)}" + (f"-{args.name}" if args.name else "") + (f"-drain{args.drain}" if args.drain else "") + \
        (f"-t{args.tags}" if args.tags else "")
    agent_pid = None
    try:
        broker = Broker()
        sub = Sub(broker.port, [f"{bench.PREFIX}/+/+", f"{bench.PREFIX}/+"])
        sims = Sims()
        if args.tags:
            ntags, poll = args.tags, 1000
        else:
            poll = 200
            ntags = max(1, round(args.rate * poll / 1000 / NDEV))
        conf, state = agent_config(broker.port, sims, ntags, poll, args.layout)
        if args.drain:
            print("fill:", storebench(state, args.drain, ntags=ntags))
        a = Agent(conf)
        agent_pid = a.p.pid
        a.wait_connected(120)
        time.sleep(3)
        s0, c0 = sub.stats(), a.cpu()
        procs = []
        if args.tool in ("perf", "both"):
            procs.append(subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2000",
                                           "--call-graph", "dwarf,16384",
                                           "-o", str(out / f"perf-{tag}.data"), "-p", str(a.p.pid), "--",
                                           "sleep", str(args.secs)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if args.tool in ("strace", "both"):
            procs.append(subprocess.Popen(["timeout", "-s", "INT", str(args.secs), "strace", "-c", "-f",
                                           "-o", str(out / f"strace-{tag}.txt"), "-p", str(a.p.pid)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if args.tool in ("syscalls", "both"):
            evs = ",".join(f"syscalls:sys_enter_{x}" for x in
                           ("poll", "read", "write", "sendto", "recvfrom", "pselect6", "pwrite64",
                            "pread64", "fcntl", "futex", "fdatasync", "newfstatat", "clock_nanosleep",
                            "setsockopt"))
            procs.append(subprocess.Popen(["perf", "stat", "--per-thread", "-e", evs, "-x", ",",
                                           "-o", str(out / f"syscalls-{tag}.csv"), "-p", str(a.p.pid),
                                           "--", "sleep", str(args.secs)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for p in procs:
            p.wait(args.secs + 60)
        s1, c1 = sub.stats(), a.cpu()
        n = s1["samples"] - s0["samples"]
        print(f"{n} samples in {s1['t'] - s0['t']:.1f} s = {n / (s1['t'] - s0['t']):.0f}/s, "
              f"agent {(c1 - c0) / CLK:.2f} CPU-s = {(c1 - c0) / CLK / max(1, n) * 1e6:.1f} CPU-s/M "
              f"(under the profiler)")
        a.stop()
        sub.stop()
        sims.stop()
        broker.stop()
    finally:
        PROCS.stop_all()
    if args.tool in ("perf", "both"):
        data = out / f"perf-{tag}.data"
        reports = {
            "sym": ["--no-children", "--sort", "dso,sym", "-g", "none", "--percent-limit", "0.5"],
            "dso": ["--no-children", "--sort", "dso", "-g", "none"],
            "threads": ["--no-children", "--sort", "pid", "-g", "none"],
            # inclusive time by function: what the syscalls are made for
            "children": ["--children", "--sort", "sym", "-g", "none", "--percent-limit", "1.5"],
            "main-children": ["--children", "--sort", "sym", "-g", "none", "--percent-limit", "1.5",
                              "--tid", str(agent_pid)],
        }
        for name, opts in reports.items():
            r = subprocess.run(["perf", "report", "-i", str(data), "--stdio"] + opts,
                               capture_output=True, text=True)
            (out / f"perf-{tag}-{name}.txt").write_text(r.stdout)
        print("perf reports:", out / f"perf-{tag}-sym.txt", out / f"perf-{tag}-children.txt")
    if args.tool in ("strace",):
        print("strace:", out / f"strace-{tag}.txt")
    if args.tool in ("syscalls", "both"):
        # per thread and syscall: calls per delivered sample
        rows = {}
        for line in (out / f"syscalls-{tag}.csv").read_text().splitlines():
            f = line.split(",")
            if len(f) < 4 or not f[1].strip().isdigit():
                continue
            thread, count, ev = f[0], int(f[1]), f[3].replace("syscalls:sys_enter_", "")
            key = "main" if thread.endswith(f"-{agent_pid}") else "links"
            rows.setdefault(key, {}).setdefault(ev, 0)
            rows[key][ev] += count
        lines = [f"syscalls per delivered sample ({n} samples):"]
        for key, evs in rows.items():
            tot = sum(evs.values())
            lines.append(f"  {key}: {tot / max(1, n):.2f} total: " + ", ".join(
                f"{e} {c / max(1, n):.3f}" for e, c in sorted(evs.items(), key=lambda x: -x[1]) if c))
        text = "\n".join(lines)
        (out / f"syscalls-{tag}.txt").write_text(text + "\n")
        print(text)


if __name__ == "__main__":
    main()
