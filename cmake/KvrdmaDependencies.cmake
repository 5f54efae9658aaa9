# Finds every dependency; a missing one names the Debian package that provides it
# (scripts/install-deps installs them all).
include_guard(GLOBAL)

macro(kvrdma_require found package)
  if(NOT ${found})
    message(FATAL_ERROR "kvrdma needs ${package}: run scripts/install-deps "
                        "(or apt-get install ${package})")
  endif()
endmacro()

find_package(Threads REQUIRED)
find_package(Protobuf)            # module mode: Debian ships no protobuf-config.cmake
kvrdma_require(Protobuf_FOUND "libprotobuf-dev protobuf-compiler")
find_package(gRPC CONFIG)
kvrdma_require(gRPC_FOUND "libgrpc++-dev protobuf-compiler-grpc")
find_package(fmt)
kvrdma_require(fmt_FOUND libfmt-dev)
find_package(CLI11 CONFIG)
kvrdma_require(CLI11_FOUND libcli11-dev)
find_package(PkgConfig)
kvrdma_require(PKG_CONFIG_FOUND pkg-config)
pkg_check_modules(LIBFABRIC IMPORTED_TARGET libfabric)
kvrdma_require(LIBFABRIC_FOUND libfabric-dev)
# libfabric is loaded at run time, on first use (lib/transport/fabric/fabric_api.h): the build
# uses its headers only, so nothing links -lfabric and mock-only processes never load it.
add_library(kvrdma_libfabric_headers INTERFACE)
target_include_directories(kvrdma_libfabric_headers INTERFACE ${LIBFABRIC_INCLUDE_DIRS})
# Debian builds cpp-httplib as a shared library with a declarations-only httplib.h; its .pc file
# carries the feature macros (OpenSSL, zlib, brotli) the library was built with.
pkg_check_modules(CPPHTTPLIB IMPORTED_TARGET cpp-httplib)
kvrdma_require(CPPHTTPLIB_FOUND libcpp-httplib-dev)
if(KVRDMA_BUILD_TESTS)
  find_package(Catch2 2)
  kvrdma_require(Catch2_FOUND catch2)
endif()

find_program(KVRDMA_GRPC_CPP_PLUGIN grpc_cpp_plugin)
kvrdma_require(KVRDMA_GRPC_CPP_PLUGIN protobuf-compiler-grpc)
