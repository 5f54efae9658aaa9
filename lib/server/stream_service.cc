// GetStream: single GETs over one long-lived bidirectional stream, so a small GET costs one
// message each way instead of a whole call (headers, trailers, a call object on both ends).
//
// One request at a time per stream: the reactor reads a request, serves it, writes the reply,
// and only then reads the next one. So it never has two reads or two writes pending, each step
// starts the next, and its state needs no lock even though the reply to a large value is sent
// from the transport's completion thread. A client wanting several GETs in flight opens several
// streams (lib/client/get_stream.h).
#include <grpcpp/grpcpp.h>

#include "rpc/status_map.h"
#include "server/service.h"

namespace kvrdma::server {
namespace {

class GetStreamReactor final
    : public grpc::ServerBidiReactor<v1::StreamGetRequest, v1::StreamGetReply> {
 public:
  GetStreamReactor(KvService& service, grpc::CallbackServerContext* ctx, Status denied)
      : service_(service), ctx_(ctx) {
    if (!denied.is_ok()) {
      Finish(rpc::to_grpc(denied));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    // Not ok: the client closed its side (it is done) or the stream broke; either way we end.
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    reply_.Clear();
    reply_.set_request_id(request_.request_id());
    std::optional<Status> now =
        service_.serve_get(request_.get(), reply_.mutable_get(), write_deadline(ctx_),
                           [this](Status s) { send(s); });
    if (now) send(*now);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  void send(const Status& s) {
    v1::ItemStatus* out = reply_.mutable_status();
    out->set_code(static_cast<uint32_t>(s.code()));
    if (!s.is_ok()) out->set_message(s.message());
    StartWrite(&reply_);
  }

  KvService& service_;
  grpc::CallbackServerContext* ctx_;
  v1::StreamGetRequest request_;
  v1::StreamGetReply reply_;
};

}  // namespace

grpc::ServerBidiReactor<v1::StreamGetRequest, v1::StreamGetReply>* KvService::GetStream(
    grpc::CallbackServerContext* ctx) {
  return new GetStreamReactor(*this, ctx, authorize(ctx));
}

}  // namespace kvrdma::server
