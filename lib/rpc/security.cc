#include "rpc/security.h"

#include <fmt/format.h>
#include <grpcpp/client_context.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace kvrdma::rpc {
namespace {

constexpr std::string_view kBearer = "Bearer ";

Result<std::string> read_pem(const std::string& path, std::string_view flag) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return Status(Code::kInvalidArgument,
                  fmt::format("cannot read {} '{}': {}", flag, path, std::strerror(errno)));
  }
  std::ostringstream out;
  out << f.rdbuf();
  std::string pem = out.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return Status(Code::kInvalidArgument,
                  fmt::format("{} '{}' is not a PEM file (no -----BEGIN line)", flag, path));
  }
  return pem;
}

Status check_pair(const SecurityOptions& s) {
  if (s.tls_cert.empty() != s.tls_key.empty()) {
    return Status(Code::kInvalidArgument,
                  "security.tls_cert / tls-cert and security.tls_key / tls-key go together; give "
                  "both or neither");
  }
  return Status();
}

}  // namespace

Result<std::shared_ptr<grpc::ServerCredentials>> server_credentials(const SecurityOptions& s) {
  KVRDMA_RETURN_IF_ERROR(check_pair(s));
  if (s.tls_cert.empty()) {
    if (!s.tls_ca.empty()) {
      return Status(Code::kInvalidArgument,
                    "security.tls_ca / tls-ca on the server needs security.tls_cert / tls-cert and "
                    "security.tls_key / tls-key (TLS) as well");
    }
    return grpc::InsecureServerCredentials();
  }
  auto cert = read_pem(s.tls_cert, "security.tls_cert / tls-cert");
  if (!cert) return cert.status();
  auto key = read_pem(s.tls_key, "security.tls_key / tls-key");
  if (!key) return key.status();
  grpc::SslServerCredentialsOptions o(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!s.tls_ca.empty()) {
    auto ca = read_pem(s.tls_ca, "security.tls_ca / tls-ca");
    if (!ca) return ca.status();
    o.pem_root_certs = *ca;
    o.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  o.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(o);
}

Result<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials(const SecurityOptions& s) {
  KVRDMA_RETURN_IF_ERROR(check_pair(s));
  if (s.tls_ca.empty() && s.tls_cert.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  if (!s.tls_ca.empty()) {
    auto ca = read_pem(s.tls_ca, "security.tls_ca / tls-ca");
    if (!ca) return ca.status();
    o.pem_root_certs = *ca;
  }
  if (!s.tls_cert.empty()) {
    auto cert = read_pem(s.tls_cert, "security.tls_cert / tls-cert");
    if (!cert) return cert.status();
    auto key = read_pem(s.tls_key, "security.tls_key / tls-key");
    if (!key) return key.status();
    o.pem_cert_chain = *cert;
    o.pem_private_key = *key;
  }
  return grpc::SslCredentials(o);
}

void add_token(grpc::ClientContext& ctx, const std::string& token) {
  if (!token.empty()) ctx.AddMetadata(kAuthMetadataKey, std::string(kBearer) + token);
}

Status check_token(const grpc::ServerContextBase& ctx, const std::string& expected) {
  if (expected.empty()) return Status();
  const auto& md = ctx.client_metadata();
  auto it = md.find(kAuthMetadataKey);
  std::string_view got;
  if (it != md.end()) got = std::string_view(it->second.data(), it->second.size());
  bool bearer = got.substr(0, kBearer.size()) == kBearer;
  if (bearer) got.remove_prefix(kBearer.size());
  // Constant time in the position of the first difference: always walk all of `expected`.
  unsigned char diff = got.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    unsigned char g = i < got.size() ? static_cast<unsigned char>(got[i]) : 0;
    diff |= static_cast<unsigned char>(g ^ static_cast<unsigned char>(expected[i]));
  }
  if (it == md.end() || !bearer) {
    return Status(Code::kPermissionDenied,
                  "this kv-server requires an auth token: set ClientOptions::security.auth_token / "
                  "auth-token (or KVRDMA_AUTH_TOKEN) on the client");
  }
  if (diff != 0) {
    return Status(Code::kPermissionDenied,
                  "wrong auth token: the client's ClientOptions::security.auth_token / "
                  "auth-token does not match the server's");
  }
  return Status();
}

}  // namespace kvrdma::rpc
