"""Client: the kvrdma client C ABI as a Python class."""
import ctypes

from . import _native
from ._buffers import Pinned, key_bytes
from ._native import lib
from .errors import (FAILED_PRECONDITION, NOT_FOUND, OK, BufferTooSmall, Error, check, code_name,
                     error)
from .memory import Memory, View
from .server import Config, parse_stats

_ERRLEN = _native.ERRLEN


def _key_arrays(keys):
    keys = [key_bytes(k) for k in keys]
    n = len(keys)
    ptrs = (ctypes.c_void_p * n)(*[ctypes.cast(ctypes.c_char_p(k), ctypes.c_void_p) for k in keys])
    lens = (ctypes.c_size_t * n)(*[len(k) for k in keys])
    return keys, ptrs, lens


def _raise_batch_failure(rc, codes, err):
    """Raises the Error of a batch's first failed item other than a miss (misses are None in
    the results). errbuf describes the batch's first failure; another item gets its code name."""
    if rc == OK:
        return
    n = len(codes)
    failed = [i for i in range(n) if codes[i] not in (OK, NOT_FOUND)]
    if not failed and any(codes[i] == NOT_FOUND for i in range(n)):
        return
    message = err.value.decode("utf-8", "replace")
    if not failed:
        raise Error(rc, message)
    i = failed[0]
    first = next(j for j in range(n) if codes[j] != OK)
    if first != i:
        message = "item %d: %s (the batch's first failure: %s)" % (i, code_name(codes[i]),
                                                                   message)
    raise error(codes[i], message)


