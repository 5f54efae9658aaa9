"""Settings and the embedded Server (kvrdma_server_start / kvrdma_server_stop)."""
import ctypes

from . import _native
from ._native import lib
from .errors import FAILED_PRECONDITION, Error, check


def _setting_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


class Config:
    """A kvrdma_config built from keyword settings; owns the C handle until close().
    Names are the kvrdma_config_set names (the kv-server / kv-client flag names) with '_'
    for '-': ``memory_mb=64`` sets memory-mb. Values are str, int or bool."""

    def __init__(self, settings):
        self._handle = lib.kvrdma_config_new()
        if not self._handle:
            raise MemoryError("kvrdma: kvrdma_config_new failed (out of memory)")
        try:
            for name, value in settings.items():
                if value is None:
                    continue
                err = _native.errbuf()
                rc = lib.kvrdma_config_set(self._handle, name.replace("_", "-").encode(),
                                           _setting_value(value).encode(), err, _native.ERRLEN)
                check(rc, err)
        except BaseException:
            self.close()
            raise

    @property
    def handle(self):
        return self._handle

    def close(self):
        lib.kvrdma_config_free(self._handle)
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def parse_stats(text):
    """A dict from "name=value" lines; values that are whole numbers become ints."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        try:
            out[name] = int(value)
        except ValueError:
            out[name] = value
    return out


class Server:
    """A kvrdma server running inside this process (its gRPC and transport threads are the
    library's). ``Server(listen_addr="127.0.0.1:0", memory_mb=64, ...)`` takes the server
    settings of kvrdma_config_set (``_`` for ``-``); port 0 picks a free port, and ``address``
    is the one bound. Stop it with stop() or a ``with`` block. Methods may be called from any
    thread; stop() must not race the others."""

    def __init__(self, listen_addr="127.0.0.1:0", **settings):
        self._handle = None
        settings = dict(settings, listen_addr=listen_addr)
        handle = ctypes.c_void_p()
        with Config(settings) as config:
            err = _native.errbuf()
            rc = lib.kvrdma_server_start(config.handle, ctypes.byref(handle), err,
                                         _native.ERRLEN)
            check(rc, err)
        self._handle = handle
        self.address = lib.kvrdma_server_address(handle).decode()

    def stats(self):
        """The server's counters read directly (no RPC), as parse_stats gives them."""
        if not self._handle:
            raise Error(FAILED_PRECONDITION, "the server is stopped; start a new kvrdma.Server")
        text = ctypes.c_void_p()
        err = _native.errbuf()
        rc = lib.kvrdma_server_stats(self._handle, ctypes.byref(text), None, err, _native.ERRLEN)
        check(rc, err)
        return parse_stats(_native.take_text(text))

    def stop(self):
        """Stops the server and frees it; a second call does nothing."""
        handle, self._handle = self._handle, None
        if handle:
            lib.kvrdma_server_stop(handle)

    close = stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def __del__(self):
        self.stop()

    def __repr__(self):
        return "kvrdma.Server(%r%s)" % (self.address, "" if self._handle else ", stopped")
