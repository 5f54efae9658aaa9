"""The address and length of any object with the buffer protocol (bytes, bytearray, memoryview,
array.array, numpy arrays, mmap, ...), read-only ones included, without copying it.

ctypes' from_buffer only takes writable buffers, so this asks CPython directly
(PyObject_GetBuffer / PyBuffer_Release through ctypes.pythonapi)."""
import ctypes

_PyBUF_SIMPLE = 0  # a C-contiguous run of bytes, as the exporter holds it
_PyBUF_WRITABLE = 1


class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
                ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int),
                ("ndim", ctypes.c_int), ("format", ctypes.c_char_p),
                ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
                ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p)]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_release_buffer.restype = None


class Pinned:
    """Holds `obj`'s buffer exported (so it can neither move nor shrink) while in a ``with``
    block; ``address`` and ``size`` describe its bytes. Single-threaded: one per call."""

    def __init__(self, obj, writable, what="value"):
        self._held = False
        self._view = _PyBuffer()
        flags = _PyBUF_SIMPLE | (_PyBUF_WRITABLE if writable else 0)
        try:
            _get_buffer(obj, ctypes.byref(self._view), flags)
        except (BufferError, TypeError, ValueError) as e:
            kind = "writable " if writable else ""
            raise TypeError("kvrdma: the %s must be a C-contiguous %sbuffer (bytes, bytearray, "
                            "memoryview, numpy array, ...; numpy.ascontiguousarray makes one), "
                            "not %s: %s" % (what, kind, type(obj).__name__, e)) from None
        self.address = self._view.buf or 0
        self.size = self._view.len
        self._held = True

    def release(self):
        if self._held:
            self._held = False
            _release_buffer(ctypes.byref(self._view))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        self.release()


def key_bytes(key):
    """A key as bytes: bytes as is, str as UTF-8, any other buffer copied (keys are short)."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    try:
        return bytes(memoryview(key).cast("B"))
    except TypeError:
        raise TypeError("kvrdma: a key is bytes, str or a buffer, not %s" %
                        type(key).__name__) from None
