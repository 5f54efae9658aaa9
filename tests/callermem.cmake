# Caller memory (get_into / put_from, registered and allocated memory) against kv-server
# processes: over the mock, then libfabric tcp and shm as tests/integration.cmake does.
kvrdma_add_test(callermem_test SOURCES integration/callermem_test.cc
                LIBS kvrdma_harness kvrdma_core)
add_dependencies(callermem_test kv-server kv-client)
foreach(provider tcp shm)
  catch_discover_tests(callermem_test TEST_PREFIX "${provider}/" TEST_SPEC "~[mockonly]"
    EXTRA_ARGS --name callermem_test-${provider}
    PROPERTIES TIMEOUT 300 ENVIRONMENT KVRDMA_TEST_PROVIDER=${provider})
endforeach()
# Cluster mode: two nodes over a throwaway etcd (mock only; the routing is transport-blind).
kvrdma_add_test(callermem_cluster_test SOURCES integration/callermem_cluster_test.cc
                LIBS kvrdma_cluster_harness)
add_dependencies(callermem_cluster_test kv-server)
# Transport::register_memory over the mock and libfabric shm / tcp.
kvrdma_add_test(transport_register_test SOURCES transport_register_test.cc LIBS kvrdma_transport)
