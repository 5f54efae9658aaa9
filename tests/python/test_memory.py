"""Registered memory: Client.allocate / register, and get_into / put on buffers inside it (zero
copy); without those calls in the library, get_into / put fall back to copying."""
import ctypes
import unittest

import kvrdma
import kvrdma._native as native
from kvrdma_testing import ServerTestCase, pattern

try:
    import numpy as np
except ImportError:
    np = None

MiB = 1 << 20


class Spy:
    """Counts the calls of some C functions of the loaded library, still calling them."""

    def __init__(self, test, *names):
        self.counts = dict.fromkeys(names, 0)
        for name in names:
            real = getattr(native.lib, name)
            setattr(native.lib, name, self._counting(name, real))
            test.addCleanup(setattr, native.lib, name, real)

    def _counting(self, name, real):
        def call(*args):
            self.counts[name] += 1
            return real(*args)
        return call


@unittest.skipUnless(kvrdma.HAS_MEMORY, "the library has no registered memory calls")
class AllocatedMemoryTest(ServerTestCase):
    def test_buffers_in_allocated_memory_take_the_zero_copy_calls(self):
        spy = Spy(self, "kvrdma_put_from", "kvrdma_get_into_mem", "kvrdma_put_many_from",
                  "kvrdma_get_many_into", "kvrdma_put", "kvrdma_get_into", "kvrdma_put_many",
                  "kvrdma_get_many")
        with self.client.allocate(2 * MiB) as mem:
            mem.buffer[:MiB] = pattern(MiB, seed=90)
            self.client.put(b"spy", mem.buffer[:MiB])
            self.client.get_into(b"spy", mem.buffer[MiB:])
            self.client.put_many([(b"spy-2", mem.buffer[:10])])
            self.client.get_many_into([b"spy-2"], [mem.buffer[MiB:MiB + 10]])
            self.assertEqual(bytes(mem.buffer[MiB:]), pattern(MiB, seed=90))
        self.assertEqual(spy.counts, {"kvrdma_put_from": 1, "kvrdma_get_into_mem": 1,
                                      "kvrdma_put_many_from": 1, "kvrdma_get_many_into": 1,
                                      "kvrdma_put": 0, "kvrdma_get_into": 0,
                                      "kvrdma_put_many": 0, "kvrdma_get_many": 0})

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

    @unittest.skipIf(np is None, "numpy is not installed (Debian package python3-numpy)")
    def test_allocated_memory_in_use_outlives_its_client(self):
        client = kvrdma.Client(server_addr=self.server.address, log_level="error")
        mem = client.allocate(MiB)
        pool = np.frombuffer(mem.buffer, dtype=np.uint8)
        pool[:] = np.arange(MiB, dtype=np.uint32).astype(np.uint8)
        client.put(b"pool-value", pool[:4096])
        client.close()
        self.assertFalse(mem.closed)
        self.assertEqual(pool[:4096].tobytes(), self.client.get(b"pool-value"))
        pool[-1] = 7  # still mapped and writable
        del pool
        mem.close()
        self.assertTrue(mem.closed)

    def test_register_on_the_mock_says_to_use_allocate(self):
        with self.assertRaises(kvrdma.Error) as ctx:
            self.client.register(bytearray(MiB))
        self.assertEqual(ctx.exception.code, kvrdma.FAILED_PRECONDITION)
        self.assertIn("allocate", str(ctx.exception))


@unittest.skipUnless(kvrdma.HAS_MEMORY, "the library has no registered memory calls")
class RegisteredMemoryFabricTest(unittest.TestCase):
    """Client.register over libfabric tcp (skipped where the tcp provider cannot start)."""

    def setUp(self):
        try:
            self.server = kvrdma.Server(memory_mb=16, mock=False, provider="tcp",
                                        log_level="error")
        except kvrdma.Error as e:
            self.skipTest("libfabric tcp is not available here: %s" % e)
        self.addCleanup(self.server.stop)
        self.client = kvrdma.Client(server_addr=self.server.address, mock=False, provider="tcp",
                                    timeout_ms=10000, log_level="error")
        self.addCleanup(self.client.close)

    def test_registered_bytearray_is_a_zero_copy_source_and_destination(self):
        spy = Spy(self, "kvrdma_put_from", "kvrdma_get_into_mem", "kvrdma_client_register")
        buffer = bytearray(3 * MiB)
        value = pattern(MiB, seed=95)
        buffer[:MiB] = value
        mem = self.client.register(buffer)
        self.assertEqual((len(mem), spy.counts["kvrdma_client_register"]), (3 * MiB, 1))
        with self.assertRaises(BufferError):
            buffer.extend(b"x")  # registered memory must not move
        self.client.put(b"registered", memoryview(buffer)[:MiB])
        self.assertEqual(self.client.get_into(b"registered", memoryview(buffer)[2 * MiB:]), MiB)
        self.assertEqual(bytes(buffer[2 * MiB:]), value)
        self.assertEqual(self.client.get(b"registered"), value)
        self.assertEqual((spy.counts["kvrdma_put_from"], spy.counts["kvrdma_get_into_mem"]),
                         (1, 1))
        mem.close()
        buffer.extend(b"x")  # released: the buffer may be resized again
        self.assertEqual(len(buffer), 3 * MiB + 1)


