// kv-client repl: one command per line from stdin. Results go to stdout, errors to stderr, and
// the loop goes on after an error. A prompt is shown only when stdin is a terminal, so piped
// input gives clean output for scripts and tests.
//
// History is kept in memory for the session: `history` lists it, `!N` reruns entry N and `!!`
// the last one. There is no line editing (no readline dependency), so arrow keys are not bound.
#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cli_common.h"
#include "kv_client.h"

namespace kvrdma::tools {
namespace {

constexpr const char* kHelp =
    "commands:\n"
    "  get <key>                 print the value\n"
    "  put <key> <value...>      store the rest of the line as the value\n"
    "  delete <key>              remove the key (also: del)\n"
    "  stats [--json]            server counters\n"
    "  locate <key> [--json]     where the value lives (owner, region, offset, length)\n"
    "  cluster [--json]          the cluster map and each node's counters\n"
    "  history                   commands of this session; !N reruns one, !! the last\n"
    "  help                      this text\n"
    "  quit                      leave (also: exit, Ctrl-D)\n";

// Splits off the first whitespace-separated word; `rest` keeps its inner spacing.
std::string_view next_word(std::string_view& rest) {
  const size_t start = rest.find_first_not_of(" \t");
  if (start == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(start);
  const size_t end = rest.find_first_of(" \t");
  std::string_view word = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
  return word;
}

std::string_view trim_left(std::string_view s) {
  const size_t start = s.find_first_not_of(" \t");
  return start == std::string_view::npos ? std::string_view{} : s.substr(start);
}

void print_line(std::string_view text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

bool usage(std::string_view text) {
  fmt::print(stderr, "usage: {}\n", text);
  return true;
}

// Runs one command line. Returns false when the session should end.
bool execute(Client& client, std::string_view line, const std::vector<std::string>& history) {
  std::string_view rest = line;
  const std::string_view cmd = next_word(rest);
  if (cmd.empty()) return true;
  if (cmd == "quit" || cmd == "exit") return false;
  if (cmd == "help") {
    std::fputs(kHelp, stdout);
  } else if (cmd == "history") {
    for (size_t i = 0; i < history.size(); ++i) fmt::print("{:>4}  {}\n", i + 1, history[i]);
  } else if (cmd == "get") {
    const std::string_view key = next_word(rest);
    if (key.empty()) return usage("get <key>");
    auto value = client.get(key);
    if (value) {
      print_line(value->str());
    } else if (value.status().code() == Code::kNotFound) {
      print_line("(nil)");
    } else {
      report_error("get", value.status());
    }
  } else if (cmd == "put") {
    const std::string_view key = next_word(rest);
    if (key.empty()) return usage("put <key> <value...>");
    const Status s = client.put(key, trim_left(rest));
    if (s.is_ok()) print_line("OK");
    else report_error("put", s);
  } else if (cmd == "delete" || cmd == "del") {
    const std::string_view key = next_word(rest);
    if (key.empty()) return usage("delete <key>");
    const Status s = client.del(key);
    if (s.is_ok()) print_line("OK");
    else if (s.code() == Code::kNotFound) print_line("(not found)");
    else report_error("delete", s);
  } else if (cmd == "stats") {
    command_stats(client, next_word(rest) == "--json", "stats");
  } else if (cmd == "locate") {
    const std::string_view key = next_word(rest);
    if (key.empty()) return usage("locate <key> [--json]");
    command_locate(client, key, next_word(rest) == "--json", "locate");
  } else if (cmd == "cluster") {
    command_cluster(client, next_word(rest) == "--json", "cluster");
  } else {
    fmt::print(stderr, "unknown command '{}'; type help\n", cmd);
  }
  std::fflush(stdout);
  return true;
}

// "!!" / "!N" to the history entry it names; the line itself otherwise. Empty when out of range.
std::string expand_history(const std::string& line, const std::vector<std::string>& history) {
  if (line.size() < 2 || line[0] != '!') return line;
  if (line == "!!") return history.empty() ? std::string() : history.back();
  size_t n = 0;
  for (size_t i = 1; i < line.size(); ++i) {
    if (line[i] < '0' || line[i] > '9' || n > history.size()) return std::string();
    n = n * 10 + static_cast<size_t>(line[i] - '0');
  }
  return n >= 1 && n <= history.size() ? history[n - 1] : std::string();
}

}  // namespace

int run_repl(Client& client) {
  const bool interactive = is_terminal(0);
  std::vector<std::string> history;
  if (interactive) {
    fmt::print("kv-client repl, session {} (transport {}); type help\n", client.session_id(),
               client.transport_description());
  }
  std::string line;
  for (;;) {
    if (interactive) {
      std::fputs("kv> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line)) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.starts_with("!")) {
      const std::string expanded = expand_history(line, history);
      if (expanded.empty()) {
        fmt::print(stderr, "no history entry '{}'; type history\n", line);
        continue;
      }
      if (interactive) fmt::print("{}\n", expanded);
      line = expanded;
    }
    if (trim_left(line).empty()) continue;
    history.push_back(line);
    if (!execute(client, line, history)) break;
  }
  if (interactive) std::fputc('\n', stdout);
  return kExitOk;
}

}  // namespace kvrdma::tools
