// ServerStats on the wire (v1::StatsReply), both ways, expanded from the one stats table
// (KVRDMA_SERVER_STATS in include/kvrdma/stats.h): a figure without a StatsReply field of the
// same name does not compile, and stats_fields_test fails on a StatsReply field the table lacks.
#pragma once

#include "kv_cache.pb.h"
#include "kvrdma/stats.h"

namespace kvrdma::rpc {

// Fills every StatsReply field from `stats` (the server's side of Stats).
void to_reply(const ServerStats& stats, v1::StatsReply* reply);
// Every figure of `reply` (the client's side).
ServerStats from_reply(const v1::StatsReply& reply);

}  // namespace kvrdma::rpc
