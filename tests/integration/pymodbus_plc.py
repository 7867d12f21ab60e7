#!/usr/bin/python3
"""An independent Modbus TCP PLC for the mbgate integration tests (pymodbus 3.0).

Run as a separate process (so the tests' GIL never stalls it):

    /usr/bin/python3 pymodbus_plc.py --port 0 [--host 127.0.0.1] [--init values.json]

Every table (coil, discrete, input, holding) holds 65536 values at 0-based
protocol addresses 0..65535 (zero_mode=True: address 0 is the first value).
Any unit id is answered (single context).

--init FILE: JSON {"holding": {"100": 17142, ...}, "input": {...},
"coil": {"0": true}, "discrete": {...}}; a value may also be a list, written
at consecutive addresses from the key.

Once both listeners are up the script prints one line on stdout:
    READY modbus=PORT control=PORT
The control port speaks line-based JSON, one request -> one reply line:
    {"op":"set","table":"input","addr":10,"values":[1,2]}     -> {"ok":true}
    {"op":"get","table":"holding","addr":100,"count":2}       -> {"ok":true,"values":[..]}
    {"op":"stats"}   -> {"ok":true,"reads":{"3":12,...},"writes":{"16":1},
                         "requests":[[fc,addr,count],...]}  (last 1000 requests)
    {"op":"reset_stats"}                                       -> {"ok":true}
    {"op":"ping"}                                              -> {"ok":true}
The process stops on SIGTERM/SIGKILL (no cleanup needed).
"""
import argparse
import asyncio
import collections
import json
import logging
import sys

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.server.async_io import ModbusTcpServer

SIZE = 65536
TABLE_KEYS = {"coil": "co", "discrete": "di", "input": "ir", "holding": "hr"}
# pymodbus' function-code -> store mapping used by getValues/setValues
TABLE_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}


class CountingContext(ModbusSlaveContext):
    """A slave context that records every read/write request it serves."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reads = collections.Counter()
        self.writes = collections.Counter()
        self.requests = collections.deque(maxlen=1000)

    def getValues(self, fc_as_hex, address, count=1):  # noqa: N802 (pymodbus API)
        if fc_as_hex in (1, 2, 3, 4):
            self.reads[fc_as_hex] += 1
            self.requests.append([fc_as_hex, address, count])
        return super().getValues(fc_as_hex, address, count)

    def setValues(self, fc_as_hex, address, values):  # noqa: N802
        self.writes[fc_as_hex] += 1
        self.requests.append([fc_as_hex, address, len(values)])
        return super().setValues(fc_as_hex, address, values)

    # direct access for the control channel (not counted)
    def raw_set(self, table, addr, values):
        store = self.store[self.decode(TABLE_FC[table])]
        # zero_mode=True: protocol address == block index
        store.setValues(addr, values)

    def raw_get(self, table, addr, count):
        store = self.store[self.decode(TABLE_FC[table])]
        return store.getValues(addr, count)


def _norm(table, v):
    if table in ("coil", "discrete"):
        return bool(v)
    v = int(v)
    if not 0 <= v <= 0xFFFF:
        raise ValueError(f"register value {v} out of 0..65535")
    return v


def build_context(init):
    blocks = {}
    for table, key in TABLE_KEYS.items():
        fill = False if table in ("coil", "discrete") else 0
        blocks[key] = ModbusSequentialDataBlock(0, [fill] * SIZE)
    ctx = CountingContext(zero_mode=True, **blocks)
    for table, values in (init or {}).items():
        if table not in TABLE_KEYS:
            raise SystemExit(f"unknown table {table!r} in init file")
        for addr, v in values.items():
            vals = v if isinstance(v, list) else [v]
            ctx.raw_set(table, int(addr), [_norm(table, x) for x in vals])
    return ctx


async def control_client(ctx, reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                req = json.loads(line)
                op = req.get("op")
                if op == "set":
                    table = req["table"]
                    vals = [_norm(table, x) for x in req["values"]]
                    ctx.raw_set(table, int(req["addr"]), vals)
                    rep = {"ok": True}
                elif op == "get":
                    vals = ctx.raw_get(req["table"], int(req["addr"]), int(req.get("count", 1)))
                    rep = {"ok": True, "values": list(vals)}
                elif op == "stats":
                    rep = {"ok": True,
                           "reads": {str(k): v for k, v in ctx.reads.items()},
                           "writes": {str(k): v for k, v in ctx.writes.items()},
                           "requests": list(ctx.requests)}
                elif op == "reset_stats":
                    ctx.reads.clear()
                    ctx.writes.clear()
                    ctx.requests.clear()
                    rep = {"ok": True}
                elif op == "ping":
                    rep = {"ok": True}
                else:
                    rep = {"ok": False, "error": f"unknown op {op!r}"}
            except Exception as exc:  # report, keep serving
                rep = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            writer.write((json.dumps(rep) + "\n").encode())
            await writer.drain()
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--init", help="JSON file of initial values")
    args = ap.parse_args()
    if not args.host.startswith("127."):
        raise SystemExit("loopback addresses only")

    init = None
    if args.init:
        with open(args.init) as f:
            init = json.load(f)
    ctx = build_context(init)
    context = ModbusServerContext(slaves=ctx, single=True)

    server = ModbusTcpServer(context, address=(args.host, args.port),
                             allow_reuse_address=True)
    task = asyncio.create_task(server.serve_forever())
    await server.serving
    mport = server.server.sockets[0].getsockname()[1]

    ctl = await asyncio.start_server(lambda r, w: control_client(ctx, r, w),
                                     args.host, 0)
    cport = ctl.sockets[0].getsockname()[1]
    print(f"READY modbus={mport} control={cport}", flush=True)
    await task


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
