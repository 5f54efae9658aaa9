# The client's routing decisions (lib/client/router.h), without servers.
kvrdma_add_test(router_test SOURCES router_test.cc LIBS kvrdma_client)
