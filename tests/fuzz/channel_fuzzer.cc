// libFuzzer target: the request channel's decoders on arbitrary bytes (a client owns every byte
// of its slots). Anything that decodes must re-encode to the same bytes and point inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "channel/codec.h"

namespace ch = kvrdma::channel;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kSlot = 8192;
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  const char* lo = reinterpret_cast<const char*>(data);
  auto inside = [&](std::string_view v) {
    return v.empty() || (v.data() >= lo && v.data() + v.size() <= lo + size);
  };
  if (auto r = ch::decode_request(in, kSlot, 1024); r.is_ok()) {
    if (!inside(r->key) || !inside(r->value)) std::abort();
    for (const auto& it : r->items) {
      if (!inside(it.key)) std::abort();
    }
    std::string again;
    if (!ch::encode(*r, kSlot, &again).is_ok() || again.size() != size) std::abort();
  }
  if (auto r = ch::decode_response(in, kSlot); r.is_ok()) {
    if (!inside(r->message) || !inside(r->detail)) std::abort();
    for (const auto& res : r->results) {
      if (!inside(res.inline_bytes)) std::abort();
    }
  }
  return 0;
}
