# The client's routing decisions (lib/client/router.h), without servers, and the router against
# fake in-process cluster nodes (no kv-server, no etcd).
kvrdma_add_test(router_test SOURCES router_test.cc router_cluster_test.cc LIBS kvrdma_client)
