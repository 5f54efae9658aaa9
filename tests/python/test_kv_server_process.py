"""kvrdma.Client against a real kv-server process (KVRDMA_SERVER_BIN), started on a free
loopback port and stopped with SIGTERM."""
import os
import select
import signal
import subprocess
import time
import unittest

import kvrdma
from kvrdma_testing import pattern

SERVER_BIN = os.environ.get("KVRDMA_SERVER_BIN", "")
READY = "kv-server ready: listening on "


def start_server():
    """Starts kv-server on 127.0.0.1:0; returns (process, address) once it says it is ready."""
    proc = subprocess.Popen([SERVER_BIN, "--listen-addr", "127.0.0.1:0", "--memory-mb", "64",
                             "--log-level", "error"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(READY):
            return proc, line[len(READY):].split()[0]
    proc.kill()
    _, err = proc.communicate(timeout=10)
    raise RuntimeError("kv-server did not become ready within 30 s: " + err)


@unittest.skipUnless(SERVER_BIN, "KVRDMA_SERVER_BIN (the kv-server program) is not set")
class KvServerProcessTest(unittest.TestCase):
    def test_put_get_view_and_stats_against_kv_server(self):
        proc, address = start_server()
        try:
            with kvrdma.Client(server_addr=address, timeout_ms=10000) as client:
                value = pattern(3 << 20, seed=50)
                client.put(b"process", value)
                self.assertEqual(client.get(b"process"), value)
                with client.get_view(b"process") as view:
                    self.assertEqual(view.data.tobytes(), value)
                self.assertEqual(client.get_many([b"process", b"absent"]), [value, None])
                stats = client.stats()
                self.assertEqual(stats["keys"], 1)
                self.assertEqual(stats["puts"], 1)
                self.assertGreaterEqual(stats["bytes_transport_written"], 2 * len(value))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                self.assertEqual(proc.wait(timeout=30), 0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
                proc.stdout.close()
                proc.stderr.close()


if __name__ == "__main__":
    unittest.main()
