"""kvrdma from Python: the `kvrdma` package (capi/python, ctypes over libkvrdma.so.0).

Starts a server inside this process (or uses --server-addr HOST:PORT of a running kv-server),
then stores and reads values of several kinds: bytes, a zero-copy view, a block of a pool
(a numpy array when numpy is installed), a batch.

Usage, from a source build:
  PYTHONPATH=capi/python KVRDMA_LIBRARY=build/release/libkvrdma.so.0 \\
      /usr/bin/python3 examples/python_demo.py [--server-addr HOST:PORT]
From an install: PYTHONPATH=<prefix>/lib/python3/dist-packages python3 python_demo.py
"""
import argparse
import sys

import kvrdma


def demo(client):
    # Plain bytes; a 1 MiB value travels by a transport write, not inside the RPC.
    value = bytes(range(256)) * 4096
    client.put(b"blob", value)
    assert client.get(b"blob") == value
    print("put/get 1 MiB: identical")

    # Zero copy: read the value where the server wrote it, then give the space back.
    with client.get_view(b"blob") as view:
        print("view: %d bytes, first %s" % (len(view), view.data[:4].hex()))

    # Into memory the application owns: a block of a pool.
    try:
        import numpy as np
        pool = np.zeros((4, 1 << 20), dtype=np.uint8)
        size = client.get_into(b"blob", pool[2])
        print("get_into numpy block 2: %d bytes, identical: %s" % (size,
              pool[2].tobytes() == value))
        client.put(b"weights", np.arange(1024, dtype=np.float32))
    except ImportError:
        pool = bytearray(4 << 20)
        size = client.get_into(b"blob", memoryview(pool)[2 << 20:])
        print("get_into bytearray block 2: %d bytes" % size)

    # A batch: misses come back as None.
    client.put_many({b"a": b"1", b"b": b"22"})
    print("get_many:", client.get_many([b"a", b"missing", b"b"]))

    client.delete(b"a")
    try:
        client.get(b"a")
    except kvrdma.NotFound as e:
        print("after delete: %s (code %d)" % (e.code_name, e.code))
    stats = client.stats()
    print("server: %d keys, %d puts, transport %s" % (stats["keys"], stats["puts"],
                                                       stats["transport"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-addr", help="a running kv-server (default: start one here)")
    args = parser.parse_args()
    print("kvrdma %s from %s" % (kvrdma.__version__, kvrdma.library_path))
    if args.server_addr:
        with kvrdma.Client(server_addr=args.server_addr) as client:
            demo(client)
        return 0
    with kvrdma.Server(listen_addr="127.0.0.1:0", memory_mb=64) as server:
        print("embedded server on", server.address)
        with kvrdma.Client(server_addr=server.address) as client:
            demo(client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
