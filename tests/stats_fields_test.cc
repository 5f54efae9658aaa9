// The one stats table (KVRDMA_SERVER_STATS) against the wire (v1::StatsReply): the same figures
// by name, type and order in both directions, and a ServerStats that crosses the wire unchanged.
#include <fmt/format.h>
#include <google/protobuf/descriptor.h>

#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <type_traits>

#include "kvrdma/stats.h"
#include "rpc/stats_wire.h"

namespace kvrdma {
namespace {

using google::protobuf::FieldDescriptor;

template <typename T>
FieldDescriptor::CppType wire_type() {
  if constexpr (std::is_same_v<T, std::string>) return FieldDescriptor::CPPTYPE_STRING;
  if constexpr (std::is_same_v<T, uint32_t>) return FieldDescriptor::CPPTYPE_UINT32;
  if constexpr (std::is_same_v<T, uint64_t>) return FieldDescriptor::CPPTYPE_UINT64;
}

// Every member set to a value of its own (1000 + its row, or "v<row>"), so a figure copied into
// another's place shows.
ServerStats distinct_stats() {
  ServerStats s;
  uint64_t row = 0;
  auto value = [&row](auto& member) {
    ++row;
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(member)>, std::string>) {
      member = fmt::format("v{}", row);
    } else {
      member = static_cast<std::remove_cvref_t<decltype(member)>>(1000 + row);
    }
  };
#define KVRDMA_STATS_FILL(type, name, role, unit, description) value(s.name);
  KVRDMA_SERVER_STATS(KVRDMA_STATS_FILL)
#undef KVRDMA_STATS_FILL
  return s;
}

// A figure's value as text, from the table's reader.
std::string value_of(const StatInfo& field, const ServerStats& s) {
  return field.text != nullptr ? field.text(s) : std::to_string(field.number(s));
}

TEST_CASE("every stats figure has a StatsReply field of its name, type and place, and back") {
  const auto* desc = v1::StatsReply::descriptor();
  const auto fields = stats_fields();
  REQUIRE(static_cast<size_t>(desc->field_count()) == fields.size());
  for (size_t i = 0; i < fields.size(); ++i) {
    INFO("table row " << i << ": " << fields[i].name);
    const FieldDescriptor* f = desc->FindFieldByName(fields[i].name);
    REQUIRE(f != nullptr);
    CHECK(static_cast<size_t>(f->index()) == i);
    CHECK(!f->is_repeated());
  }
  for (int i = 0; i < desc->field_count(); ++i) {
    INFO("StatsReply field " << desc->field(i)->name());
    CHECK(desc->field(i)->name() == fields[static_cast<size_t>(i)].name);
  }
  // The C++ types match the wire types (a narrowing copy would compile silently).
#define KVRDMA_STATS_TYPE(type, name, role, unit, description) \
  CHECK(desc->FindFieldByName(#name)->cpp_type() == wire_type<type>());
  KVRDMA_SERVER_STATS(KVRDMA_STATS_TYPE)
#undef KVRDMA_STATS_TYPE
}

TEST_CASE("stats cross the wire (StatsReply) unchanged, every figure in its own field") {
  const ServerStats sent = distinct_stats();
  v1::StatsReply reply;
  rpc::to_reply(sent, &reply);
  const auto* refl = reply.GetReflection();
  for (const StatInfo& field : stats_fields()) {
    INFO(field.name);
    const FieldDescriptor* f = reply.GetDescriptor()->FindFieldByName(field.name);
    REQUIRE(f != nullptr);
    std::string on_wire;
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING: on_wire = refl->GetString(reply, f); break;
      case FieldDescriptor::CPPTYPE_UINT32:
        on_wire = std::to_string(refl->GetUInt32(reply, f));
        break;
      case FieldDescriptor::CPPTYPE_UINT64:
        on_wire = std::to_string(refl->GetUInt64(reply, f));
        break;
      default: FAIL("StatsReply field of an unexpected type");
    }
    CHECK(on_wire == value_of(field, sent));
  }
  const ServerStats received = rpc::from_reply(reply);
  for (const StatInfo& field : stats_fields()) {
    INFO(field.name);
    CHECK(value_of(field, received) == value_of(field, sent));
  }
}

TEST_CASE("the stats table is well formed") {
  std::set<std::string> names;
  int versions = 0;
  for (const StatInfo& field : stats_fields()) {
    const std::string name = field.name;
    INFO(name);
    CHECK(names.insert(name).second);
    CHECK(std::string(field.description).size() > 0);
    CHECK((field.number == nullptr) != (field.text == nullptr));
    // kv-client prints only identity figures as text; every other one is a number.
    if (field.text != nullptr) CHECK(field.role == StatRole::kIdentity);
    // The unit column and the naming rule agree (metrics and the CLI read the column).
    const bool named_bytes = name.starts_with("bytes_") || name.ends_with("_bytes");
    CHECK((field.unit == StatUnit::kBytes) == named_bytes);
    if (field.role == StatRole::kVersion) ++versions;
  }
  CHECK(versions == 1);
  CHECK(names.count("version") == 1);
  // The order the C text and the CLI promise starts with the server's identity.
  REQUIRE(stats_fields().size() >= 2);
  CHECK(std::string(stats_fields()[0].name) == "node_id");
  CHECK(std::string(stats_fields()[1].name) == "transport");
}

TEST_CASE("the stats table reads the members it names") {
  const ServerStats s = distinct_stats();
  const auto fields = stats_fields();
  REQUIRE(fields.size() == 30);
  CHECK(value_of(fields[0], s) == std::to_string(s.node_id));
  CHECK(value_of(fields[1], s) == s.transport);
  CHECK(value_of(fields[21], s) == std::to_string(s.bytes_put_committed));
  CHECK(value_of(fields[24], s) == std::to_string(s.version));
  CHECK(value_of(fields[25], s) == s.cluster);
  CHECK(value_of(fields[29], s) == std::to_string(s.keys_moved_in));
  CHECK(s.node_id == 1001);
  CHECK(s.transport == "v2");
  CHECK(s.keys_moved_in == 1030);
}

}  // namespace
}  // namespace kvrdma
