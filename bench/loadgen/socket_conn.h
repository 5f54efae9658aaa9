// A blocking TCP connection with a read buffer: what the RESP and memcached text drivers need
// (lines, exact byte counts, writes of several pieces in one system call).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvrdma/status.h"

namespace kvrdma::bench {

class SocketConn {
 public:
  static Result<SocketConn> connect(const std::string& host_port);
  SocketConn(SocketConn&& other) noexcept;
  SocketConn& operator=(SocketConn&&) = delete;
  SocketConn(const SocketConn&) = delete;
  ~SocketConn();

  // Sends all pieces, in order (writev; loops on short writes).
  Status send(std::span<const std::string_view> pieces);
  // One line without its "\r\n".
  Result<std::string_view> read_line();
  // Exactly n bytes into out (resized).
  Status read_exact(size_t n, std::string& out);

 private:
  explicit SocketConn(int fd) : fd_(fd) {}
  Status fill();  // reads more into buf_
  int fd_ = -1;
  std::vector<char> buf_ = std::vector<char>(256 << 10);
  size_t begin_ = 0, end_ = 0;
};

}  // namespace kvrdma::bench