class FakeMemoryCalls:
    """Stands in for the registered-memory C calls with the copying ones, logging each call, so
    the package's routing (which buffer lies in which Memory, at which offset) is tested on any
    library. Memory is a ctypes buffer; handles are small ints."""

    def __init__(self):
        self.calls = []
        self.blocks = {}
        self.lib = native.lib

    def install(self):
        self.saved = {n: getattr(self.lib, n, None) for n in native._MEMORY_CALLS}
        self.saved_has = native.HAS_MEMORY
        for name in native._MEMORY_CALLS:
            setattr(self.lib, name, getattr(self, name[len("kvrdma_"):]))
        native.HAS_MEMORY = True

    def uninstall(self):
        for name, fn in self.saved.items():
            if fn is None:
                delattr(self.lib, name)
            else:
                setattr(self.lib, name, fn)
        native.HAS_MEMORY = self.saved_has

    @staticmethod
    def _id(handle):  # the package passes a c_void_p alone, an int inside arrays
        return handle.value if isinstance(handle, ctypes.c_void_p) else handle

    def _address(self, handle, offset=0):
        return ctypes.addressof(self.blocks[self._id(handle)]) + offset

    def client_allocate(self, client, size, out, err, errlen):
        handle = len(self.blocks) + 1
        self.blocks[handle] = ctypes.create_string_buffer(size)
        out._obj.value = handle
        self.calls.append(("allocate", size))
        return kvrdma.OK

    def client_register(self, client, address, size, kind, out, err, errlen):
        self.calls.append(("register", size, kind))
        err.value = b"FAILED_PRECONDITION: the mock transport cannot register; use allocate"
        return kvrdma.FAILED_PRECONDITION

    def mem_data(self, handle):
        return self._address(handle)

    def mem_size(self, handle):
        return len(self.blocks[self._id(handle)])

    def mem_release(self, handle):
        self.calls.append(("release", self._id(handle)))
        del self.blocks[self._id(handle)]

    def get_into_mem(self, client, key, keylen, handle, offset, capacity, size, err, errlen):
        self.calls.append(("get_into_mem", self._id(handle), offset, capacity))
        return self.lib.kvrdma_get_into(client, key, keylen, self._address(handle, offset),
                                        capacity, size, err, errlen)

    def put_from(self, client, key, keylen, handle, offset, size, ttl_ms, err, errlen):
        self.calls.append(("put_from", self._id(handle), offset, size))
        return self.lib.kvrdma_put(client, key, keylen, self._address(handle, offset), size,
                                   ttl_ms, err, errlen)

    def get_many_into(self, client, n, keys, keylens, mems, offsets, caps, sizes, codes, err,
                      errlen):
        self.calls.append(("get_many_into", n, list(offsets)))
        for i in range(n):
            size = ctypes.c_size_t()
            codes[i] = self.lib.kvrdma_get_into(client, keys[i], keylens[i],
                                                self._address(mems[i], offsets[i]), caps[i],
                                                ctypes.byref(size), err, errlen)
            sizes[i] = size.value
        return next((c for c in codes if c != kvrdma.OK), kvrdma.OK)

    def put_many_from(self, client, n, keys, keylens, mems, offsets, lens, ttl_ms, codes, err,
                      errlen):
        self.calls.append(("put_many_from", n, list(offsets)))
        for i in range(n):
            codes[i] = self.lib.kvrdma_put(client, keys[i], keylens[i],
                                           self._address(mems[i], offsets[i]), lens[i], ttl_ms,
                                           err, errlen)
        return next((c for c in codes if c != kvrdma.OK), kvrdma.OK)


