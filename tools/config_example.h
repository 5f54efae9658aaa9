// The example config file of a program, made from the settings table, so it never drifts from
// it: packaging/kv-server.conf is this text for the server, and a test compares them byte for
// byte. Thread-safe (pure).
#pragma once

#include <string>

namespace kvrdma::tools {

// Every setting of `role` (kServerSetting or kClientSetting), each as its description in
// comments followed by "#name = default" (commented out, no space after '#': uncommenting a
// line is deleting one character), in the table's order, under a header saying how the file
// is read. Uncommented, every line parses with apply_config_file and sets the default.
std::string config_example(unsigned role);

}  // namespace kvrdma::tools
