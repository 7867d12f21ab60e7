#!/usr/bin/python3
"""A multi-drop Modbus server for the link tests (pymodbus 3.0): several unit
ids with their own registers, over a serial port (RTU) or TCP (a gateway).

    /usr/bin/python3 units_plc.py --units FILE (--serial PATH [--baud 19200] | --tcp-port N)
                                  [--stats FILE]

--units FILE: JSON {"1": {"holding": {"0": [1, 2]}, "input": {...}}, "2": {...},
"mute": [3], "gateway_error": [4], "garbage": [5]}; a table value may be a
list, written at consecutive 0-based addresses from the key. Every unit listed
serves all four tables. A "mute" unit never answers (as an absent RTU slave,
or a gateway that lets the request time out); a "gateway_error" unit is
answered with exception 0x0B (gateway target failed to respond); a "garbage"
unit answers RTU frames with a broken CRC. SIGHUP re-reads "mute",
"gateway_error" and "garbage" from FILE, so a test can silence a unit and bring
it back without cutting the others off.

Every unit has a counter in input register 0 that counts the reads covering it.

Once the port is open the script prints one line on stdout:
    READY serial=PATH      or      READY modbus=PORT
--stats FILE: TCP: rewritten as {"accepted": N, "active": M} on every
connection change, so a test can tell how many connections a client used;
serial: rewritten as {"answers": N, "min_gap_ms": G} after every answer, G the
shortest silence seen between an answer and the next request (the RTU frame
gap the master keeps).
"""
import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time

from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                ModbusSlaveContext)
from pymodbus.exceptions import NoSuchSlaveException
from pymodbus.server.async_io import (ModbusConnectedRequestHandler, ModbusSerialServer,
                                      ModbusSingleRequestHandler, ModbusTcpServer)
from pymodbus.transaction import ModbusRtuFramer

SIZE = 1024
TABLES = {"coil": "co", "discrete": "di", "input": "ir", "holding": "hr"}


class CountingSlave(ModbusSlaveContext):
    """Input register 0 counts the reads that cover it."""

    def getValues(self, fc_as_hex, address, count=1):  # noqa: N802 (pymodbus API)
        if fc_as_hex == 4 and address == 0:
            store = self.store["i"]
            store.setValues(0, [(store.getValues(0, 1)[0] + 1) & 0xFFFF])
        return super().getValues(fc_as_hex, address, count)


def slave(tables):
    blocks = {key: ModbusSequentialDataBlock(0, [False if t in ("coil", "discrete") else 0] * SIZE)
              for t, key in TABLES.items()}
    ctx = CountingSlave(zero_mode=True, **blocks)
    for table, values in tables.items():
        fc = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}[table]
        store = ctx.store[ctx.decode(fc)]
        for addr, v in values.items():
            store.setValues(int(addr), v if isinstance(v, list) else [v])
    return ctx


class Units(ModbusServerContext):
    """The configured units; gateway_error units raise NoSuchSlaveException,
    which pymodbus answers with exception 0x0B. Muted units are dropped by
    Muting (the framer's own unit filter uses a list taken before the request
    arrived, so it would let the first request after a SIGHUP through)."""

    def __init__(self, spec):
        super().__init__(slaves={int(u): slave(t) for u, t in spec.items() if u.isdigit()},
                         single=False)
        self.configure(spec)

    def configure(self, spec):
        self.muted = {int(u) for u in spec.get("mute", [])}
        self.failing = {int(u) for u in spec.get("gateway_error", [])}
        self.garbage = {int(u) for u in spec.get("garbage", [])}

    def __getitem__(self, unit):
        if unit in self.failing:
            raise NoSuchSlaveException(f"unit {unit} fails behind the gateway")
        return super().__getitem__(unit)


class Muting:
    """Request handler mixin: a muted unit never answers."""

    def execute(self, request, *addr):
        if request.unit_id not in self.server.context.muted:
            super().execute(request, *addr)


def write_stats(path, stats):
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(stats, f)
        os.replace(path + ".tmp", path)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", required=True)
    ap.add_argument("--serial")
    ap.add_argument("--baud", type=int, default=19200)
    ap.add_argument("--tcp-port", type=int)
    ap.add_argument("--stats")
    args = ap.parse_args()

    def load():
        with open(args.units) as f:
            return json.load(f)
    context = Units(load())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: context.configure(load()))

    if args.serial:
        stats = {"answers": 0, "min_gap_ms": None}
        answered = [None]  # monotonic time of the last answer not yet followed by a request

        class Timing(Muting, ModbusSingleRequestHandler):
            def data_received(self, data):
                if answered[0] is not None:
                    gap = (time.monotonic() - answered[0]) * 1000
                    if stats["min_gap_ms"] is None or gap < stats["min_gap_ms"]:
                        stats["min_gap_ms"] = gap
                    answered[0] = None
                super().data_received(data)

            def _send_(self, data):
                if data[0] in self.server.context.garbage:
                    data = data[:-1] + bytes([data[-1] ^ 0xFF])
                super()._send_(data)
                answered[0] = time.monotonic()
                stats["answers"] += 1
                write_stats(args.stats, stats)

        server = ModbusSerialServer(context, framer=ModbusRtuFramer, port=args.serial,
                                    baudrate=args.baud, bytesize=8, parity="N", stopbits=1,
                                    ignore_missing_slaves=False, handler=Timing)
        await server.start()
        if server.transport is None:
            raise SystemExit(f"cannot open {args.serial}")
        print(f"READY serial={args.serial}", flush=True)
        await asyncio.Event().wait()

    counts = {"accepted": 0, "active": 0}

    class Counting(Muting, ModbusConnectedRequestHandler):
        def connection_made(self, transport):
            counts["accepted"] += 1
            counts["active"] += 1
            write_stats(args.stats, counts)
            super().connection_made(transport)

        def connection_lost(self, call_exc):
            counts["active"] -= 1
            write_stats(args.stats, counts)
            super().connection_lost(call_exc)

    write_stats(args.stats, counts)
    server = ModbusTcpServer(context, address=("127.0.0.1", args.tcp_port or 0),
                             handler=Counting, allow_reuse_address=True,
                             ignore_missing_slaves=False)
    task = asyncio.create_task(server.serve_forever())
    await server.serving
    print(f"READY modbus={server.server.sockets[0].getsockname()[1]}", flush=True)
    await task


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(main())
