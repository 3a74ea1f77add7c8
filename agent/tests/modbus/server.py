"""A Modbus TCP server for the agent's tests, built on pymodbus (not written here).

Usage: python3 server.py PORT

Holding registers 0..: [720, hi(0.55f), lo(0.55f), 0xFFFF, 0xFF38]
  0      u16  720            -> pH 7.20 with scale 0.01
  1..2   f32  0.55 (big)     -> free chlorine 0.55 mg/L
  3..4   i32  -200 (big)     -> ORP 700 mV with scale -3.5 (exercises i32 sign)
Input registers 0..: [265]
  0      i16  265            -> temperature 26.5 Cel with scale 0.1
Anything at address 100 or above is an illegal address (a Modbus exception).
"""

import asyncio
import struct
import sys

from pymodbus.datastore import (
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSlaveContext,
)
from pymodbus.server import StartAsyncTcpServer


def main() -> None:
    port = int(sys.argv[1])
    hi, lo = struct.unpack(">HH", struct.pack(">f", 0.55))
    i32_hi, i32_lo = struct.unpack(">HH", struct.pack(">i", -200))
    # pymodbus maps request address N to block address N + 1, so the blocks start at 1.
    store = ModbusSlaveContext(
        hr=ModbusSequentialDataBlock(1, [720, hi, lo, i32_hi, i32_lo] + [0] * 95),
        ir=ModbusSequentialDataBlock(1, [265] + [0] * 99),
    )
    context = ModbusServerContext(slaves=store, single=True)
    asyncio.run(StartAsyncTcpServer(context=context, address=("127.0.0.1", port)))


if __name__ == "__main__":
    main()
