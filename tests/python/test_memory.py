"""Registered memory: Client.allocate / register, and get_into / put on buffers inside it (zero
copy); without those calls in the library, get_into / put fall back to copying."""
import unittest

import kvrdma
from kvrdma_testing import ServerTestCase, pattern

try:
    import numpy as np
except ImportError:
    np = None

MiB = 1 << 20


@unittest.skipUnless(kvrdma.HAS_MEMORY, "the library has no registered memory calls")
class AllocatedMemoryTest(ServerTestCase):
    def test_blocks_of_allocated_memory_round_trip_byte_for_byte(self):
        with self.client.allocate(4 * MiB) as mem:
            self.assertEqual(len(mem), 4 * MiB)
            self.assertEqual(len(mem.buffer), 4 * MiB)
            value = pattern(MiB, seed=21)
            mem.buffer[MiB:2 * MiB] = value
            before = self.client.stats()
            self.client.put(b"from-mem", mem.buffer[MiB:2 * MiB])
            self.assertEqual(self.client.get(b"from-mem"), value)
            self.assertEqual(self.client.get_into(b"from-mem", mem.buffer[3 * MiB:]), MiB)
            self.assertEqual(bytes(mem.buffer[3 * MiB:]), value)
            after = self.client.stats()
            self.assertGreaterEqual(after["bytes_put_committed"] - before["bytes_put_committed"],
                                    MiB)
            with self.assertRaises(kvrdma.BufferTooSmall) as ctx:
                self.client.get_into(b"from-mem", mem.buffer[:MiB - 1])
            self.assertEqual(ctx.exception.needed, MiB)

    def test_batches_from_and_into_allocated_memory(self):
        with self.client.allocate(MiB) as mem:
            blocks = [mem.buffer[i * 4096:(i + 1) * 4096] for i in range(8)]
            for i, block in enumerate(blocks):
                block[:] = pattern(4096, seed=30 + i)
            self.client.put_many([(b"blk-%d" % i, b) for i, b in enumerate(blocks)])
            self.assertEqual(self.client.get_many([b"blk-%d" % i for i in range(8)]),
                             [pattern(4096, seed=30 + i) for i in range(8)])
            del blocks, block  # slices of the memory: close() refuses while they live

    @unittest.skipIf(np is None, "numpy is not installed (Debian package python3-numpy)")
    def test_numpy_pool_over_allocated_memory(self):
        mem = self.client.allocate(MiB)
        pool = np.frombuffer(mem.buffer, dtype=np.float32).reshape(16, -1)
        pool[2] = np.arange(pool.shape[1], dtype=np.float32)
        self.client.put(b"np-block", pool[2])
        self.assertEqual(self.client.get_into(b"np-block", pool[5]), pool[2].nbytes)
        self.assertTrue(np.array_equal(pool[5], pool[2]))
        with self.assertRaises(BufferError):
            mem.close()  # pool still exports the memory
        del pool
        mem.close()
        self.assertTrue(mem.closed)

    def test_register_on_the_mock_says_to_use_allocate(self):
        with self.assertRaises(kvrdma.Error) as ctx:
            self.client.register(bytearray(MiB))
        self.assertEqual(ctx.exception.code, kvrdma.FAILED_PRECONDITION)
        self.assertIn("allocate", str(ctx.exception))


class FallbackTest(ServerTestCase):
    def test_buffers_outside_registered_memory_are_copied(self):
        value = pattern(2 * MiB, seed=40)
        self.client.put(b"copied", bytearray(value))
        out = bytearray(2 * MiB)
        self.assertEqual(self.client.get_into(b"copied", out), 2 * MiB)
        self.assertEqual(bytes(out), value)

    @unittest.skipIf(kvrdma.HAS_MEMORY, "the library has registered memory")
    def test_allocate_without_the_calls_is_a_clear_error(self):
        with self.assertRaises(kvrdma.Error) as ctx:
            self.client.allocate(MiB)
        self.assertEqual(ctx.exception.code, kvrdma.FAILED_PRECONDITION)
        self.assertIn("registered memory", str(ctx.exception))


if __name__ == "__main__":
    unittest.main()
