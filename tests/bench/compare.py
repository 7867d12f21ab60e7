#!/usr/bin/python3
"""A/B: two mbgate binaries on the same workload, interleaved (not part of `make bench`).

    /usr/bin/python3 tests/bench/compare.py A_BIN B_BIN [--rate R]... [--reps 3]
                     [--layout tag] [--drain N] [--ladder]

For each offered rate: A, B, A, B, ... (reps each), printing delivered
samples/s, agent CPU-s per million samples (whole process and main thread),
pending slope and sustained. --ladder: per binary, the highest sustained rate
on a x1.15 ladder starting at the first --rate. --drain N: drain N pre-filled
samples with 2,000/s live (drain rate, live p99). Medians at the end.
Build B with tests/bench/patched.sh.
"""
import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import PROCS, RUN, Broker, Sims, Sub, run_agent_load, run_broker_limit  # noqa: E402


def use(binary):
    bench.MBGATE = Path(binary).resolve()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rate", type=float, action="append")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--layout", default="tag")
    ap.add_argument("--ladder", action="store_true")
    ap.add_argument("--drain", type=int, default=0)
    args = ap.parse_args()
    RUN.mkdir(parents=True, exist_ok=True)
    bins = {"A": args.a, "B": args.b}
    res = {}
    try:
        broker = Broker()
        sub = Sub(broker.port, [f"{bench.PREFIX}/+/+", f"{bench.PREFIX}/+"])
        sims = Sims()
        print("load:", bench.uptime(), flush=True)
        if args.drain:
            for i in range(args.reps):
                for k, b in bins.items():
                    use(b)
                    r = bench.drain_once(broker, sub, sims, args.layout, args.drain)
                    r["p99"] = r["lat_p99_ms"]
                    res.setdefault(("drain", k), []).append(r)
        for rate in args.rate or []:
            if args.ladder:
                for i in range(args.reps):
                    base = run_broker_limit(broker, sub)
                    res.setdefault(("broker", 0), []).append({"rate": base["rate"]})
                    for k, b in bins.items():
                        use(b)
                        f, best = rate, 0
                        while True:
                            r = run_agent_load(broker, sub, sims, rate=f, layout=args.layout, label=k)
                            if not r["sustained"]:
                                break
                            best = r["rate"]
                            f *= 1.15
                        res.setdefault(("ladder", k), []).append({"rate": best})
                        print(f"ladder {k}: highest sustained {best:.0f}/s (broker {base['rate']:.0f})", flush=True)
                continue
            for i in range(args.reps):
                for k, b in bins.items():
                    use(b)
                    r = run_agent_load(broker, sub, sims, rate=rate, layout=args.layout, label=k)
                    r["main_per_M"] = r["cpu_s"]["agent_main"] / max(1, r["samples"]) * 1e6
                    res.setdefault((rate, k), []).append(r)
        sub.stop()
        sims.stop()
        broker.stop()
    finally:
        PROCS.stop_all()
    print("\nmedians (load now: %s)" % bench.uptime())
    for (rate, k), rs in sorted(res.items(), key=lambda x: (str(x[0][0]), x[0][1])):
        keys = [x for x in ("rate", "cpu_per_M", "main_per_M", "pending_slope", "p99", "insert_rate") if x in rs[0]]
        line = ", ".join(f"{x} {statistics.median(r[x] for r in rs):.1f}" for x in keys)
        sus = sum(r.get("sustained", True) for r in rs)
        print(f"  {rate} {k} ({bins.get(k, 'pubbench')}): {line}; sustained {sus}/{len(rs)}")


if __name__ == "__main__":
    main()
