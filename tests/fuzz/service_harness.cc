#include "service_harness.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>

#include <cstdio>
#include <cstdlib>
#include <future>

#include "common/clock.h"
#include "kv_cache.grpc.pb.h"
#include "kvrdma/version.h"

namespace kvrdma::fuzz {
namespace {

const google::protobuf::ServiceDescriptor& service_descriptor() {
  // The generated file registers the service with the message types it declares.
  return *v1::HelloRequest::descriptor()->file()->FindServiceByName("KvCache");
}

}  // namespace

InProcessService::InProcessService(bool evict, WrapTransport wrap, bool listen,
                                   const TransportOptions& transport) {
  ServerOptions o;
  o.memory_bytes = 16 << 20;
  o.transport = transport;
  core_.options = o;
  auto t = transport::make_transport(o.transport);
  if (!t) std::abort();
  // As Server::start does: the default threshold is the transport's own.
  core_.options.inline_threshold = transport::default_inline_threshold((*t)->kind());
  core_.transport = wrap ? wrap(std::move(*t)) : std::move(*t);
  auto region = core_.transport->allocate(o.memory_bytes);
  if (!region) std::abort();
  core_.pool_region = std::move(*region);
  core_.pool =
      std::make_unique<memory::MemoryPool>(core_.pool_region->data(), core_.pool_region->size());
  store::StoreOptions so;
  so.evict = evict;
  so.max_key_bytes = o.max_key_bytes;
  core_.store = std::make_unique<store::Store>(*core_.pool, SteadyClock::instance(), so);
  core_.sessions = std::make_unique<server::SessionTable>(std::chrono::milliseconds(o.lease_ms));
  core_.cluster = std::make_unique<server::ClusterView>(o.node_id, !o.cluster.empty());
  service_ = std::make_unique<server::KvService>(core_);

  grpc::ServerBuilder builder;
  builder.RegisterService(service_.get());
  if (listen) builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  server_ = builder.BuildAndStart();
  if (!server_ || (listen && port_ == 0)) std::abort();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  channel_ = server_->InProcessChannel(args);
  stub_ = std::make_unique<grpc::GenericStub>(channel_);
  const auto& sd = service_descriptor();
  for (int i = 0; i < sd.method_count(); ++i) methods_.push_back(sd.method(i)->name());
  auto ct = transport::make_transport(o.transport);
  if (!ct) std::abort();
  client_transport_ = std::move(*ct);
}

InProcessService::~InProcessService() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server_->Wait();
}

std::unique_ptr<google::protobuf::Message> InProcessService::new_request(
    const std::string& method) const {
  const auto* m = service_descriptor().FindMethodByName(method);
  if (!m) return nullptr;
  const auto* proto =
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(m->input_type());
  return std::unique_ptr<google::protobuf::Message>(proto->New());
}

grpc::Status InProcessService::call(const std::string& method, const std::string& request,
                                    std::string* reply, std::chrono::milliseconds limit) {
  grpc::Slice slice(request);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + limit);
  std::promise<grpc::Status> done;
  auto finished = done.get_future();
  std::string path = "/" + service_descriptor().full_name() + "/" + method;
  stub_->UnaryCall(&ctx, path, grpc::StubOptions(), &in, &out,
                   [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status s = finished.get();
  if (s.ok() && reply) {
    std::vector<grpc::Slice> slices;
    reply->clear();
    if (out.Dump(&slices).ok()) {
      for (const auto& sl : slices)
        reply->append(reinterpret_cast<const char*>(sl.begin()), sl.size());
    }
  }
  return s;
}

uint64_t InProcessService::live_session() {
  if (session_ != 0 && core_.sessions->find(session_)) return session_;
  auto region = client_transport_->allocate(1 << 20);
  if (!region) std::abort();
  v1::HelloRequest req;
  req.set_transport_kind(client_transport_->kind());
  req.set_transport_address(client_transport_->address());
  req.set_memory_descriptor((*region)->descriptor());
  req.set_region_size((*region)->size());
  req.set_version(version());
  std::string bytes;
  grpc::Status s = call("Hello", req.SerializeAsString(), &bytes);
  v1::HelloReply reply;
  if (!s.ok() || !reply.ParseFromString(bytes)) {
    std::fprintf(stderr, "fuzz harness: Hello failed: %s\n", s.error_message().c_str());
    std::abort();
  }
  (*region)->seal();
  // Keep a few regions only: older sessions were ended by the requests under test.
  if (client_regions_.size() > 4) client_regions_.erase(client_regions_.begin());
  client_regions_.push_back(std::move(*region));
  session_ = reply.session_id();
  return session_;
}

void InProcessService::use_live_session(google::protobuf::Message& msg) {
  const auto* f = msg.GetDescriptor()->FindFieldByName("session_id");
  if (!f || f->type() != google::protobuf::FieldDescriptor::TYPE_UINT64 || f->is_repeated()) return;
  msg.GetReflection()->SetUInt64(&msg, f, live_session());
}

}  // namespace kvrdma::fuzz
