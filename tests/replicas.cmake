# Replicas (docs/cluster.md "Replicas"): placement and the controller's replica rules.
kvrdma_add_test(replica_placement_test SOURCES replica_placement_test.cc LIBS kvrdma_cluster)
