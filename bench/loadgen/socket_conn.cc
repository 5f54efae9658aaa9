#include "socket_conn.h"

#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <span>

namespace kvrdma::bench {

Result<SocketConn> SocketConn::connect(const std::string& host_port) {
  auto colon = host_port.rfind(':');
  if (colon == std::string::npos) {
    return Status(Code::kInvalidArgument, fmt::format("address '{}' is not host:port", host_port));
  }
  std::string host = host_port.substr(0, colon), port = host_port.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Status(Code::kUnavailable, fmt::format("resolve {}: {}", host_port, gai_strerror(rc)));
  }
  int fd = -1;
  for (addrinfo* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    return Status(Code::kUnavailable, fmt::format("connect {}: {}", host_port, strerror(errno)));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // requests are latency-bound
  timeval tv{kReplyTimeoutS, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return SocketConn(fd);
}

SocketConn::SocketConn(SocketConn&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      out_(std::move(o.out_)),
      buf_(std::move(o.buf_)),
      begin_(o.begin_),
      end_(o.end_) {}

SocketConn::~SocketConn() {
  if (fd_ >= 0) ::close(fd_);
}

Status SocketConn::send(std::span<const std::string_view> pieces) {
  KVRDMA_RETURN_IF_ERROR(flush());
  return write_all(pieces);
}

void SocketConn::queue(std::span<const std::string_view> pieces) {
  for (auto p : pieces) out_.append(p);
}

Status SocketConn::flush() {
  if (out_.empty()) return Status();
  std::string_view all[] = {out_};
  Status s = write_all(all);
  out_.clear();
  return s;
}

Status SocketConn::write_all(std::span<const std::string_view> pieces) {
  std::vector<iovec> iov;
  for (auto p : pieces) {
    if (!p.empty()) iov.push_back({const_cast<char*>(p.data()), p.size()});
  }
  size_t i = 0;
  while (i < iov.size()) {
    ssize_t n =
        ::writev(fd_, iov.data() + i, static_cast<int>(std::min<size_t>(iov.size() - i, 1024)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(Code::kUnavailable, fmt::format("send: {}", strerror(errno)));
    }
    size_t left = static_cast<size_t>(n);
    while (i < iov.size() && left >= iov[i].iov_len) left -= iov[i++].iov_len;
    if (i < iov.size()) {
      iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + left;
      iov[i].iov_len -= left;
    }
  }
  return Status();
}

namespace {

// recv's failure as a Status: a timeout says which limit ran out.
Status recv_error(int err) {
  if (err == EAGAIN || err == EWOULDBLOCK) {
    return Status(Code::kUnavailable,
                  fmt::format("no reply from the server in {} s", SocketConn::kReplyTimeoutS));
  }
  return Status(Code::kUnavailable, fmt::format("recv: {}", strerror(err)));
}

}  // namespace

Status SocketConn::fill() {
  KVRDMA_RETURN_IF_ERROR(flush());  // the server cannot answer what it has not been sent
  if (begin_ == end_) begin_ = end_ = 0;
  if (end_ == buf_.size()) {
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    } else {
      buf_.resize(buf_.size() * 2);
    }
  }
  for (;;) {
    ssize_t n = ::recv(fd_, buf_.data() + end_, buf_.size() - end_, 0);
    if (n > 0) {
      end_ += static_cast<size_t>(n);
      return Status();
    }
    if (n == 0) return Status(Code::kUnavailable, "connection closed by the server");
    if (errno != EINTR) return recv_error(errno);
  }
}

Result<std::string_view> SocketConn::read_line() {
  for (;;) {
    std::string_view have(buf_.data() + begin_, end_ - begin_);
    if (auto pos = have.find("\r\n"); pos != std::string_view::npos) {
      begin_ += pos + 2;
      return have.substr(0, pos);  // valid until the next read
    }
    if (auto s = fill(); !s.is_ok()) return s;
  }
}

Status SocketConn::read_exact(size_t n, std::string& out) {
  out.resize(n);
  size_t got = std::min(n, end_ - begin_);
  std::memcpy(out.data(), buf_.data() + begin_, got);
  begin_ += got;
  if (got < n) KVRDMA_RETURN_IF_ERROR(flush());
  while (got < n) {  // the rest straight into `out`, bypassing the buffer
    ssize_t r = ::recv(fd_, out.data() + got, n - got, 0);
    if (r > 0) {
      got += static_cast<size_t>(r);
    } else if (r == 0) {
      return Status(Code::kUnavailable, "connection closed by the server mid-value");
    } else if (errno != EINTR) {
      return recv_error(errno);
    }
  }
  return Status();
}

}  // namespace kvrdma::bench
