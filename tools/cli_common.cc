#include "cli_common.h"

#include <absl/synchronization/mutex.h>
#include <fmt/format.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <set>

namespace kvrdma::tools {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_bool_literal(std::string_view s) {
  static const char* const kLiterals[] = {"true", "false", "1", "0", "yes", "no", "on", "off"};
  const std::string l = lower(s);
  return std::any_of(std::begin(kLiterals), std::end(kLiterals),
                     [&](const char* lit) { return l == lit; });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Edits (insert, delete, replace) from a to b; small strings only.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The setting of `role` a mistyped name most likely meant ('_' for '-', a letter or two off),
// or "" when none is close.
std::string closest_setting(std::string_view name, unsigned role) {
  std::string dashed(name);
  std::replace(dashed.begin(), dashed.end(), '_', '-');
  std::string best;
  size_t best_distance = 3;  // beyond two edits a suggestion is a guess
  for (const SettingInfo& s : settings()) {
    if ((s.roles & role) == 0) continue;
    const size_t d = edit_distance(lower(dashed), s.name);
    if (d < best_distance) {
      best_distance = d;
      best = s.name;
    }
  }
  return best;
}

template <typename Options>
Status apply_file(const std::string& path, unsigned role, const std::vector<std::string>& skip,
                  Options& options) {
  std::ifstream in(path);
  if (!in) {
    return Status(Code::kNotFound,
                  fmt::format("cannot read config file '{}'; check the path given to --config",
                              path));
  }
  std::set<std::string> seen;
  std::string text;
  // Bounded: a config file longer than this is not a config file.
  for (size_t number = 1; number <= 100'000 && std::getline(in, text); ++number) {
    auto invalid = [&](const std::string& what) {
      return Status(Code::kInvalidArgument, fmt::format("{}:{}: {}", path, number, what));
    };
    const std::string_view line = trim(text);
    if (line.empty() || line.front() == '#') continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return invalid(fmt::format("expected 'name = value', got '{}'", line));
    }
    const std::string name(trim(line.substr(0, eq)));
    const std::string_view value = trim(line.substr(eq + 1));
    const auto known = std::find_if(settings().begin(), settings().end(),
                                    [&](const SettingInfo& s) { return name == s.name; });
    if (known == settings().end() || (known->roles & role) == 0) {
      const char* program = (role & kServerSetting) ? "kv-server" : "kv-client";
      std::string hint = closest_setting(name, role);
      if (known != settings().end()) {
        return invalid(fmt::format("setting '{}' does not apply to {}", name, program));
      }
      return invalid(hint.empty()
                         ? fmt::format("unknown setting '{}'; see {} --help", name, program)
                         : fmt::format("unknown setting '{}'; did you mean '{}'?", name, hint));
    }
    if (!seen.insert(name).second) return invalid(fmt::format("'{}' is set twice", name));
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;  // the flag wins
    if (Status s = apply_setting(options, name, value); !s.is_ok()) return invalid(s.message());
  }
  if (in.bad()) {
    return Status(Code::kInvalidArgument, fmt::format("reading config file '{}' failed", path));
  }
  return Status();
}

template <typename Options>
Status apply_all(const SettingFlags& flags, Options& options, unsigned role) {
  if (!flags.config.empty()) {
    std::vector<std::string> given;
    for (const auto& [name, opt] : flags.options) {
      if (opt->count() > 0) given.push_back(name);
    }
    KVRDMA_RETURN_IF_ERROR(apply_file(flags.config, role, given, options));
  }
  // Table order, so an error names the first bad flag as --help lists them.
  for (const SettingInfo& s : settings()) {
    auto it = flags.values.find(s.name);
    auto opt = flags.options.find(s.name);
    if (it == flags.values.end() || opt == flags.options.end() || opt->second->count() == 0) {
      continue;
    }
    // The library names the setting; on the command line it is a flag.
    KVRDMA_RETURN_IF_ERROR(
        apply_setting(options, s.name, it->second).with_context(std::string("--") + s.name));
  }
  // The token may come from the environment, so it need not show in `ps`.
  auto token = flags.options.find("auth-token");
  const char* env = std::getenv("KVRDMA_AUTH_TOKEN");
  if (env != nullptr && token != flags.options.end() && token->second->count() == 0) {
    KVRDMA_RETURN_IF_ERROR(
        apply_setting(options, "auth-token", env).with_context("KVRDMA_AUTH_TOKEN"));
  }
  return Status();
}

}  // namespace

