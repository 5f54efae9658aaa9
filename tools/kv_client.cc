// kv-client: get, put, delete, stats, locate, cluster, an interactive repl and a benchmark against
// one kv-server or a cluster of them.
// `kv-client doctor [--json]` checks this host and the server(s) with the same settings (one line
// per check; tools/doctor.h).
// Exit codes: 0 ok, 1 key not found, 2 usage error, 3 any other error (one line on stderr; doctor:
// a check failed).
#include "kv_client.h"

#include <fmt/format.h>

#include <memory>

#include "cli_common.h"
#include "common/logging.h"
#include "doctor.h"
#include "kvrdma/version.h"

namespace {

using namespace kvrdma::tools;

struct Args {
  std::string key, value, file, output, ttl;
  bool json = false;
  kvrdma::tools::BenchConfig bench;
  std::string value_size = "4096";
};

void add_subcommands(CLI::App& app, Args& a) {
  auto* get = app.add_subcommand("get", "print the value of KEY to stdout, byte for byte");
  get->add_option("key", a.key, "the key")->required();
  get->add_option("-o,--output", a.output, "write the value to FILE instead of stdout");

  auto* put = app.add_subcommand("put", "store VALUE (or the bytes of --file) under KEY");
  put->add_option("key", a.key, "the key")->required();
  put->add_option("value", a.value, "the value (or use --file)");
  put->add_option("-f,--file", a.file, "read the value from FILE ('-': stdin)");
  put->add_option("--ttl", a.ttl, "expire after SECONDS (fractions allowed; 0: never)")
      ->default_str("0");

  auto* del = app.add_subcommand("delete", "remove KEY (exit 1 when it was absent)");
  del->alias("del");
  del->add_option("key", a.key, "the key")->required();

  auto* stats = app.add_subcommand("stats", "print the server's counters");
  stats->add_flag("--json", a.json, "one JSON object instead of a table");

  auto* locate = app.add_subcommand("locate",
                                    "print where KEY's value lives: owner node, "
                                    "region, offset, length, map epoch, slot");
  locate->add_option("key", a.key, "the key")->required();
  locate->add_flag("--json", a.json, "one JSON object instead of a table");

  auto* cluster = app.add_subcommand(
      "cluster",
      "print the cluster map: epoch, controller, and per node its address, state, "
      "slots, keys, value bytes and pool use (unreachable nodes say so)");
  cluster->add_flag("--json", a.json, "one JSON object instead of a table");

  app.add_subcommand("repl", "read commands from stdin (type help)");

  auto* doctor = app.add_subcommand(
      "doctor",
      "check this host and the server with these settings: memlock, memory, /dev/shm, "
      "libfabric providers, a loopback transport write, TLS, the server reachable and "
      "Hello");
  doctor->add_flag("--json", a.json, "one JSON object instead of lines");

  auto* bench = app.add_subcommand("bench", "measure GET/PUT throughput and latency");
  auto& b = a.bench;
  bench->add_option("--ops", b.ops, "total operations")->capture_default_str();
  bench->add_option("--value-size", a.value_size, "bytes per value (e.g. 4096, 64K, 1.5M)")
      ->capture_default_str();
  bench->add_option("--concurrency", b.concurrency, "threads sharing one client")
      ->capture_default_str()
      ->check(CLI::Range(1u, 256u));
  bench->add_option("--op", b.op, "get | put | mixed (90% get, 10% put)")
      ->capture_default_str()
      ->check(CLI::IsMember({"get", "put", "mixed"}));
  bench->add_option(
      "--keys", b.keys,
      "distinct keys (default: min(ops, 1000), fewer if the server's pool holds fewer)");
  bench->add_option("--duration", b.duration_s, "stop after SECONDS even before --ops")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench
      ->add_option("--batch", b.batch,
                   "keys per call: >1 sends get_many / put_many batches of N keys (one RPC each, "
                   "latency is then per batch); mixed picks get or put per batch")
      ->check(CLI::Range(1u, 4096u))
      ->capture_default_str();
  bench
      ->add_option("--pipeline", b.pipeline,
                   "requests in flight per thread: >1 keeps N get_async / put_async outstanding "
                   "(over the request channel; latency is then per request, submit to answer)")
      ->check(CLI::Range(1u, 1024u));
  bench->add_flag("--json", b.json, "one JSON object instead of a table");
}

int usage_error(const std::string& message) {
  fmt::print(stderr, "kv-client: {}; see kv-client --help\n", message);
  return kExitUsage;
}

int run(int argc, char** argv) {
  CLI::App app{"kv-client: talk to a kvrdma kv-server or cluster", "kv-client"};
  app.set_version_flag("--version", fmt::format("kv-client {}", kvrdma::version()));
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the subcommand too
  kvrdma::ClientOptions options;
  SettingFlags flags;
  add_setting_flags(app, kvrdma::kClientSetting, flags, kvrdma::log_level_name(options.log_level));
  Args a;
  add_subcommands(app, a);

  auto args = normalize_bool_flags(argc, argv, kvrdma::kClientSetting, true);
  if (auto code = parse_command_line(app, std::move(args), "kv-client")) return *code;
  if (auto s = apply_setting_flags(flags, options); !s.is_ok()) return usage_error(s.message());
  // The client logs at its own level; this one covers lines logged on the caller's thread
  // outside connect, so the program prints what --log-level asks for.
  kvrdma::log::set_level(options.log_level);
  kvrdma::log::set_format(options.log_format);
  // Lines of threads the client does not run name it too. No other thread logs yet.
  kvrdma::log::process_logger().set_labels({.node = {}, .client = options.client_id});

  const std::string cmd = app.get_subcommands().front()->get_name();
  const std::string prefix = "kv-client " + cmd;
  uint64_t ttl_ms = 0;
  if (cmd == "put") {
    const bool has_value = app.get_subcommand("put")->count("value") > 0;
    if (has_value == !a.file.empty()) {
      return usage_error("put needs exactly one of VALUE or --file PATH");
    }
    if (!a.ttl.empty() && !parse_ttl_seconds(a.ttl, ttl_ms)) {
      return usage_error(fmt::format("--ttl '{}' is not a number of seconds >= 0", a.ttl));
    }
  }
  if (cmd == "bench") {
    auto size = kvrdma::parse_bytes(a.value_size);
    if (!size) return usage_error("--value-size: " + size.status().message());
    a.bench.value_size = *size;
    if (a.bench.ops == 0) return usage_error("--ops must be at least 1");
  }

  if (cmd == "doctor") {
    auto checks = doctor_client(options);
    fmt::print("{}", a.json ? doctor_json("kv-client", checks) : doctor_text(checks));
    return doctor_exit_code(checks);
  }

  auto client = kvrdma::Client::connect(options);
  if (!client) return report_error(prefix, client.status());
  kvrdma::Client& c = **client;
  if (cmd == "get") return command_get(c, a.key, a.output, prefix);
  if (cmd == "put") return command_put(c, a.key, a.value, a.file, ttl_ms, prefix);
  if (cmd == "delete") return command_delete(c, a.key, prefix);
  if (cmd == "stats") return command_stats(c, a.json, prefix);
  if (cmd == "locate") return command_locate(c, a.key, a.json, prefix);
  if (cmd == "cluster") return command_cluster(c, a.json, prefix);
  if (cmd == "repl") return run_repl(c);
  return run_bench(c, a.bench);
}

}  // namespace

int main(int argc, char** argv) {
  return kvrdma::tools::program_main("kv-client", run, argc, argv);
}
