// packaging/: the example config is the settings table's (byte for byte, so it cannot drift) and
// every line of it parses; the systemd unit passes `systemd-analyze verify` where that exists.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "cli_common.h"
#include "config_example.h"
#include "integration/harness.h"

using namespace kvrdma;
using namespace kvrdma::testing;

namespace {

const std::string kSource = KVRDMA_SOURCE_DIR;

// The file with every "#name = value" line uncommented (prose comments stay).
std::string uncommented(const std::string& text) {
  std::istringstream in(text);
  std::string out, line;
  for (int i = 0; i < 10'000 && std::getline(in, line); ++i) {
    if (line.size() > 1 && line[0] == '#' && line[1] != ' ') line.erase(0, 1);
    out += line + "\n";
  }
  return out;
}

}  // namespace

TEST_CASE("packaging: kv-server.conf is the settings table's example, byte for byte", "[ops]") {
  const std::string expected = tools::config_example(kServerSetting);
  const std::string actual = read_whole_file(kSource + "/packaging/kv-server.conf");
  if (actual != expected) {
    const std::string fresh = std::string(KVRDMA_BINARY_DIR) + "/kv-server.conf.expected";
    std::ofstream(fresh) << expected;
    FAIL(
        "packaging/kv-server.conf differs from the settings table; if the table is right, "
        "copy "
        << fresh << " over it");
  }
}

TEST_CASE("packaging: every setting line of the example parses, once each, to the defaults",
          "[ops]") {
  const std::string text = uncommented(tools::config_example(kServerSetting));
  std::set<std::string> names;
  std::istringstream in(text);
  std::string line;
  for (int i = 0; i < 10'000 && std::getline(in, line); ++i) {
    if (line.empty() || line[0] == '#') continue;
    CHECK(names.insert(line.substr(0, line.find(" ="))).second);
  }
  std::set<std::string> server_settings;
  for (const SettingInfo& s : settings()) {
    if (s.roles & kServerSetting) server_settings.insert(s.name);
  }
  CHECK(names == server_settings);

  std::unique_ptr<TempFile> file = write_temp(text);
  ServerOptions parsed;
  parsed.memory_bytes = 1;  // the file must set it back
  parsed.log_level = LogLevel::kError;
  Status s = tools::apply_config_file(file->path, kServerSetting, {}, parsed);
  INFO(s.to_string());
  REQUIRE(s.is_ok());
  const ServerOptions defaults;
  CHECK(parsed.memory_bytes == defaults.memory_bytes);
  CHECK(parsed.log_level == defaults.log_level);
  CHECK(parsed.log_format == defaults.log_format);
  CHECK(parsed.listen_addr == defaults.listen_addr);
  CHECK(parsed.inline_threshold == defaults.inline_threshold);
  CHECK(parsed.lease_ms == defaults.lease_ms);

  // And the program takes it (a flag overrides the file's listen address: 50051 may be busy).
  RunResult r = run(server_binary(), {"doctor", "--config", file->path, "--listen-addr",
                                      "127.0.0.1:0", "--memory-mb", "64"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
}

TEST_CASE("packaging: the systemd unit runs kv-server with its config, memlock and restarts",
          "[ops]") {
  const std::string unit = read_whole_file(KVRDMA_UNIT_PATH);
  for (const char* line : {"LimitMEMLOCK=infinity\n", "Restart=on-failure\n", "EnvironmentFile=-",
                           "/kv-server --config ", "/kv-server.conf\n"}) {
    INFO(line);
    CHECK(unit.find(line) != std::string::npos);
  }
  if (access("/usr/bin/systemd-analyze", X_OK) != 0) {
    WARN("systemd-analyze is not installed here: the unit was not verified");
    return;
  }
  // verify insists that ExecStart's program exists: point it at the one just built.
  char tmpl[] = "/tmp/kvrdma-unit-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  const size_t exec = unit.find("ExecStart=");
  const size_t program_end = unit.find(' ', exec);
  REQUIRE(program_end != std::string::npos);
  const std::string local =
      unit.substr(0, exec) + "ExecStart=" + server_binary() + unit.substr(program_end);
  std::ofstream(dir + "/kv-server.service") << local;
  RunResult r = run("/usr/bin/systemd-analyze", {"verify", dir + "/kv-server.service"});
  (void)run("/bin/rm", {"-rf", dir});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.find("kv-server.service") == std::string::npos);  // verify warns with rc 0
}
