# The coordination store: MemoryMetaStore and the etcd client, one contract suite for both.
kvrdma_add_test(meta_store_test SOURCES meta_store_test.cc LIBS kvrdma_cluster)
