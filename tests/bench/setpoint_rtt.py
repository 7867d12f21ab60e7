#!/usr/bin/python3
"""Setpoint round trip: MQTT command -> Modbus write -> read-back -> result.

    setpoint_rtt.py --port BROKER_PORT --topic P/D/T/set [-n 1000]

Sends n commands one after the other ({"v":N,"id":"rN","ts":now}, QoS 1) and
times each from just before the publish to the arrival of its result on
P/D/T/set/result. Prints one JSON line: n, ok, p50_ms, p99_ms, max_ms,
mean_ms, errors (first few error codes). Python paho is fast enough at one
command in flight (the round trip, not the client, is what is measured).
"""
import argparse
import json
import socket
import threading
import time

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args()

    got = {}
    cond = threading.Condition()
    subscribed = threading.Event()

    def on_connect(c, u, f, rc):
        c.subscribe(args.topic + "/result", qos=1)

    def on_subscribe(c, u, mid, granted):
        subscribed.set()

    def on_message(c, u, m):
        t = time.perf_counter()
        try:
            d = json.loads(m.payload)
        except ValueError:
            return
        with cond:
            got[d.get("id")] = (t, d)
            cond.notify_all()

    c = mqtt.Client(client_id=f"bench-sp-{time.time_ns()}", clean_session=True)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect("127.0.0.1", args.port, 30)
    # paho leaves Nagle on: without this every command waits ~40 ms for the
    # broker's delayed ACK, which would be the client's latency, not mbgate's
    c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("setpoint_rtt: could not subscribe")
    rtts, errors, ok = [], [], 0
    try:
        for i in range(args.n):
            cid = f"r{i}"
            body = json.dumps({"v": (i * 7) % 60000, "id": cid, "ts": int(time.time() * 1000)})
            t0 = time.perf_counter()
            c.publish(args.topic, body, qos=1)
            with cond:
                end = t0 + args.timeout
                while cid not in got:
                    left = end - time.perf_counter()
                    if left <= 0:
                        break
                    cond.wait(left)
                res = got.pop(cid, None)
            if res is None:
                errors.append("no_result")
                continue
            t1, d = res
            rtts.append((t1 - t0) * 1000)
            if d.get("ok"):
                ok += 1
            elif len(errors) < 20:
                errors.append(d.get("error"))
    finally:
        c.disconnect()
        c.loop_stop()
    rtts.sort()

    def pct(p):
        if not rtts:
            return None
        return rtts[min(len(rtts) - 1, int(p * len(rtts)))]

    print(json.dumps({"n": args.n, "ok": ok, "answered": len(rtts), "p50_ms": pct(0.50),
                      "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": rtts[-1] if rtts else None,
                      "mean_ms": sum(rtts) / len(rtts) if rtts else None, "errors": errors[:20]}))


if __name__ == "__main__":
    main()