class RoutingTest(ServerTestCase):
    """Buffers inside a Memory take the registered-memory calls at the right offsets; others
    take the copying calls (on stand-ins for the registered-memory calls)."""

    def setUp(self):
        self.fake = FakeMemoryCalls()
        self.fake.install()
        self.addCleanup(self.fake.uninstall)

    def test_single_calls_inside_memory_use_its_offset(self):
        mem = self.client.allocate(64 * 1024)
        value = pattern(5000, seed=60)
        mem.buffer[1000:6000] = value
        self.client.put(b"routed", mem.buffer[1000:6000])
        self.assertEqual(self.client.get_into(b"routed", mem.buffer[20000:30000]), 5000)
        self.assertEqual(bytes(mem.buffer[20000:25000]), value)
        self.assertEqual(self.client.get(b"routed"), value)
        outside = bytearray(5000)
        self.assertEqual(self.client.get_into(b"routed", outside), 5000)
        self.client.put(b"routed-2", outside)
        self.assertEqual(self.fake.calls, [("allocate", 64 * 1024), ("put_from", 1, 1000, 5000),
                                           ("get_into_mem", 1, 20000, 10000)])
        with self.assertRaises(kvrdma.BufferTooSmall) as ctx:
            self.client.get_into(b"routed", mem.buffer[:4999])
        self.assertEqual(ctx.exception.needed, 5000)
        mem.close()
        self.assertEqual(self.fake.calls[-1], ("release", 1))
        self.assertEqual(self.client.get(b"routed-2"), value)

    def test_batches_inside_memory_and_mixed(self):
        mem = self.client.allocate(16 * 4096)
        for i in range(4):
            mem.buffer[i * 4096:(i + 1) * 4096] = pattern(4096, seed=70 + i)
        self.client.put_many([(b"mb-%d" % i, mem.buffer[i * 4096:(i + 1) * 4096])
                              for i in range(4)])
        self.assertEqual(self.fake.calls[-1], ("put_many_from", 4, [0, 4096, 8192, 12288]))
        sizes = self.client.get_many_into(
            [b"mb-3", b"absent", b"mb-0"],
            [mem.buffer[8 * 4096:9 * 4096], mem.buffer[9 * 4096:10 * 4096],
             mem.buffer[10 * 4096:]])
        self.assertEqual(sizes, [4096, None, 4096])
        self.assertEqual(self.fake.calls[-1], ("get_many_into", 3, [32768, 36864, 40960]))
        self.assertEqual(bytes(mem.buffer[8 * 4096:9 * 4096]), pattern(4096, seed=73))
        self.assertEqual(bytes(mem.buffer[10 * 4096:11 * 4096]), pattern(4096, seed=70))
        calls = len(self.fake.calls)
        outside = bytearray(4096)
        self.assertEqual(self.client.get_many_into([b"mb-1", b"mb-2"],
                                                   [outside, mem.buffer[:4096]]), [4096, 4096])
        self.client.put_many([(b"mixed", outside), (b"mixed-2", mem.buffer[:10])])
        self.assertEqual(len(self.fake.calls), calls)  # one buffer outside: copying calls
        self.assertEqual(bytes(outside), pattern(4096, seed=71))
        self.assertEqual(self.client.get(b"mixed"), pattern(4096, seed=71))
        mem.close()

    def test_register_failure_carries_its_code_and_releases_the_buffer(self):
        buffer = bytearray(4096)
        with self.assertRaises(kvrdma.Error) as ctx:
            self.client.register(buffer)
        self.assertEqual(ctx.exception.code, kvrdma.FAILED_PRECONDITION)
        self.assertIn("allocate", str(ctx.exception))
        buffer.extend(b"resizable again")  # the buffer is no longer exported

    def test_memory_in_use_outlives_its_client(self):
        client = kvrdma.Client(server_addr=self.server.address, log_level="error")
        mem = client.allocate(4096)
        block = mem.buffer[100:200]
        block[:] = b"\x01" * 100
        client.put(b"outlived", block)
        client.close()
        self.assertTrue(client.closed)
        self.assertFalse(mem.closed)
        self.assertEqual(bytes(block), b"\x01" * 100)  # still mapped
        self.assertNotIn(("release", 1), self.fake.calls)
        with self.assertRaises(BufferError):
            mem.close()
        del block
        mem.close()
        self.assertEqual(self.fake.calls[-1], ("release", 1))
        self.assertEqual(self.client.get(b"outlived"), b"\x01" * 100)

    def test_client_close_releases_its_memories(self):
        client = kvrdma.Client(server_addr=self.server.address, log_level="error")
        client.allocate(4096)
        client.allocate(8192)
        client.close()
        self.assertEqual(sorted(c for c in self.fake.calls if c[0] == "release"),
                         [("release", 1), ("release", 2)])


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
