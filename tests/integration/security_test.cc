// Access control on the control plane: the shared-secret token on every RPC, and TLS (server
// authentication, and mutual TLS) through gRPC's own credentials.
#include <catch2/catch.hpp>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <stdlib.h>

#include <future>

#include "integration/harness.h"
#include "kv_cache.pb.h"
#include "kvrdma/client.h"

using kvrdma::Client;
using kvrdma::ClientOptions;
using kvrdma::Code;
using namespace kvrdma::testing;

namespace {

ClientOptions options_for(const ServerProcess& server, const std::string& token = {}) {
  ClientOptions o;
  o.server_addr = server.address();
  o.timeout_ms = 5000;
  o.security.auth_token = token;
  apply_test_transport(o.transport);
  return o;
}

// Calls `method` of the KvCache service with an empty request and `token` (if any); the status.
grpc::Status call_raw(const std::string& address, const std::string& method,
                      const std::string& token) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  grpc::Slice empty("");  // an empty message: every field at its default
  grpc::ByteBuffer request(&empty, 1), reply;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &reply,
                 [&](grpc::Status s) { done.set_value(std::move(s)); });
  return done.get_future().get();
}

// A throwaway CA and certificates made with the openssl CLI, in a temporary directory. P-256 keys:
// generated at once, where RSA-2048 took most of this test's time.
struct Pki {
  std::string dir;
  Pki() {
    char tmpl[] = "/tmp/kvrdma-pki-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    make_ca("ca");
    make_ca("other-ca");
    make_cert("server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost");
    make_cert("client", "ca", "extendedKeyUsage=clientAuth");
  }
  ~Pki() { (void)run("/bin/rm", {"-rf", dir}); }
  std::string path(const std::string& name) const { return dir + "/" + name; }

  void openssl(const std::vector<std::string>& args) {
    RunResult r = run("/usr/bin/openssl", args, {}, std::chrono::seconds(60));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
  }
  void make_ca(const std::string& name) {
    openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", "/CN=kvrdma test " + name, "-keyout", path(name + ".key"),
             "-out", path(name + ".pem")});
  }
  void make_cert(const std::string& name, const std::string& ca, const std::string& ext) {
    openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
             "/CN=" + name, "-keyout", path(name + ".key"), "-out", path(name + ".csr")});
    std::unique_ptr<TempFile> extfile = write_temp(ext + "\n");
    openssl({"x509", "-req", "-in", path(name + ".csr"), "-CA", path(ca + ".pem"), "-CAkey",
             path(ca + ".key"), "-CAcreateserial", "-days", "2", "-extfile", extfile->path, "-out",
             path(name + ".pem")});
  }
};

}  // namespace

TEST_CASE("security: with --auth-token, calls without the right token are PERMISSION_DENIED",
          "[security]") {
  ServerProcess server({"--auth-token", "s3cret-token"});
  SECTION("no token and a wrong token are refused at Hello, with a message saying what to do") {
    auto none = Client::connect(options_for(server));
    REQUIRE_FALSE(none.is_ok());
    CHECK(none.status().code() == Code::kPermissionDenied);
    CHECK_THAT(none.status().message(),
               Catch::Contains("ClientOptions::security.auth_token / auth-token"));
    auto wrong = Client::connect(options_for(server, "s3cret-tokeN"));
    REQUIRE_FALSE(wrong.is_ok());
    CHECK(wrong.status().code() == Code::kPermissionDenied);
    auto longer = Client::connect(options_for(server, "s3cret-token-and-more"));
    CHECK(longer.status().code() == Code::kPermissionDenied);
  }
  SECTION("the right token works end to end, inline and pushed values alike") {
    auto c = Client::connect(options_for(server, "s3cret-token"));
    INFO(c.status().to_string());
    REQUIRE(c.is_ok());
    std::string big = pattern(1 << 20, 3);
    REQUIRE((*c)->put("k", "v").is_ok());
    REQUIRE((*c)->put("big", big).is_ok());
    CHECK((*c)->get_copy("k").value() == "v");
    CHECK((*c)->get_copy("big").value() == big);
    CHECK((*c)->stats().is_ok());
  }
  SECTION("every RPC of the service checks the token, so a new one cannot forget it") {
    const auto* service =
        kvrdma::v1::HelloRequest::descriptor()->file()->FindServiceByName("KvCache");
    REQUIRE(service != nullptr);
    REQUIRE(service->method_count() >= 10);
    for (int i = 0; i < service->method_count(); ++i) {
      std::string method = "/" + service->full_name() + "/" + service->method(i)->name();
      INFO(method);
      CHECK(call_raw(server.address(), method, "").error_code() == grpc::PERMISSION_DENIED);
      CHECK(call_raw(server.address(), method, "nope").error_code() == grpc::PERMISSION_DENIED);
      // With the token the call gets past the check (and fails, if at all, on its empty request).
      CHECK(call_raw(server.address(), method, "s3cret-token").error_code() !=
            grpc::PERMISSION_DENIED);
    }
  }
}

