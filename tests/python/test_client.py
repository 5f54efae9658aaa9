"""kvrdma.Client against an embedded kvrdma.Server: round trips, errors, views, batches, stats."""
import array
import ctypes
import mmap
import threading
import unittest

import kvrdma
from kvrdma_testing import ServerTestCase, pattern

MiB = 1 << 20


class RoundTripTest(ServerTestCase):
    def test_small_large_and_empty_values_round_trip_byte_for_byte(self):
        for i, size in enumerate([0, 1, 100, 64 * 1024, 64 * 1024 + 1, 300 * 1024]):
            value = pattern(size, seed=i)
            key = b"rt-%d" % size
            self.client.put(key, value)
            self.assertEqual(self.client.get(key), value)

    def test_keys_may_be_str_bytes_or_buffers_and_binary(self):
        self.client.put("clé", b"unicode key")
        self.assertEqual(self.client.get("clé".encode()), b"unicode key")
        binary_key = bytes(range(256))
        self.client.put(bytearray(binary_key), b"binary key")
        self.assertEqual(self.client.get(memoryview(binary_key)), b"binary key")

    def test_four_mib_value_is_written_by_the_transport_both_ways(self):
        value = pattern(4 * MiB, seed=4)
        before = self.client.stats()
        self.client.put(b"four-mib", value)
        self.assertEqual(self.client.get(b"four-mib"), value)
        after = self.client.stats()
        self.assertEqual(after["bytes_put_committed"] - before["bytes_put_committed"], 4 * MiB)
        self.assertEqual(after["bytes_transport_written"] - before["bytes_transport_written"],
                         4 * MiB)
        out = bytearray(4 * MiB)
        self.assertEqual(self.client.get_into(b"four-mib", out), 4 * MiB)
        self.assertEqual(bytes(out), value)

    def test_put_replaces_and_delete_removes(self):
        self.client.put(b"d", b"first")
        self.client.put(b"d", b"second")
        self.assertEqual(self.client.get(b"d"), b"second")
        self.client.delete(b"d")
        with self.assertRaises(kvrdma.NotFound):
            self.client.get(b"d")
        with self.assertRaises(kvrdma.NotFound) as ctx:
            self.client.delete(b"d")
        self.assertEqual(ctx.exception.code, kvrdma.NOT_FOUND)

    def test_threads_share_one_client(self):
        failures = []

        def worker(t):
            try:
                for i in range(20):
                    value = pattern(1000 + 5000 * t, seed=100 * t + i)
                    self.client.put(b"thread-%d-%d" % (t, i), value)
                    if self.client.get(b"thread-%d-%d" % (t, i)) != value:
                        failures.append((t, i))
            except kvrdma.Error as e:
                failures.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads))
        self.assertEqual(failures, [])


class BufferTypesTest(ServerTestCase):
    def test_put_from_every_readable_buffer_type(self):
        raw = pattern(200 * 1024, seed=7)
        ints = array.array("I", range(1000))
        with mmap.mmap(-1, len(raw)) as mapped:
            mapped.write(raw)
            sources = {
                b"bytes": (raw, raw),
                b"bytearray": (bytearray(raw), raw),
                b"memoryview": (memoryview(raw), raw),
                b"slice": (memoryview(raw)[1000:5000], raw[1000:5000]),
                b"readonly": (memoryview(bytearray(raw)).toreadonly(), raw),
                b"array": (ints, ints.tobytes()),
                b"mmap": (mapped, raw),
                b"ctypes": ((ctypes.c_char * 10).from_buffer_copy(raw[:10]), raw[:10]),
            }
            for key, (source, expected) in sources.items():
                self.client.put(key, source)
                self.assertEqual(self.client.get(key), expected, key)

    def test_get_into_every_writable_buffer_type(self):
        value = pattern(150 * 1024, seed=8)
        self.client.put(b"into", value)
        target = bytearray(len(value) + 10)
        self.assertEqual(self.client.get_into(b"into", target), len(value))
        self.assertEqual(bytes(target[:len(value)]), value)
        self.assertEqual(bytes(target[len(value):]), bytes(10))

        big = bytearray(len(value) + 100)
        self.assertEqual(self.client.get_into(b"into", memoryview(big)[50:]), len(value))
        self.assertEqual(bytes(big[50:50 + len(value)]), value)
        self.assertEqual(bytes(big[:50]), bytes(50))

        words = array.array("B", bytes(len(value)))
        self.assertEqual(self.client.get_into(b"into", words), len(value))
        self.assertEqual(words.tobytes(), value)

        with mmap.mmap(-1, len(value)) as mapped:
            self.assertEqual(self.client.get_into(b"into", mapped), len(value))
            self.assertEqual(mapped[:], value)

    def test_get_into_a_small_buffer_names_the_size_and_writes_nothing(self):
        self.client.put(b"too-big", pattern(5000, seed=9))
        target = bytearray(b"\xab" * 4999)
        with self.assertRaises(kvrdma.BufferTooSmall) as ctx:
            self.client.get_into(b"too-big", target)
        self.assertEqual(ctx.exception.code, kvrdma.FAILED_PRECONDITION)
        self.assertEqual(ctx.exception.code_name, "FAILED_PRECONDITION")
        self.assertEqual(ctx.exception.needed, 5000)
        self.assertIn("5000", str(ctx.exception))
        self.assertEqual(bytes(target), b"\xab" * 4999)

    def test_buffers_of_the_wrong_kind_are_refused_clearly(self):
        with self.assertRaisesRegex(TypeError, "writable buffer"):
            self.client.get_into(b"too-big", b"read-only bytes")
        with self.assertRaisesRegex(TypeError, "C-contiguous"):
            self.client.put(b"strided", memoryview(bytearray(100))[::2])
        with self.assertRaisesRegex(TypeError, "key"):
            self.client.put(12, b"value")
        with self.assertRaisesRegex(TypeError, "buffer"):
            self.client.put(b"k", 12)


