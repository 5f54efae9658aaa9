// The table behind stats_fields(), expanded from KVRDMA_SERVER_STATS so it cannot drift from the
// ServerStats members.
#include <type_traits>

#include "kvrdma/stats.h"

namespace kvrdma {
namespace {

// The row for member `Member`: a reader of the right kind for its type.
template <auto Member>
constexpr StatInfo make_row(const char* name, StatRole role, StatUnit unit,
                            const char* description) {
  using T = std::remove_cvref_t<decltype(ServerStats{}.*Member)>;
  if constexpr (std::is_same_v<T, std::string>) {
    return {name,    role,
            unit,    description,
            nullptr, [](const ServerStats& s) -> const std::string& { return s.*Member; }};
  } else {
    static_assert(std::is_unsigned_v<T>, "a ServerStats figure is unsigned or a string");
    return {name,
            role,
            unit,
            description,
            [](const ServerStats& s) -> uint64_t { return s.*Member; },
            nullptr};
  }
}

#define KVRDMA_STATS_ROW(type, name, role, unit, description) \
  make_row<&ServerStats::name>(#name, StatRole::k##role, StatUnit::k##unit, description),

constexpr StatInfo kStatsFields[] = {KVRDMA_SERVER_STATS(KVRDMA_STATS_ROW)};

#undef KVRDMA_STATS_ROW

}  // namespace

std::span<const StatInfo> stats_fields() { return kStatsFields; }

}  // namespace kvrdma