class Client:
    """A connection to a kvrdma server. ``Client(server_addr="127.0.0.1:7000", timeout_ms=2000)``
    takes the client settings of kvrdma_config_set with ``_`` for ``-`` (server_addr, buffer_mb,
    timeout_ms, mock, provider, auth_token, tls_ca, ...; values str, int or bool). Keys are
    bytes, str (UTF-8) or any buffer. Failures raise kvrdma.Error (NotFound for an absent key).
    The C client is thread-safe and every call releases the GIL, so threads may share one
    Client; close() must not race the other calls."""

    def __init__(self, server_addr=None, **settings):
        self._handle = None
        self._memories = []
        handle = ctypes.c_void_p()
        with Config(dict(settings, server_addr=server_addr)) as config:
            err = _native.errbuf()
            check(lib.kvrdma_client_connect(config.handle, ctypes.byref(handle), err, _ERRLEN),
                  err)
        self._handle = handle

    def _client(self):
        if not self._handle:
            raise Error(FAILED_PRECONDITION, "the client is closed; make a new kvrdma.Client")
        return self._handle

    # -- single keys ------------------------------------------------------------------------

    def put(self, key, value, ttl_ms=0):
        """Stores `value` (any C-contiguous buffer: bytes, bytearray, memoryview, numpy array)
        under `key`; ttl_ms 0 means no expiry. A value inside this client's Memory goes straight
        from there (kvrdma_put_from); any other is copied by the library."""
        k = key_bytes(key)
        client = self._client()
        err = _native.errbuf()
        with Pinned(value, writable=False) as v:
            mem, offset = self._locate(v.address, v.size)
            if mem is not None:
                rc = lib.kvrdma_put_from(client, k, len(k), mem.handle, offset, v.size, ttl_ms,
                                         err, _ERRLEN)
            else:
                rc = lib.kvrdma_put(client, k, len(k), v.address, v.size, ttl_ms, err, _ERRLEN)
        check(rc, err)

    def get(self, key):
        """The value of `key` as bytes; NotFound when absent."""
        k = key_bytes(key)
        client = self._client()
        val, size = ctypes.c_void_p(), ctypes.c_size_t()
        err = _native.errbuf()
        check(lib.kvrdma_get(client, k, len(k), ctypes.byref(val), ctypes.byref(size), err,
                             _ERRLEN), err)
        try:
            return ctypes.string_at(val, size.value) if size.value else b""
        finally:
            lib.kvrdma_free(val)

    def get_into(self, key, buffer):
        """Writes the value of `key` to the start of `buffer` (any writable C-contiguous buffer)
        and returns its size in bytes. A buffer inside this client's Memory receives it straight
        from the server (kvrdma_get_into_mem); any other gets a copy. A buffer smaller than the
        value raises BufferTooSmall (its ``needed`` is the value's size) and is left as it was;
        NotFound when absent."""
        k = key_bytes(key)
        client = self._client()
        size = ctypes.c_size_t(0)
        err = _native.errbuf()
        with Pinned(buffer, writable=True, what="buffer") as b:
            mem, offset = self._locate(b.address, b.size)
            if mem is not None:
                rc = lib.kvrdma_get_into_mem(client, k, len(k), mem.handle, offset, b.size,
                                             ctypes.byref(size), err, _ERRLEN)
            else:
                rc = lib.kvrdma_get_into(client, k, len(k), b.address, b.size,
                                         ctypes.byref(size), err, _ERRLEN)
            capacity = b.size
        if rc == FAILED_PRECONDITION and size.value > capacity:
            raise BufferTooSmall(rc, err.value.decode("utf-8", "replace"), size.value)
        check(rc, err)
        return size.value

    def get_view(self, key):
        """The value of `key` where the server wrote it (zero copy), as a kvrdma.View:
        ``with client.get_view(k) as v: use(v.data)``. NotFound when absent."""
        k = key_bytes(key)
        client = self._client()
        handle = ctypes.c_void_p()
        err = _native.errbuf()
        check(lib.kvrdma_get_view(client, k, len(k), ctypes.byref(handle), err, _ERRLEN), err)
        return View(handle)

    def delete(self, key):
        """Removes `key`; NotFound when it was absent."""
        k = key_bytes(key)
        client = self._client()
        err = _native.errbuf()
        check(lib.kvrdma_delete(client, k, len(k), err, _ERRLEN), err)

    # -- batches ----------------------------------------------------------------------------

    def get_many(self, keys):
        """The values of `keys` in one round trip, in order: bytes, or None for an absent key.
        Any other failure of an item raises that item's Error (duplicates are fine)."""
        client = self._client()
        keys, ptrs, lens = _key_arrays(keys)
        n = len(keys)
        if n == 0:
            return []
        views = (ctypes.c_void_p * n)()
        codes = (ctypes.c_int * n)()
        err = _native.errbuf()
        rc = lib.kvrdma_get_many(client, n, ptrs, lens, views, codes, err, _ERRLEN)
        out = [None] * n
        try:
            for i in range(n):
                if views[i]:
                    size = lib.kvrdma_view_size(views[i])
                    out[i] = ctypes.string_at(lib.kvrdma_view_data(views[i]), size) if size else b""
        finally:
            for i in range(n):
                lib.kvrdma_view_release(views[i])
        _raise_batch_failure(rc, codes, err)
        return out

    def get_many_into(self, keys, buffers):
        """Writes the value of keys[i] to the start of buffers[i] (writable C-contiguous
        buffers), in one round trip; returns the sizes in order, None for an absent key. When
        every buffer lies in this client's Memory the server writes straight into them
        (kvrdma_get_many_into); otherwise the values are copied out of the receive buffer. A
        buffer smaller than its value is an error of that item (FAILED_PRECONDITION) and is
        left as it was; any failure but a miss raises that item's Error."""
        client = self._client()
        keys, ptrs, lens = _key_arrays(keys)
        n = len(keys)
        if len(buffers) != n:
            raise ValueError("kvrdma: get_many_into needs one buffer per key (%d keys, %d "
                             "buffers)" % (n, len(buffers)))
        if n == 0:
            return []
        pins = []
        try:
            for b in buffers:
                pins.append(Pinned(b, writable=True, what="buffer"))
            spots = [self._locate(p.address, p.size) for p in pins]
            if all(m is not None for m, _ in spots):
                return self._get_many_into_memory(client, n, ptrs, lens, pins, spots)
            return self._get_many_copied(client, n, ptrs, lens, pins)
        finally:
            for p in pins:
                p.release()

    def _get_many_into_memory(self, client, n, ptrs, lens, pins, spots):
        mems = (ctypes.c_void_p * n)(*[m.handle for m, _ in spots])
        offsets = (ctypes.c_size_t * n)(*[o for _, o in spots])
        capacities = (ctypes.c_size_t * n)(*[p.size for p in pins])
        sizes = (ctypes.c_size_t * n)()
        codes = (ctypes.c_int * n)()
        err = _native.errbuf()
        rc = lib.kvrdma_get_many_into(client, n, ptrs, lens, mems, offsets, capacities, sizes,
                                      codes, err, _ERRLEN)
        _raise_batch_failure(rc, codes, err)
        return [sizes[i] if codes[i] == OK else None for i in range(n)]

    def _get_many_copied(self, client, n, ptrs, lens, pins):
        views = (ctypes.c_void_p * n)()
        codes = (ctypes.c_int * n)()
        err = _native.errbuf()
        rc = lib.kvrdma_get_many(client, n, ptrs, lens, views, codes, err, _ERRLEN)
        out = [None] * n
        try:
            for i in range(n):
                if not views[i]:
                    continue
                size = lib.kvrdma_view_size(views[i])
                if size > pins[i].size:
                    raise BufferTooSmall(FAILED_PRECONDITION, "item %d: buffer of %d bytes is "
                                         "too small; the value has %d bytes" %
                                         (i, pins[i].size, size), size)
                ctypes.memmove(pins[i].address, lib.kvrdma_view_data(views[i]), size)
                out[i] = size
        finally:
            for i in range(n):
                lib.kvrdma_view_release(views[i])
        _raise_batch_failure(rc, codes, err)
        return out

    def put_many(self, items, ttl_ms=0):
        """Stores many values: `items` is a dict or an iterable of (key, value) pairs, values
        any C-contiguous buffers. Small values go together in one round trip. When every value
        lies in this client's Memory they go straight from there (kvrdma_put_many_from). Raises
        the Error of the first failed item, naming its index (the others may have been stored)."""
        client = self._client()
        pairs = list(items.items() if hasattr(items, "items") else items)
        keys, kptrs, klens = _key_arrays([k for k, _ in pairs])
        n = len(keys)
        if n == 0:
            return
        pins = []
        try:
            for _, v in pairs:
                pins.append(Pinned(v, writable=False))
            codes = (ctypes.c_int * n)()
            lens = (ctypes.c_size_t * n)(*[p.size for p in pins])
            err = _native.errbuf()
            spots = [self._locate(p.address, p.size) for p in pins]
            if all(m is not None for m, _ in spots):
                mems = (ctypes.c_void_p * n)(*[m.handle for m, _ in spots])
                offsets = (ctypes.c_size_t * n)(*[o for _, o in spots])
                rc = lib.kvrdma_put_many_from(client, n, kptrs, klens, mems, offsets, lens,
                                              ttl_ms, codes, err, _ERRLEN)
            else:
                vptrs = (ctypes.c_void_p * n)(*[p.address or None for p in pins])
                rc = lib.kvrdma_put_many(client, n, kptrs, klens, vptrs, lens, ttl_ms, codes,
                                         err, _ERRLEN)
        finally:
            for p in pins:
                p.release()
        check(rc, err)

    # -- registered memory -------------------------------------------------------------------

    @staticmethod
    def has_memory():
        """True when the loaded library has registered memory (allocate / register)."""
        return _native.HAS_MEMORY

    def allocate(self, size):
        """`size` bytes of memory registered with the transport (kvrdma_client_allocate; shared
        memory on the mock), as a kvrdma.Memory to use as the application's block pool."""
        client = self._client()
        self._require_memory("allocate")
        handle = ctypes.c_void_p()
        err = _native.errbuf()
        check(lib.kvrdma_client_allocate(client, size, ctypes.byref(handle), err, _ERRLEN), err)
        return self._remember(Memory(handle, self))

    def register(self, buffer):
        """Registers the caller's writable buffer with the transport (kvrdma_client_register,
        host memory) and returns its kvrdma.Memory; the buffer stays exported (it cannot be
        resized) until the Memory is closed. The mock transport refuses (FAILED_PRECONDITION):
        use allocate() there."""
        client = self._client()
        self._require_memory("register")
        pin = Pinned(buffer, writable=True, what="buffer")
        handle = ctypes.c_void_p()
        err = _native.errbuf()
        rc = lib.kvrdma_client_register(client, pin.address, pin.size, _native.KVRDMA_MEM_HOST,
                                        ctypes.byref(handle), err, _ERRLEN)
        if rc != OK:
            pin.release()
            raise error(rc, err)
        return self._remember(Memory(handle, self, pinned=pin))

    def _require_memory(self, what):
        if not _native.HAS_MEMORY:
            raise Error(FAILED_PRECONDITION, "%s needs a kvrdma library with registered memory "
                        "(kvrdma_client_allocate); %s has none: use a newer build" %
                        (what, _native.library_path))

    def _remember(self, memory):
        self._memories.append(memory)
        return memory

    def _forget(self, memory):
        self._memories = [m for m in self._memories if m is not memory]

    def _locate(self, address, size):
        for m in self._memories:
            offset = m.locate(address, size)
            if offset is not None:
                return m, offset
        return None, 0

    # -- the rest ----------------------------------------------------------------------------

    def stats(self):
        """The server's counters as a dict (name -> int, or str for text such as "transport")."""
        client = self._client()
        text = ctypes.c_void_p()
        err = _native.errbuf()
        check(lib.kvrdma_client_stats(client, ctypes.byref(text), None, err, _ERRLEN), err)
        return parse_stats(_native.take_text(text))

    def close(self):
        """Closes the client and those of its memories nothing else uses; a second call does
        nothing. A Memory still viewed (numpy arrays, memoryviews over it) stays mapped, no
        longer usable for calls, until it is closed or collected (a kvrdma_mem outlives its
        client and then only frees)."""
        for m in list(self._memories):
            try:
                m.close()
            except BufferError:
                m._detach()
        self._memories = []
        handle, self._handle = self._handle, None
        if handle:
            lib.kvrdma_client_close(handle)

    @property
    def closed(self):
        return not self._handle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self):
        return "kvrdma.Client(%s)" % ("closed" if self.closed else "open")

