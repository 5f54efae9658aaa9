kvrdma_add_test(cli_test SOURCES integration/harness.cc integration/cli_test.cc LIBS kvrdma_core)
add_dependencies(cli_test kv-server kv-client)
