# The coordination store: MemoryMetaStore and the etcd client, one contract suite for both.
# kvrdma_etcd_harness (EtcdProcess) is for any test that needs a real etcd.
add_library(kvrdma_etcd_harness STATIC etcd_process.cc)
target_include_directories(kvrdma_etcd_harness PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(kvrdma_etcd_harness PUBLIC kvrdma_cluster kvrdma_sanitize)
kvrdma_project_target(kvrdma_etcd_harness)

kvrdma_add_test(meta_store_test SOURCES meta_store_test.cc LIBS kvrdma_etcd_harness)
