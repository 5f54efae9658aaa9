"""numpy arrays as values and as destinations (a torch tensor goes through .numpy() the same)."""
import unittest

import kvrdma
from kvrdma_testing import ServerTestCase

try:
    import numpy as np
except ImportError:  # CI installs python3-numpy (scripts/install-deps); skip only without it
    np = None


@unittest.skipIf(np is None, "numpy is not installed (Debian package python3-numpy)")
class NumpyTest(ServerTestCase):
    def test_arrays_of_several_dtypes_round_trip_byte_for_byte(self):
        rng = np.random.default_rng(14)
        arrays = {
            b"f32": rng.standard_normal((256, 1024), dtype=np.float32),  # 1 MiB, transport
            b"f16": rng.standard_normal(5000).astype(np.float16),
            b"i64": np.arange(-1000, 1000, dtype=np.int64),
            b"u8": rng.integers(0, 256, 3 * (1 << 20) + 7, dtype=np.uint8),
        }
        for key, a in arrays.items():
            self.client.put(key, a)
            self.assertEqual(self.client.get(key), a.tobytes(), key)
            out = np.empty_like(a)
            self.assertEqual(self.client.get_into(key, out), a.nbytes)
            self.assertTrue(np.array_equal(out, a), key)
            self.assertEqual(out.tobytes(), a.tobytes())

    def test_a_block_of_a_pool_is_a_destination(self):
        pool = np.zeros((8, 4096), dtype=np.uint8)
        block = np.arange(4096, dtype=np.uint32).astype(np.uint8)
        self.client.put(b"block", block)
        self.assertEqual(self.client.get_into(b"block", pool[3]), 4096)
        self.assertEqual(pool[3].tobytes(), block.tobytes())
        self.assertEqual(np.count_nonzero(pool[:3]), 0)
        self.assertEqual(np.count_nonzero(pool[4:]), 0)

    def test_a_view_is_a_zero_copy_array(self):
        a = np.linspace(0, 1, 100000, dtype=np.float64)
        self.client.put(b"view-array", a)
        with self.client.get_view(b"view-array") as view:
            seen = np.frombuffer(view.data, dtype=np.float64)
            self.assertTrue(np.array_equal(seen, a))
            self.assertFalse(seen.flags.writeable)
            with self.assertRaises(BufferError):
                view.close()  # the array still points into the receive buffer
            del seen

    def test_non_contiguous_and_read_only_arrays(self):
        a = np.arange(100, dtype=np.int32)
        with self.assertRaisesRegex(TypeError, "C-contiguous"):
            self.client.put(b"strided", a[::2])
        self.client.put(b"contiguous", np.ascontiguousarray(a[::2]))
        self.assertEqual(self.client.get(b"contiguous"), a[::2].tobytes())
        frozen = a.copy()
        frozen.flags.writeable = False
        self.client.put(b"frozen", frozen)  # readable is enough for put
        with self.assertRaisesRegex(TypeError, "writable"):
            self.client.get_into(b"frozen", frozen)
        self.assertEqual(self.client.get(b"frozen"), a.tobytes())

    def test_too_small_array_is_left_intact(self):
        self.client.put(b"big-array", np.ones(1000, dtype=np.float32))
        out = np.full(999, 7, dtype=np.float32)
        with self.assertRaises(kvrdma.BufferTooSmall) as ctx:
            self.client.get_into(b"big-array", out)
        self.assertEqual(ctx.exception.needed, 4000)
        self.assertTrue(np.all(out == 7))


if __name__ == "__main__":
    unittest.main()
