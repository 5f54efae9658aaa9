// A blocking TCP connection with a read buffer: what the RESP and memcached text drivers need
// (lines, exact byte counts, writes of several pieces in one system call). Requests may also be
// queued (pipelining): queued bytes go out in one write at the latest when a read has to wait for
// the server, so a client keeping P requests outstanding writes them in as few calls as the
// server's answers allow. One thread at a time.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvrdma/status.h"

namespace kvrdma::bench {

class SocketConn {
 public:
  // A reply slower than this fails the read (SO_RCVTIMEO), so a stalled server ends a run.
  static constexpr int kReplyTimeoutS = 30;

  static Result<SocketConn> connect(const std::string& host_port);
  SocketConn(SocketConn&& other) noexcept;
  SocketConn& operator=(SocketConn&&) = delete;
  SocketConn(const SocketConn&) = delete;
  ~SocketConn();

  // Sends all pieces, in order (writev; loops on short writes), after anything queued.
  Status send(std::span<const std::string_view> pieces);
  // Appends the pieces to the bytes waiting to be sent (copied: the pieces may go away).
  void queue(std::span<const std::string_view> pieces);
  // Sends whatever is queued.
  Status flush();
  // One line without its "\r\n". A read that must wait sends the queued bytes first; no reply
  // within kReplyTimeoutS is UNAVAILABLE.
  Result<std::string_view> read_line();
  // Exactly n bytes into out (resized).
  Status read_exact(size_t n, std::string& out);

 private:
  explicit SocketConn(int fd) : fd_(fd) {}
  Status fill();  // reads more into buf_ (flushing first)
  Status write_all(std::span<const std::string_view> pieces);
  int fd_ = -1;
  std::string out_;  // queued request bytes
  std::vector<char> buf_ = std::vector<char>(256 << 10);
  size_t begin_ = 0, end_ = 0;
};

}  // namespace kvrdma::bench
