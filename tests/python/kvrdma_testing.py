"""Helpers shared by the Python tests: an embedded server per test class, deterministic bytes."""
import random
import unittest

import kvrdma


def pattern(size, seed):
    """`size` reproducible pseudo-random bytes (every byte value occurs)."""
    return random.Random(seed).randbytes(size)


class ServerTestCase(unittest.TestCase):
    """Starts one embedded server (mock transport, 64 MiB pool, a free loopback port) and one
    client for the class; stops both afterwards."""

    @classmethod
    def setUpClass(cls):
        cls.server = kvrdma.Server(listen_addr="127.0.0.1:0", memory_mb=64, log_level="error")
        cls.client = kvrdma.Client(server_addr=cls.server.address, buffer_mb=16, timeout_ms=10000,
                                   log_level="error")

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.stop()
