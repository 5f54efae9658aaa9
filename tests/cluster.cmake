# Cluster layer: slot hashing, the map's wire form, placement and the controller's rules.
kvrdma_add_test(slot_map_test SOURCES slot_map_test.cc LIBS kvrdma_cluster)
kvrdma_add_test(placement_test SOURCES placement_test.cc LIBS kvrdma_cluster)