void add_setting_flags(CLI::App& app, unsigned role, SettingFlags& flags,
                       std::string_view log_level_default) {
  app.add_option("--config", flags.config,
                 "read settings from FILE: 'name = value' lines, names as these flags; flags "
                 "given here override it")
      ->type_name("FILE")
      ->group("Settings");
  for (const SettingInfo& s : settings()) {
    if ((s.roles & role) == 0) continue;
    const std::string name = s.name;
    std::string shown = s.default_value;
    if (name == "log-level") shown = std::string(log_level_default);
    std::string& target = flags.values[name];
    CLI::Option* opt = app.add_option("--" + name, target, setting_help(s));
    opt->default_str(shown);
    std::string type = s.type;
    for (char& c : type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    opt->type_name(type);
    opt->group("Settings");
    flags.options[name] = opt;
  }
}

Status apply_setting_flags(const SettingFlags& flags, ServerOptions& options) {
  return apply_all(flags, options, kServerSetting);
}
Status apply_setting_flags(const SettingFlags& flags, ClientOptions& options) {
  return apply_all(flags, options, kClientSetting);
}

Status apply_config_file(const std::string& path, unsigned role,
                         const std::vector<std::string>& skip, ServerOptions& options) {
  return apply_file(path, role, skip, options);
}
Status apply_config_file(const std::string& path, unsigned role,
                         const std::vector<std::string>& skip, ClientOptions& options) {
  return apply_file(path, role, skip, options);
}

std::vector<std::string> normalize_bool_flags(int argc, char** argv, unsigned role,
                                              bool takes_words) {
  std::vector<std::string> bool_flags;
  for (const SettingInfo& s : settings()) {
    if ((s.roles & role) != 0 && std::string_view(s.type) == "bool") {
      bool_flags.push_back(std::string("--") + s.name);
    }
  }
  std::vector<std::string> out;
  bool after_separator = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && !after_separator && arg == "--") after_separator = true;
    if (i > 0 && !after_separator &&
        std::find(bool_flags.begin(), bool_flags.end(), arg) != bool_flags.end()) {
      // Without positionals or subcommands the next word can only be the flag's value, so
      // leave it to apply_setting, whose error names the accepted values.
      const bool next_is_value =
          i + 1 < argc && (takes_words ? is_bool_literal(argv[i + 1]) : argv[i + 1][0] != '-');
      if (!next_is_value) arg += "=true";
    }
    out.push_back(std::move(arg));
  }
  return out;
}

std::optional<int> parse_command_line(CLI::App& app, std::vector<std::string> args,
                                      std::string_view program) {
  if (!args.empty()) args.erase(args.begin());  // the program name
  std::reverse(args.begin(), args.end());       // CLI11 takes a stack
  try {
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    fmt::print(stderr, "{}: {}; see {} --help\n", program, what, program);
    return kExitUsage;
  }
  return std::nullopt;
}

int exit_code_for(const Status& status) {
  if (status.is_ok()) return kExitOk;
  return status.code() == Code::kNotFound ? kExitNotFound : kExitError;
}

std::string with_flag_names(std::string text) {
  // The library names options as a C++ caller sets them ("ServerOptions::memory_bytes /
  // memory-mb", "security.tls_cert / tls-cert"); a person at a shell sets flags.
  auto replace_all = [&text](const std::string& from, const std::string& to, bool whole) {
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at)) {
      const size_t end = at + from.size();
      // Whole member names only: "lease_ms" inside "node_lease_ms" is another option.
      const bool cut = whole && end < text.size() &&
                       (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_' ||
                        text[end] == '.');
      if (cut) {
        at = end;
        continue;
      }
      text.replace(at, from.size(), to);
      at += to.size();
    }
  };
  for (const SettingInfo& s : settings()) {
    const std::string flag = std::string("--") + s.name;
    const std::string pair = std::string(s.member) + " / " + s.name;
    replace_all("ServerOptions::" + pair, flag, false);
    replace_all("ClientOptions::" + pair, flag, false);
    replace_all(pair, flag, false);
    replace_all(std::string("ServerOptions::") + s.member, flag, true);
    replace_all(std::string("ClientOptions::") + s.member, flag, true);
  }
  return text;
}

int report_error(std::string_view prefix, const Status& status) {
  std::string text = with_flag_names(status.to_string());
  std::replace(text.begin(), text.end(), '\n', ' ');
  fmt::print(stderr, "{}: {}\n", prefix, text);
  return exit_code_for(status);
}

int report_error_if(std::string_view prefix, const Status& status) {
  return status.is_ok() ? kExitOk : report_error(prefix, status);
}

bool is_terminal(int fd) { return ::isatty(fd) == 1; }

void tune_process() {
  // Keep up to 256 MiB of freed heap instead of trimming at 128 KiB, and serve blocks below
  // 32 MiB from the heap (mmap'd blocks are unmapped on every free).
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  // Debian builds Abseil with its debug-mode default: every absl::Mutex (gRPC's locks) feeds a
  // lock-order graph for deadlock detection, a few percent of a small request's CPU here.
  // Measured: p50 of a 64 B GET at 16 in flight 5-10% lower without it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
}

int program_main(std::string_view program, int (*run)(int, char**), int argc, char** argv) {
  tune_process();
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: unexpected error: {}\n", program, e.what());
    return kExitError;
  }
}

}  // namespace kvrdma::tools
