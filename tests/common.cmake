kvrdma_add_test(common_test SOURCES units_test.cc settings_test.cc LIBS kvrdma_common)
kvrdma_add_test(stats_fields_test SOURCES stats_fields_test.cc LIBS kvrdma_rpc)
kvrdma_add_test(logging_test SOURCES logging_test.cc LIBS kvrdma_core)