TEST_CASE(
    "security: kv-client reads KVRDMA_AUTH_TOKEN, and a token against a tokenless server is fine",
    "[security]") {
  ServerProcess guarded({"--auth-token", "from-env"});
  REQUIRE(setenv("KVRDMA_AUTH_TOKEN", "from-env", 1) == 0);
  RunResult put = run_client(guarded.address(), {"put", "k", "v"});
  REQUIRE(unsetenv("KVRDMA_AUTH_TOKEN") == 0);
  INFO(put.err);
  CHECK(put.exit_code == 0);
  RunResult denied = run_client(guarded.address(), {"get", "k"});
  CHECK(denied.exit_code != 0);
  CHECK_THAT(denied.err, Catch::Contains("PERMISSION_DENIED"));

  ServerProcess open;
  auto c = Client::connect(options_for(open, "unneeded"));
  INFO(c.status().to_string());
  CHECK(c.is_ok());
}

TEST_CASE("security: TLS with --tls-cert/--tls-key/--tls-ca, and mutual TLS", "[security][tls]") {
  Pki pki;
  SECTION("server TLS: a client verifying with the CA works; plaintext and a wrong CA fail") {
    ServerProcess server(
        {"--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key")});
    ClientOptions o = options_for(server);
    o.security.tls_ca = pki.path("ca.pem");
    auto c = Client::connect(o);
    INFO(c.status().to_string());
    REQUIRE(c.is_ok());
    REQUIRE((*c)->put("k", "over tls").is_ok());
    CHECK((*c)->get_copy("k").value() == "over tls");

    // Connects expected to fail wait out their deadline (gRPC retries the handshake): keep it
    // short.
    ClientOptions plain_options = options_for(server);
    plain_options.timeout_ms = 1000;
    auto plain = Client::connect(plain_options);
    CHECK(plain.status().code() == Code::kUnavailable);
    CHECK_THAT(plain.status().message(), Catch::Contains("if the server uses TLS, give --tls-ca"));
    o.security.tls_ca = pki.path("other-ca.pem");
    o.timeout_ms = 1000;
    auto wrong_ca = Client::connect(o);
    CHECK(wrong_ca.status().code() == Code::kUnavailable);
    CHECK_THAT(wrong_ca.status().message(), Catch::Contains("signed by --tls-ca"));
  }
  SECTION("mutual TLS: the server requires a client certificate signed by its CA") {
    ServerProcess server({"--tls-cert", pki.path("server.pem"), "--tls-key", pki.path("server.key"),
                          "--tls-ca", pki.path("ca.pem"), "--auth-token", "both"});
    ClientOptions o = options_for(server, "both");
    o.security.tls_ca = pki.path("ca.pem");
    o.timeout_ms = 1000;  // expected to fail: see above
    auto anonymous = Client::connect(o);
    CHECK(anonymous.status().code() == Code::kUnavailable);
    o.timeout_ms = 5000;
    o.security.tls_cert = pki.path("client.pem");
    o.security.tls_key = pki.path("client.key");
    auto c = Client::connect(o);
    INFO(c.status().to_string());
    REQUIRE(c.is_ok());
    CHECK((*c)->put("k", "mutual").is_ok());
  }
  SECTION("unreadable or half-given TLS files are clear errors") {
    ClientOptions o;
    o.server_addr = "127.0.0.1:1";
    o.security.tls_ca = pki.path("missing.pem");
    auto c = Client::connect(o);
    CHECK(c.status().code() == Code::kInvalidArgument);
    CHECK_THAT(c.status().message(), Catch::Contains("security.tls_ca / tls-ca"));
    RunResult r = run(server_binary(),
                      {"--listen-addr", "127.0.0.1:0", "--tls-cert", pki.path("server.pem")});
    CHECK(r.exit_code != 0);
    // The program names flags where the library names members.
    CHECK_THAT(r.err, Catch::Contains("--tls-cert and --tls-key go together"));
  }
}
