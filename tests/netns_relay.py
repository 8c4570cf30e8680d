"""A TCP relay from this machine's loopback into a network namespace.

`python -m tests.netns_relay NAMESPACE HOST PORT` listens on 127.0.0.1 (a free port,
printed on the first line of stdout), then enters NAMESPACE and relays each connection to
HOST:PORT there. The tests' own HTTP and NATS clients reach processes inside namespaces
this way, on a path a partition of the namespaces' links does not cut, and without an
address on any interface outside those namespaces.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000


def enter(namespace: str) -> None:
    """setns(2) into a namespace made by `ip netns add` (os.setns is Python 3.12+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {namespace}")
    finally:
        os.close(fd)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def serve(listener: socket.socket, host: str, port: int) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            inner_reader, inner_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_pipe(reader, inner_writer))
            tasks.create_task(_pipe(inner_reader, writer))

    server = await asyncio.start_server(relay, sock=listener)
    async with server:
        await server.serve_forever()


def main() -> None:
    namespace, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))  # in this machine's namespace: bound before setns
    listener.listen(128)
    print(listener.getsockname()[1], flush=True)
    enter(namespace)  # connections made from here on are inside the namespace
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(listener, host, port))


if __name__ == "__main__":
    main()
