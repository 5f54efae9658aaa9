# The server's cluster mode: the view it serves by, and the service answering by it.
kvrdma_add_test(cluster_view_test SOURCES cluster_view_test.cc LIBS kvrdma_core)
# In-process ServerCore + KvService (the fuzz harness's) on a loopback port, maps set by hand.
kvrdma_add_test(cluster_service_test SOURCES cluster_service_test.cc
                LIBS kvrdma_fuzz_harness kvrdma_core)
# The cluster agent: registration, election, controller, moves, leave, fencing (in-process nodes
# over one MemoryMetaStore).
kvrdma_add_test(cluster_node_test SOURCES cluster_node_test.cc LIBS kvrdma_core kvrdma_etcd_harness)
