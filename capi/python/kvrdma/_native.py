"""Loads libkvrdma and declares the C ABI prototypes (include/kvrdma/kvrdma.h) for ctypes.

Where the library comes from, first match wins:
1. next to the installed package: ``cmake --install`` puts the package in
   ``<prefix>/<libdir>/python3/dist-packages/kvrdma`` and the library in ``<prefix>/<libdir>``;
2. the path in the environment variable ``KVRDMA_LIBRARY`` (a source-tree build);
3. the dynamic loader's search (``libkvrdma.so.0`` on LD_LIBRARY_PATH, ldconfig's cache, ...).
"""
import ctypes
import os

_SONAME = "libkvrdma.so.0"

c_void_p = ctypes.c_void_p
c_size_t = ctypes.c_size_t
c_char_p = ctypes.c_char_p
c_int = ctypes.c_int
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64
_P = ctypes.POINTER


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    # kvrdma/ -> dist-packages/ -> python3/ -> <libdir>
    libdir = os.path.normpath(os.path.join(here, os.pardir, os.pardir, os.pardir))
    installed = os.path.join(libdir, _SONAME)
    if os.path.exists(installed):
        yield installed
    env = os.environ.get("KVRDMA_LIBRARY")
    if env:
        yield env
    yield _SONAME


def _load():
    tried = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise ImportError("kvrdma: cannot load the kvrdma C library; tried " + "; ".join(tried) +
                      ". Install kvrdma (cmake --install) or set KVRDMA_LIBRARY to the path of "
                      + _SONAME)


lib, library_path = _load()

_ERR = [c_char_p, c_size_t]  # every fallible call ends with errbuf, errlen

_PROTOTYPES = {
    # name: (restype, argtypes)
    "kvrdma_version": (c_char_p, []),
    "kvrdma_code_name": (c_char_p, [c_int]),
    "kvrdma_config_new": (c_void_p, []),
    "kvrdma_config_set": (c_int, [c_void_p, c_char_p, c_char_p] + _ERR),
    "kvrdma_config_free": (None, [c_void_p]),
    "kvrdma_server_start": (c_int, [c_void_p, _P(c_void_p)] + _ERR),
    "kvrdma_server_address": (c_char_p, [c_void_p]),
    "kvrdma_server_stop": (None, [c_void_p]),
    "kvrdma_server_stats": (c_int, [c_void_p, _P(c_void_p), _P(c_size_t)] + _ERR),
    "kvrdma_client_connect": (c_int, [c_void_p, _P(c_void_p)] + _ERR),
    "kvrdma_client_close": (None, [c_void_p]),
    "kvrdma_put": (c_int, [c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, c_uint64] + _ERR),
    "kvrdma_get": (c_int, [c_void_p, c_void_p, c_size_t, _P(c_void_p), _P(c_size_t)] + _ERR),
    "kvrdma_get_into": (c_int, [c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, _P(c_size_t)]
                        + _ERR),
    "kvrdma_get_view": (c_int, [c_void_p, c_void_p, c_size_t, _P(c_void_p)] + _ERR),
    "kvrdma_view_data": (c_void_p, [c_void_p]),
    "kvrdma_view_size": (c_size_t, [c_void_p]),
    "kvrdma_view_release": (None, [c_void_p]),
    "kvrdma_get_many": (c_int, [c_void_p, c_size_t, _P(c_void_p), _P(c_size_t), _P(c_void_p),
                                _P(c_int)] + _ERR),
    "kvrdma_put_many": (c_int, [c_void_p, c_size_t, _P(c_void_p), _P(c_size_t), _P(c_void_p),
                                _P(c_size_t), c_uint64, _P(c_int)] + _ERR),
    "kvrdma_delete": (c_int, [c_void_p, c_void_p, c_size_t] + _ERR),
    "kvrdma_client_stats": (c_int, [c_void_p, _P(c_void_p), _P(c_size_t)] + _ERR),
    "kvrdma_free": (None, [c_void_p]),
    # Registered memory: present in libraries that have issue 14's caller-memory calls.
    "kvrdma_client_register": (c_int, [c_void_p, c_void_p, c_size_t, c_int, _P(c_void_p)] + _ERR),
    "kvrdma_client_allocate": (c_int, [c_void_p, c_size_t, _P(c_void_p)] + _ERR),
    "kvrdma_mem_data": (c_void_p, [c_void_p]),
    "kvrdma_mem_size": (c_size_t, [c_void_p]),
    "kvrdma_mem_release": (None, [c_void_p]),
    "kvrdma_get_into_mem": (c_int, [c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, c_size_t,
                                    _P(c_size_t)] + _ERR),
    "kvrdma_put_from": (c_int, [c_void_p, c_void_p, c_size_t, c_void_p, c_size_t, c_size_t,
                                c_uint64] + _ERR),
    "kvrdma_get_many_into": (c_int, [c_void_p, c_size_t, _P(c_void_p), _P(c_size_t),
                                     _P(c_void_p), _P(c_size_t), _P(c_size_t), _P(c_size_t),
                                     _P(c_int)] + _ERR),
    "kvrdma_put_many_from": (c_int, [c_void_p, c_size_t, _P(c_void_p), _P(c_size_t),
                                     _P(c_void_p), _P(c_size_t), _P(c_size_t), c_uint64,
                                     _P(c_int)] + _ERR),
}

_MEMORY_CALLS = ("kvrdma_client_register", "kvrdma_client_allocate", "kvrdma_mem_data",
                 "kvrdma_mem_size", "kvrdma_mem_release", "kvrdma_get_into_mem",
                 "kvrdma_put_from", "kvrdma_get_many_into", "kvrdma_put_many_from")

for _name, (_restype, _argtypes) in _PROTOTYPES.items():
    if not hasattr(lib, _name):
        if _name in _MEMORY_CALLS:
            continue
        raise ImportError("kvrdma: %s lacks %s; it is older than this package" %
                          (library_path, _name))
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes

# True when the library has registered memory (allocate / register, get_into / put_from on it).
HAS_MEMORY = all(hasattr(lib, n) for n in _MEMORY_CALLS)

KVRDMA_MEM_HOST = 0

ERRLEN = 1024


def errbuf():
    """A fresh error buffer for one call (calls may run on several threads at once)."""
    return ctypes.create_string_buffer(ERRLEN)


def take_text(ptr):
    """Copies a NUL-terminated string the library allocated, then frees it with kvrdma_free."""
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        lib.kvrdma_free(ptr)
