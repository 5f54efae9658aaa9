kvrdma_add_test(units_test units_test.cc settings_test.cc)
