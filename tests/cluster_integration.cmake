# Cluster mode end to end: a throwaway etcd (tests/etcd_process) and kv-server processes.
kvrdma_add_test(cluster_test SOURCES integration/cluster_test.cc
                LIBS kvrdma_harness kvrdma_etcd_harness kvrdma_core)
add_dependencies(cluster_test kv-server kv-client)
# The kill and join cases again over libfabric tcp.
catch_discover_tests(cluster_test TEST_PREFIX "tcp/" TEST_SPEC "[cluster-moves],[cluster-kill]"
  EXTRA_ARGS --name cluster_test-tcp
  PROPERTIES TIMEOUT 300 ENVIRONMENT KVRDMA_TEST_PROVIDER=tcp)
