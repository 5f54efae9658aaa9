# The pipelined client API (Pending, Client::Batch): in-process servers over the mock, a single
# one and cluster nodes over one MemoryMetaStore; and the C ABI's batch from a C99 program.
kvrdma_add_test(async_test SOURCES async_test.cc LIBS kvrdma_core)

add_executable(capi_batch_test capi_batch_test.c)
set_target_properties(capi_batch_test PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON
                                                 C_EXTENSIONS OFF)
target_compile_options(capi_batch_test PRIVATE -Wall -Wextra -Werror -pedantic)
target_link_libraries(capi_batch_test PRIVATE kvrdma kvrdma_sanitize)
add_test(NAME "capi: a batch of pipelined requests, from C" COMMAND capi_batch_test)
set_tests_properties("capi: a batch of pipelined requests, from C" PROPERTIES TIMEOUT 60)
