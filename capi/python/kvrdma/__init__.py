"""kvrdma: a Python client (and embedded server) for the kvrdma key-value cache, over its C ABI
(libkvrdma.so.0) with ctypes only.

    import kvrdma
    with kvrdma.Server(memory_mb=64) as server, kvrdma.Client(server.address) as client:
        client.put(b"k", b"value")
        assert client.get(b"k") == b"value"

The library is loaded from next to the installed package (``<prefix>/<libdir>``, where
``cmake --install`` puts both), else from the path in KVRDMA_LIBRARY, else by the dynamic loader
(``libkvrdma.so.0``); ``kvrdma.library_path`` says which file was loaded.
"""
from ._native import HAS_MEMORY, library_path, lib as _lib
from .client import Client
from .errors import (DEADLINE_EXCEEDED, FAILED_PRECONDITION, INTERNAL, INVALID_ARGUMENT,
                     NOT_FOUND, OK, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAVAILABLE,
                     BufferTooSmall, Error, NotFound, code_name)
from .memory import Memory, View
from .server import Server

__version__ = _lib.kvrdma_version().decode()

__all__ = [
    "Client", "Server", "View", "Memory", "Error", "NotFound", "BufferTooSmall", "code_name",
    "library_path", "HAS_MEMORY", "OK", "NOT_FOUND", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION", "UNAVAILABLE", "DEADLINE_EXCEEDED", "PERMISSION_DENIED", "INTERNAL",
]
