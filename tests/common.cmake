kvrdma_add_test(common_test SOURCES units_test.cc settings_test.cc LIBS kvrdma_common)
