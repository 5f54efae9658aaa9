"""Memory the library hands out or registers (Memory) and zero-copy values (View).

Both expose their bytes as a memoryview over memory the C library owns. close() releases that
memoryview (later use of it raises ValueError) and refuses, with BufferError and the object still
usable, while anything made from it is alive: numpy arrays over it, slices, memoryview(...) of
it. The bytes therefore never vanish under a Python object. An object left unclosed is released
when it and everything made from it are garbage collected."""
import ctypes
import sys

from ._native import lib


class _Owner:
    """Releases one C handle once, on close() or when the last Python object over its bytes
    goes away (the ctypes array over the bytes keeps this alive)."""

    def __init__(self, handle, release):
        self.handle = handle
        self._release = release

    def release(self):
        handle, self.handle = self.handle, None
        if handle:
            self._release(handle)

    def __del__(self):
        self.release()


class _Region:
    """A memoryview over C-owned bytes that knows whether anything still uses them: every
    memoryview made from it (slices, memoryview(...), casts) shares one managed buffer, which
    holds the one extra reference to the ctypes array below, and exporters such as numpy hold
    an export of the memoryview itself."""

    def __init__(self, address, size, owner, readonly):
        self._readonly = readonly
        if size:
            array = (ctypes.c_char * size).from_address(address)
            array._kvrdma_owner = owner  # unclosed: freed only after the last view of it
        else:
            array = bytearray()
        self._array = array
        self.view = self._new_view()

    def _new_view(self):
        view = memoryview(self._array).cast("B")
        return view.toreadonly() if self._readonly else view

    def release(self, what):
        """Releases the memoryview; raises BufferError, the region still usable, while other
        objects still view the bytes."""
        try:
            self.view.release()
        except BufferError:
            raise BufferError("kvrdma: cannot close the %s while objects made from its buffer "
                              "export it (numpy arrays, ...); delete them first" % what) from None
        if sys.getrefcount(self._array) > 2:  # self._array and the argument: nothing else
            self.view = self._new_view()
            raise BufferError("kvrdma: cannot close the %s while memoryviews made from its "
                              "buffer (slices, casts) are alive; release or delete them first"
                              % what)


class View:
    """A value where the server wrote it in the client's receive buffer (kvrdma_get_view), zero
    copy. ``data`` is a read-only memoryview of its bytes, valid until close() (or the end of a
    ``with`` block); the buffer space stays held until then, so close views promptly. One thread
    at a time."""

    def __init__(self, handle):
        address = lib.kvrdma_view_data(handle) or 0
        size = lib.kvrdma_view_size(handle)
        self._owner = _Owner(handle, lib.kvrdma_view_release)
        self._region = _Region(address, size, self._owner, readonly=True)

    @property
    def data(self):
        """The value's bytes, a read-only memoryview (released by close())."""
        return self._region.view

    def __len__(self):
        return self.data.nbytes

    def __bytes__(self):
        return self.data.tobytes()

    @property
    def closed(self):
        return self._owner.handle is None

    def close(self):
        """Gives the buffer space back; a second call does nothing."""
        if self.closed:
            return
        self._region.release("view")
        self._owner.release()

    release = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "kvrdma.View(%s)" % ("closed" if self.closed else "%d bytes" % len(self))


class Memory:
    """Memory registered with a client's transport (Client.allocate or Client.register).
    ``buffer`` is a writable memoryview of all of it: use it (or numpy.frombuffer(m.buffer))
    as the application's block pool. get_into / put on a buffer lying inside it move the value
    straight between the server and these bytes. close() deregisters (allocated memory is then
    unmapped); a Client that closes closes those of its memories nothing else views, and the
    others stay mapped until closed or collected. Calls on several threads may use the buffer
    at once; close() must not race them."""

    def __init__(self, handle, client, pinned=None):
        self._client = client
        self._pinned = pinned  # register(): the caller's buffer, held while registered
        self.address = lib.kvrdma_mem_data(handle) or 0
        self.size = lib.kvrdma_mem_size(handle)
        self._owner = _Owner(handle, lib.kvrdma_mem_release)
        self._region = _Region(self.address, self.size, self._owner, readonly=False)

    @property
    def buffer(self):
        """All of the memory, a writable memoryview (released by close())."""
        return self._region.view

    @property
    def handle(self):
        return self._owner.handle

    @property
    def closed(self):
        return self._owner.handle is None

    def __len__(self):
        return self.size

    def locate(self, address, size):
        """The offset of [address, address + size) inside this memory, or None."""
        if self.closed or address < self.address or address + size > self.address + self.size:
            return None
        return address - self.address

    def close(self):
        """Deregisters the memory; a second call does nothing."""
        if self.closed:
            return
        self._region.release("memory")
        self._owner.release()
        if self._pinned is not None:
            self._pinned.release()
            self._pinned = None
        if self._client is not None:
            self._client._forget(self)
            self._client = None

    def _detach(self):
        """Its client closes: calls no longer find this memory; close() still frees it."""
        self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "kvrdma.Memory(%s)" % ("closed" if self.closed else "%d bytes" % self.size)
