kvrdma_add_test(store_test SOURCES store_test.cc LIBS kvrdma_store)
