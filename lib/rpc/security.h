// Control-plane access control shared by server and client: gRPC credentials (TLS) from
// SecurityOptions, and the shared-secret token every RPC carries.
//
// The token travels as call metadata "authorization: Bearer <token>". Over plain TCP anyone on
// the path can read it: use it with TLS wherever the network is not trusted.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

#include <memory>
#include <string>

#include "kvrdma/options.h"
#include "kvrdma/status.h"

namespace kvrdma::rpc {

inline constexpr char kAuthMetadataKey[] = "authorization";

// TLS when tls_cert/tls_key are set (client certificates required and verified against tls_ca
// when it is set), insecure otherwise. INVALID_ARGUMENT naming the flag when a file cannot be read,
// or when only one of --tls-cert / --tls-key is given.
Result<std::shared_ptr<grpc::ServerCredentials>> server_credentials(const SecurityOptions& s);

// TLS when tls_ca or tls_cert is set (the server verified against tls_ca, or the system roots when
// it is empty; tls_cert + tls_key presented for mutual TLS), insecure otherwise.
Result<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials(const SecurityOptions& s);

// Adds the token to a call (nothing when empty).
void add_token(grpc::ClientContext& ctx, const std::string& token);

// OK when `expected` is empty or the call carries exactly it; PERMISSION_DENIED otherwise. The
// comparison takes the same time wherever the first difference is.
Status check_token(const grpc::ServerContextBase& ctx, const std::string& expected);

}  // namespace kvrdma::rpc
