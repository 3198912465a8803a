"""PEER, for bench.py: a plain asyncio relay on the `websockets` library, with its
defaults (permessage-deflate on). No validation, rate limit or history: what someone
who reaches for asyncio would write instead.
Run: python bench/peers/relay.py PORT
"""
import asyncio
import sys

from websockets.asyncio.server import broadcast, serve
from websockets.exceptions import ConnectionClosed


async def main(port):
    connected = set()

    async def handler(ws):
        connected.add(ws)
        try:
            async for message in ws:
                broadcast(connected, message)
        except ConnectionClosed:
            pass  # the client vanished without a goodbye
        finally:
            connected.discard(ws)

    async with serve(handler, "127.0.0.1", port, max_size=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
