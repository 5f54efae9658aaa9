#include "config_example.h"

#include <fmt/format.h>

#include <string_view>

#include "kvrdma/options.h"

namespace kvrdma::tools {
namespace {

constexpr size_t kWidth = 99;

// `text` as "# " comment lines of at most kWidth characters, broken at spaces.
std::string comment(std::string_view text) {
  std::string out, line = "#";
  size_t pos = 0;
  // Bounded: every turn consumes at least one word.
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(pos, end - pos);
    pos = end + 1;
    if (word.empty()) continue;
    if (line.size() > 1 && line.size() + 1 + word.size() > kWidth) {
      out += line;
      out += '\n';
      line.resize(1);  // back to "#"
    }
    line += " ";
    line += word;
  }
  return out + line + "\n";
}

// The default as a value the file accepts (the table's text for log-level names both roles).
std::string default_value(const SettingInfo& s, unsigned role) {
  if (std::string_view(s.name) == "log-level") {
    return log_level_name((role & kServerSetting) ? ServerOptions{}.log_level
                                                  : ClientOptions{}.log_level);
  }
  return s.default_value;
}

}  // namespace

std::string config_example(unsigned role) {
  const char* program = (role & kServerSetting) ? "kv-server" : "kv-client";
  std::string out = comment(fmt::format(
      "{} settings. `{} --config FILE` reads them: one `name = value` per line, names as the "
      "command-line flags without `--`; lines starting with '#' are ignored. Every setting is "
      "listed with its default, commented out: uncomment and edit what you change. A flag "
      "on the command line overrides this file, and KVRDMA_AUTH_TOKEN in the environment "
      "overrides auth-token. An unknown name, a name given twice or a bad value stops the "
      "program and names the line.",
      program, program));
  out += comment(fmt::format(
      "Made from the settings table (lib/common/settings.cc); the ops tests check that this "
      "file still matches it, and `{} doctor --config FILE` checks a host with it.",
      program));
  for (const SettingInfo& s : settings()) {
    if ((s.roles & role) == 0) continue;
    const std::string value = default_value(s, role);
    out += "\n";
    out += comment(s.description);
    out +=
        value.empty() ? fmt::format("#{} =\n", s.name) : fmt::format("#{} = {}\n", s.name, value);
  }
  return out;
}

}  // namespace kvrdma::tools
