# The cluster agent: registration, election, controller, moves, leave, fencing (in-process nodes
# over one MemoryMetaStore).
kvrdma_add_test(cluster_node_test SOURCES cluster_node_test.cc LIBS kvrdma_core)
