#include "rpc/stats_wire.h"

namespace kvrdma::rpc {

void to_reply(const ServerStats& stats, v1::StatsReply* reply) {
#define KVRDMA_STATS_SET(type, name, role, unit, description) reply->set_##name(stats.name);
  KVRDMA_SERVER_STATS(KVRDMA_STATS_SET)
#undef KVRDMA_STATS_SET
}

ServerStats from_reply(const v1::StatsReply& reply) {
  ServerStats stats;
#define KVRDMA_STATS_GET(type, name, role, unit, description) stats.name = reply.name();
  KVRDMA_SERVER_STATS(KVRDMA_STATS_GET)
#undef KVRDMA_STATS_GET
  return stats;
}

}  // namespace kvrdma::rpc
