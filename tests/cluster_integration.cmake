# What the cluster-mode suites share (integration/cluster_harness.h): a throwaway etcd
# (tests/etcd_process) with kv-server processes, clients of them, the wait for the map.
add_library(kvrdma_cluster_harness STATIC integration/cluster_harness.cc)
target_link_libraries(kvrdma_cluster_harness PUBLIC kvrdma_harness kvrdma_etcd_harness kvrdma_core)
kvrdma_project_target(kvrdma_cluster_harness)

# Cluster mode end to end.
kvrdma_add_test(cluster_test SOURCES integration/cluster_test.cc LIBS kvrdma_cluster_harness)
add_dependencies(cluster_test kv-server kv-client)
# The kill and join cases again over libfabric tcp.
catch_discover_tests(cluster_test TEST_PREFIX "tcp/" TEST_SPEC "[cluster-moves],[cluster-kill]"
  EXTRA_ARGS --name cluster_test-tcp
  PROPERTIES TIMEOUT 300 ENVIRONMENT KVRDMA_TEST_PROVIDER=tcp)