class ErrorsTest(ServerTestCase):
    def test_not_found_is_an_error_and_a_key_error_with_its_code(self):
        with self.assertRaises(kvrdma.NotFound) as ctx:
            self.client.get(b"absent")
        e = ctx.exception
        self.assertIsInstance(e, kvrdma.Error)
        self.assertIsInstance(e, KeyError)
        self.assertEqual((e.code, e.code_name), (1, "NOT_FOUND"))
        with self.assertRaises(kvrdma.NotFound):
            self.client.get_view(b"absent")
        with self.assertRaises(kvrdma.NotFound):
            self.client.get_into(b"absent", bytearray(10))

    def test_bad_settings_raise_invalid_argument_with_the_librarys_message(self):
        with self.assertRaises(kvrdma.Error) as ctx:
            kvrdma.Client(server_addr=self.server.address, no_such_setting=1)
        self.assertEqual(ctx.exception.code, kvrdma.INVALID_ARGUMENT)
        self.assertEqual(ctx.exception.code_name, "INVALID_ARGUMENT")
        self.assertIn("no-such-setting", str(ctx.exception))
        with self.assertRaises(kvrdma.Error) as ctx:
            kvrdma.Client(server_addr=self.server.address, timeout_ms="soon")
        self.assertEqual(ctx.exception.code, kvrdma.INVALID_ARGUMENT)
        self.assertNotIsInstance(ctx.exception, kvrdma.NotFound)

    def test_a_server_that_is_not_there_is_unavailable_or_a_deadline(self):
        with kvrdma.Server(memory_mb=8, log_level="error") as gone:
            address = gone.address
        with self.assertRaises(kvrdma.Error) as ctx:
            kvrdma.Client(server_addr=address, timeout_ms=1000, log_level="error")
        self.assertIn(ctx.exception.code, (kvrdma.UNAVAILABLE, kvrdma.DEADLINE_EXCEEDED))
        self.assertTrue(str(ctx.exception))

    def test_a_closed_client_refuses_calls(self):
        client = kvrdma.Client(server_addr=self.server.address, log_level="error")
        client.put(b"closed", b"v")
        client.close()
        client.close()
        self.assertTrue(client.closed)
        with self.assertRaises(kvrdma.Error) as ctx:
            client.get(b"closed")
        self.assertEqual(ctx.exception.code, kvrdma.FAILED_PRECONDITION)
        self.assertEqual(self.client.get(b"closed"), b"v")

    def test_bad_server_settings_and_a_stopped_server(self):
        with self.assertRaises(kvrdma.Error) as ctx:
            kvrdma.Server(memory_mb=0)
        self.assertEqual(ctx.exception.code, kvrdma.INVALID_ARGUMENT)
        self.assertIn("memory-mb", str(ctx.exception))
        server = kvrdma.Server(memory_mb=8, log_level="error")
        self.assertEqual(server.stats()["pool_bytes"], 8 * MiB)
        server.stop()
        server.stop()
        with self.assertRaises(kvrdma.Error) as ctx:
            server.stats()
        self.assertEqual(ctx.exception.code, kvrdma.FAILED_PRECONDITION)

    def test_code_names(self):
        self.assertEqual(kvrdma.code_name(kvrdma.RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED")
        self.assertEqual(kvrdma.code_name(99), "UNKNOWN")


class ViewTest(ServerTestCase):
    def test_view_reads_the_value_in_place_until_closed(self):
        value = pattern(2 * MiB, seed=11)
        self.client.put(b"view", value)
        with self.client.get_view(b"view") as view:
            self.assertEqual(len(view), len(value))
            self.assertTrue(view.data.readonly)
            self.assertEqual(view.data.tobytes(), value)
            self.assertEqual(bytes(view), value)
            data = view.data
        self.assertTrue(view.closed)
        with self.assertRaises(ValueError):
            data[0]
        view.close()  # a second close does nothing

    def test_a_view_with_exports_refuses_to_close_until_they_go(self):
        self.client.put(b"exported", b"0123456789" * 10000)
        view = self.client.get_view(b"exported")
        export = memoryview(view.data)
        with self.assertRaises(BufferError):
            view.close()
        self.assertFalse(view.closed)
        self.assertEqual(export[:10].tobytes(), b"0123456789")
        export.release()
        view.close()
        self.assertTrue(view.closed)

    def test_many_views_opened_and_closed_keep_the_buffer_usable(self):
        # The receive buffer is 16 MiB: 40 views of 1 MiB fit only if closing gives space back.
        value = pattern(MiB, seed=12)
        self.client.put(b"cycle", value)
        for _ in range(40):
            with self.client.get_view(b"cycle") as view:
                self.assertEqual(view.data[-100:].tobytes(), value[-100:])
        self.assertEqual(self.client.get(b"cycle"), value)

    def test_views_dropped_unclosed_give_their_space_back(self):
        # Nothing else holds the view: dropping it releases it (16 MiB buffer, 40 x 1 MiB).
        value = pattern(MiB, seed=13)
        self.client.put(b"dropped", value)
        for _ in range(40):
            self.assertEqual(self.client.get_view(b"dropped").data[:64].tobytes(), value[:64])
        self.assertEqual(self.client.get(b"dropped"), value)

    def test_empty_value_view(self):
        self.client.put(b"empty", b"")
        with self.client.get_view(b"empty") as view:
            self.assertEqual(len(view), 0)
            self.assertEqual(bytes(view), b"")


class BatchTest(ServerTestCase):
    def test_put_many_then_get_many_with_misses_in_order(self):
        items = [(b"batch-%d" % i, pattern(size, seed=i))
                 for i, size in enumerate([10, 0, 70 * 1024, 1000, 2 * MiB])]
        self.client.put_many(items)
        keys = [b"batch-0", b"missing-1", b"batch-4", b"batch-1", b"batch-2", b"missing-2",
                b"batch-0", b"batch-3"]
        got = self.client.get_many(keys)
        expected = dict(items)
        self.assertEqual(got, [expected.get(k) for k in keys])
        self.assertEqual(got[1], None)
        self.assertEqual(got[3], b"")

    def test_get_many_into_buffers_with_misses_and_a_small_buffer(self):
        values = [pattern(size, seed=80 + i) for i, size in enumerate([3000, 100 * 1024, 0])]
        self.client.put_many([(b"into-%d" % i, v) for i, v in enumerate(values)])
        buffers = [bytearray(100 * 1024) for _ in range(4)]
        sizes = self.client.get_many_into([b"into-1", b"into-missing", b"into-0", b"into-2"],
                                          buffers)
        self.assertEqual(sizes, [100 * 1024, None, 3000, 0])
        self.assertEqual(bytes(buffers[0]), values[1])
        self.assertEqual(bytes(buffers[1]), bytes(100 * 1024))
        self.assertEqual(bytes(buffers[2][:3000]), values[0])
        small = bytearray(b"\xcd" * 2999)
        with self.assertRaises(kvrdma.BufferTooSmall) as ctx:
            self.client.get_many_into([b"into-0"], [small])
        self.assertEqual(ctx.exception.needed, 3000)
        self.assertEqual(bytes(small), b"\xcd" * 2999)
        with self.assertRaises(ValueError):
            self.client.get_many_into([b"into-0"], [])

    def test_put_many_takes_a_dict_and_any_buffers(self):
        self.client.put_many({"dict-a": bytearray(b"A" * 100), b"dict-b": memoryview(b"B" * 9)},
                             ttl_ms=0)
        self.assertEqual(self.client.get_many(["dict-a", "dict-b"]), [b"A" * 100, b"B" * 9])

    def test_empty_batches(self):
        self.assertEqual(self.client.get_many([]), [])
        self.client.put_many([])

    def test_get_many_of_only_misses(self):
        self.assertEqual(self.client.get_many([b"nope-1", b"nope-2"]), [None, None])


class StatsTest(ServerTestCase):
    def test_stats_are_a_dict_of_the_servers_figures(self):
        before = self.client.stats()
        for name in ("keys", "puts", "gets", "get_hits", "get_misses", "deletes", "evictions",
                     "pool_bytes", "pool_used_bytes", "transport", "version"):
            self.assertIn(name, before)
        self.assertEqual(before["transport"], "mock")
        self.assertEqual(before["pool_bytes"], 64 * MiB)
        self.client.put(b"counted", b"x" * 100)
        self.client.get(b"counted")
        with self.assertRaises(kvrdma.NotFound):
            self.client.get(b"not-counted")
        after = self.client.stats()
        self.assertEqual(after["puts"] - before["puts"], 1)
        self.assertEqual(after["get_hits"] - before["get_hits"], 1)
        self.assertEqual(after["get_misses"] - before["get_misses"], 1)
        self.assertEqual(after["keys"] - before["keys"], 1)
        self.assertEqual(self.server.stats()["keys"], after["keys"])


if __name__ == "__main__":
    unittest.main()
