"""Exceptions of the kvrdma package: one class per failure, carrying the C ABI's kvrdma_code."""
from ._native import lib

OK = 0
NOT_FOUND = 1
INVALID_ARGUMENT = 2
RESOURCE_EXHAUSTED = 3
FAILED_PRECONDITION = 4
UNAVAILABLE = 5
DEADLINE_EXCEEDED = 6
PERMISSION_DENIED = 7
INTERNAL = 8


def code_name(code):
    """"OK", "NOT_FOUND", ... for a kvrdma_code; "UNKNOWN" outside the enum."""
    return lib.kvrdma_code_name(int(code)).decode()


class Error(Exception):
    """A kvrdma call failed. ``code`` is the kvrdma_code (an int, never renumbered),
    ``code_name`` its name, ``message`` the library's text (what failed and what to do)."""

    def __init__(self, code, message):
        self.code = int(code)
        self.code_name = code_name(code)
        self.message = message
        super().__init__(message if message else self.code_name)


class NotFound(Error, KeyError):
    """The key is absent (NOT_FOUND). Also a KeyError, so ``except KeyError`` catches it."""

    def __str__(self):  # KeyError would quote the message
        return Exception.__str__(self)


class BufferTooSmall(Error):
    """get_into's buffer is smaller than the value (FAILED_PRECONDITION); ``needed`` is the
    value's size in bytes. Nothing was written to the buffer."""

    def __init__(self, code, message, needed):
        super().__init__(code, message)
        self.needed = needed


def error(code, err):
    """The exception for a failed call: `err` is its error buffer (ctypes) or a str."""
    message = err if isinstance(err, str) else err.value.decode("utf-8", "replace")
    if code == NOT_FOUND:
        return NotFound(code, message)
    return Error(code, message)


def check(code, err):
    """Raises the exception of `code` unless it is OK."""
    if code != OK:
        raise error(code, err)
