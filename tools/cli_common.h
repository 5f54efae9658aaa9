// Pieces kv-server and kv-client share: flags built from the settings table, argv clean-up for
// bare boolean flags, CLI11 error handling with the project's exit codes, and small parsers.
// Uses only the public API (include/kvrdma) so the tools show what any embedding program can do,
// plus the library's one size parser and formatter (common/units.h: kvrdma::parse_bytes,
// kvrdma::format_bytes), so a size reads the same in a flag, a setting and the programs' output.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/units.h"
#include "kvrdma/options.h"
#include "kvrdma/status.h"

namespace kvrdma::tools {

// Exit codes of both programs.
constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
constexpr int kExitUsage = 2;
constexpr int kExitError = 3;

// Text given on the command line for each setting flag, keyed by setting name. Only flags the
// user actually gave are applied, so the library's defaults stay the single source of truth.
// `config`: the --config FILE path, empty when not given.
struct SettingFlags {
  std::map<std::string, std::string> values;
  std::map<std::string, CLI::Option*> options;
  std::string config;
};

// Adds "--<name>" for every setting whose roles include `role`, described from the table, and
// "--config FILE".
// `log_level_default` replaces the table's two-role default text in --help.
void add_setting_flags(CLI::App& app, unsigned role, SettingFlags& flags,
                       std::string_view log_level_default);

// Applies the --config file (when given), then the KVRDMA_AUTH_TOKEN environment variable, then
// every flag the user gave: a flag overrides the file. The first INVALID_ARGUMENT is returned
// as is; an error of the file names it and the line ("FILE:3: unknown setting ...").
Status apply_setting_flags(const SettingFlags& flags, ServerOptions& options);
Status apply_setting_flags(const SettingFlags& flags, ClientOptions& options);

// Reads a config file of `role`'s settings into `options`: one "name = value" per line, names as
// the flags without "--", blank lines and lines starting with '#' ignored, surrounding spaces of
// name and value trimmed. Names in `skip` (given on the command line) are checked but not
// applied. INVALID_ARGUMENT names FILE:LINE for an unknown name, a setting of the other program,
// a line without '=', a name given twice, or a bad value; NOT_FOUND when the file cannot be read.
Status apply_config_file(const std::string& path, unsigned role,
                         const std::vector<std::string>& skip, ServerOptions& options);
Status apply_config_file(const std::string& path, unsigned role,
                         const std::vector<std::string>& skip, ClientOptions& options);

// argv as strings, with a bare boolean setting flag rewritten to "--mock=true", so
// "kv-client --mock get k" parses. A flag is bare when nothing follows it, or (`takes_words`:
// the program has subcommands or positionals) when the next word is not a boolean literal,
// or (otherwise) when the next word is another flag. Stops at "--".
std::vector<std::string> normalize_bool_flags(int argc, char** argv, unsigned role,
                                              bool takes_words);

// Parses `args` (argv[0] first, as from normalize_bool_flags).
// Returns nullopt when the program should go on, or the exit code: 0 after --help/--version
// (printed to stdout), 2 after a usage error (one line on stderr).
std::optional<int> parse_command_line(CLI::App& app, std::vector<std::string> args,
                                      std::string_view program);

// Maps a library status to the exit code: NOT_FOUND 1, anything else 3.
int exit_code_for(const Status& status);

// Keeps glibc from handing freed heap memory back to the kernel after every large reply: with
// its default thresholds a 64 KiB inline GET paid for trims, TLB shootdowns and page faults on
// both ends (perf: half the server's time in the kernel), about 4x its cost. Also turns off
// Abseil's mutex deadlock detection (on in Debian's build; gRPC's locks pay for it). Programs
// only; the library never changes such process-wide settings.
void tune_process();
// A program's whole main(): tune_process(), then run(argc, argv). An exception that escapes run
// (a bug: the library reports errors as Status) is printed as "<program>: unexpected error: ..."
// and exits kExitError instead of aborting.
int program_main(std::string_view program, int (*run)(int, char**), int argc, char** argv);
// Prints "<prefix>: <CODE>: <message>" on one line on stderr and returns exit_code_for(status).
int report_error(std::string_view prefix, const Status& status);
// `text` with each option the library names ("ServerOptions::memory_bytes") replaced by the flag
// that sets it ("--memory-mb"); report_error applies it.
std::string with_flag_names(std::string text);
// kExitOk for OK, else report_error().
int report_error_if(std::string_view prefix, const Status& status);

// True when the file descriptor is a terminal.
bool is_terminal(int fd);

}  // namespace kvrdma::tools
