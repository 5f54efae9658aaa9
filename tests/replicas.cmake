# Replicas (docs/cluster.md "Replicas"): placement and the controller's replica rules.
kvrdma_add_test(replica_placement_test SOURCES replica_placement_test.cc LIBS kvrdma_cluster)
# End to end: a real etcd and 3-4 kv-server processes with --replicas, nodes killed and stopped.
kvrdma_add_test(replica_test SOURCES integration/replica_test.cc
                LIBS kvrdma_cluster_harness)
add_dependencies(replica_test kv-server kv-client)
# The server's replica bookkeeping: VersionTable and ClusterView's replica verdicts.
kvrdma_add_test(replica_server_test SOURCES replica_server_test.cc LIBS kvrdma_core)
# The kill cases again over libfabric tcp: values go node to node by transport write.
catch_discover_tests(replica_test TEST_PREFIX "tcp/" TEST_SPEC "[replicas-kill]"
  EXTRA_ARGS --name replica_test-tcp
  PROPERTIES TIMEOUT 300 ENVIRONMENT KVRDMA_TEST_PROVIDER=tcp)
# Replicas through the cluster agent, in-process nodes over one MemoryMetaStore.
kvrdma_add_test(replica_node_test SOURCES replica_node_test.cc LIBS kvrdma_core)
