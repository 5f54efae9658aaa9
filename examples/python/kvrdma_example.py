"""kvrdma from Python through its C ABI, with ctypes only (standard library).

Usage: KVRDMA_LIBRARY=/path/to/libkvrdma.so python3 kvrdma_example.py
"""
import ctypes
import os
import sys

lib = ctypes.CDLL(os.environ.get("KVRDMA_LIBRARY", "libkvrdma.so.0"))
c_size_p = ctypes.POINTER(ctypes.c_size_t)
lib.kvrdma_version.restype = ctypes.c_char_p
lib.kvrdma_code_name.restype = ctypes.c_char_p
lib.kvrdma_config_new.restype = ctypes.c_void_p
lib.kvrdma_config_set.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
lib.kvrdma_config_free.argtypes = [ctypes.c_void_p]
lib.kvrdma_server_start.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
lib.kvrdma_server_address.argtypes = [ctypes.c_void_p]
lib.kvrdma_server_address.restype = ctypes.c_char_p
lib.kvrdma_server_stop.argtypes = [ctypes.c_void_p]
lib.kvrdma_client_connect.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
lib.kvrdma_client_close.argtypes = [ctypes.c_void_p]
lib.kvrdma_put.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
                           ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
lib.kvrdma_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p),
                           c_size_p, ctypes.c_char_p, ctypes.c_size_t]
lib.kvrdma_delete.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
lib.kvrdma_get_view.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p),
                                ctypes.c_char_p, ctypes.c_size_t]
lib.kvrdma_view_data.argtypes = [ctypes.c_void_p]
lib.kvrdma_view_data.restype = ctypes.c_void_p
lib.kvrdma_view_size.argtypes = [ctypes.c_void_p]
lib.kvrdma_view_size.restype = ctypes.c_size_t
lib.kvrdma_view_release.argtypes = [ctypes.c_void_p]
lib.kvrdma_client_stats.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), c_size_p,
                                    ctypes.c_char_p, ctypes.c_size_t]
lib.kvrdma_free.argtypes = [ctypes.c_void_p]


class KvrdmaError(Exception):
    pass


def check(rc, err):
    if rc != 0:
        raise KvrdmaError(err.value.decode())


def main():
    err = ctypes.create_string_buffer(256)
    cfg = lib.kvrdma_config_new()
    for name, value in [(b"listen-addr", b"127.0.0.1:0"), (b"memory-mb", b"64")]:
        check(lib.kvrdma_config_set(cfg, name, value, err, len(err)), err)
    server = ctypes.c_void_p()
    check(lib.kvrdma_server_start(cfg, ctypes.byref(server), err, len(err)), err)
    address = lib.kvrdma_server_address(server)
    check(lib.kvrdma_config_set(cfg, b"server-addr", address, err, len(err)), err)
    client = ctypes.c_void_p()
    check(lib.kvrdma_client_connect(cfg, ctypes.byref(client), err, len(err)), err)
    lib.kvrdma_config_free(cfg)
    print("kvrdma", lib.kvrdma_version().decode(), "server on", address.decode())

    value = bytes(range(256)) * 1024  # 256 KiB, binary: goes by transport write
    check(lib.kvrdma_put(client, b"blob", 4, value, len(value), 0, err, len(err)), err)
    out, size = ctypes.c_void_p(), ctypes.c_size_t()
    check(lib.kvrdma_get(client, b"blob", 4, ctypes.byref(out), ctypes.byref(size), err, len(err)), err)
    got = ctypes.string_at(out, size.value)
    lib.kvrdma_free(out)
    print("blob:", size.value, "bytes, identical:", got == value)
    # Zero copy: read the bytes where the server wrote them, then give the space back.
    view = ctypes.c_void_p()
    check(lib.kvrdma_get_view(client, b"blob", 4, ctypes.byref(view), err, len(err)), err)
    viewed = ctypes.string_at(lib.kvrdma_view_data(view), lib.kvrdma_view_size(view))
    lib.kvrdma_view_release(view)
    print("view:", len(viewed), "bytes, identical:", viewed == value)
    text = ctypes.c_void_p()
    check(lib.kvrdma_client_stats(client, ctypes.byref(text), None, err, len(err)), err)
    stats = dict(line.split("=", 1) for line in ctypes.string_at(text).decode().splitlines())
    lib.kvrdma_free(text)
    print("server counters: puts", stats["puts"], "gets", stats["gets"], "transport", stats["transport"])
    check(lib.kvrdma_delete(client, b"blob", 4, err, len(err)), err)
    rc = lib.kvrdma_get(client, b"blob", 4, ctypes.byref(out), ctypes.byref(size), err, len(err))
    print("after delete:", lib.kvrdma_code_name(rc).decode())
    lib.kvrdma_client_close(client)
    lib.kvrdma_server_stop(server)
    return 0 if got == value and viewed == value and rc == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
