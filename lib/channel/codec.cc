#include "channel/codec.h"

#include <cstring>
#include <limits>

#include <fmt/format.h>

namespace kvrdma::channel {
namespace {

// memcpy of n bytes; nothing at all for n == 0 (an empty view may hold a null pointer, which
// memcpy must not be given even with n == 0).
void copy_in(char* dst, const void* src, size_t n) {
  if (n != 0) std::memcpy(dst, src, n);
}

constexpr uint16_t kRequestMagic = 0x6b63;
constexpr uint16_t kResponseMagic = 0x6b72;
constexpr uint8_t kVersion = 1;

// Little-endian field writers/readers over a byte buffer; the caller has checked the bounds.
template <typename T>
void put(std::string* out, size_t at, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) (*out)[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

template <typename T>
T get(const std::byte* p) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
  return v;
}

std::string_view view(const std::byte* p, size_t n) {
  return std::string_view(reinterpret_cast<const char*>(p), n);
}

Status bad(std::string what) {
  return Status(Code::kInvalidArgument, "channel: " + std::move(what));
}

bool valid_op(uint8_t op) { return op >= 1 && op <= 4; }

}  // namespace

const char* op_name(Op op) {
  switch (op) {
    case Op::kGet: return "GET";
    case Op::kGetMany: return "GET_MANY";
    case Op::kPut: return "PUT";
    case Op::kDelete: return "DELETE";
  }
  return "UNKNOWN";
}

size_t encoded_size(const Request& r) {
  if (r.op == Op::kGetMany) {
    size_t n = kRequestHeaderBytes + r.items.size() * kItemBytes;
    for (const ItemRef& it : r.items) n += it.key.size();
    return n;
  }
  return kRequestHeaderBytes + r.key.size() + (r.op == Op::kPut ? r.value.size() : 0);
}

size_t encoded_size(const Response& r) {
  size_t n =
      kResponseHeaderBytes + r.results.size() * kResultBytes + r.message.size() + r.detail.size();
  for (const ResultRef& res : r.results) n += res.inline_bytes.size();
  return n;
}

Status encode(const Request& r, size_t slot_bytes, std::string* out) {
  const size_t n = encoded_size(r);
  if (n > slot_bytes) {
    return bad(fmt::format("{} request of {} bytes exceeds the slot size {}; send it over gRPC",
                           op_name(r.op), n, slot_bytes));
  }
  uint64_t key_total = 0;
  for (const ItemRef& it : r.items) key_total += it.key.size();
  out->assign(n, '\0');
  put<uint16_t>(out, 0, kRequestMagic);
  put<uint8_t>(out, 2, kVersion);
  put<uint8_t>(out, 3, static_cast<uint8_t>(r.op));
  put<uint32_t>(out, 4, r.slot);
  put<uint64_t>(out, 8, r.generation);
  const bool many = r.op == Op::kGetMany;
  put<uint32_t>(out, 16, static_cast<uint32_t>(many ? key_total : r.key.size()));
  put<uint32_t>(out, 20, static_cast<uint32_t>(r.op == Op::kPut ? r.value.size() : 0));
  put<uint64_t>(out, 24, many ? 0 : r.dest_offset);
  put<uint64_t>(out, 32, many ? 0 : r.dest_capacity);
  put<uint32_t>(out, 40, many ? 0 : r.dest_region);
  put<uint32_t>(out, 44, static_cast<uint32_t>(many ? r.items.size() : 0));
  put<uint64_t>(out, 48, r.map_epoch);
  put<uint64_t>(out, 56, r.ttl_ms);
  put<uint32_t>(out, 64, r.timeout_ms);
  size_t at = kRequestHeaderBytes;
  if (many) {
    for (const ItemRef& it : r.items) {
      put<uint32_t>(out, at, static_cast<uint32_t>(it.key.size()));
      put<uint32_t>(out, at + 4, it.dest_region);
      put<uint64_t>(out, at + 8, it.dest_offset);
      put<uint64_t>(out, at + 16, it.dest_capacity);
      at += kItemBytes;
    }
    for (const ItemRef& it : r.items) {
      copy_in(out->data() + at, it.key.data(), it.key.size());
      at += it.key.size();
    }
  } else {
    copy_in(out->data() + at, r.key.data(), r.key.size());
    at += r.key.size();
    if (r.op == Op::kPut) copy_in(out->data() + at, r.value.data(), r.value.size());
  }
  return Status::ok();
}

Status encode(const Response& r, size_t slot_bytes, std::string* out) {
  const size_t n = encoded_size(r);
  if (n > slot_bytes) {
    return bad(fmt::format("{} response of {} bytes exceeds the slot size {}", op_name(r.op), n,
                           slot_bytes));
  }
  if (r.message.size() > std::numeric_limits<uint16_t>::max() ||
      r.detail.size() > std::numeric_limits<uint16_t>::max()) {
    return bad("response message or detail longer than 65535 bytes");
  }
  out->assign(n, '\0');
  put<uint16_t>(out, 0, kResponseMagic);
  put<uint8_t>(out, 2, kVersion);
  put<uint8_t>(out, 3, static_cast<uint8_t>(r.op));
  put<uint32_t>(out, 4, r.slot);
  put<uint64_t>(out, 8, r.generation);
  put<uint32_t>(out, 16, static_cast<uint32_t>(r.code));
  put<uint16_t>(out, 20, static_cast<uint16_t>(r.message.size()));
  put<uint16_t>(out, 22, static_cast<uint16_t>(r.detail.size()));
  put<uint32_t>(out, 24, static_cast<uint32_t>(r.results.size()));
  size_t at = kResponseHeaderBytes;
  for (const ResultRef& res : r.results) {
    put<uint32_t>(out, at, static_cast<uint32_t>(res.code));
    put<uint32_t>(out, at + 4, res.flags);
    put<uint64_t>(out, at + 8, res.value_len);
    put<uint32_t>(out, at + 16, static_cast<uint32_t>(res.inline_bytes.size()));
    at += kResultBytes;
  }
  copy_in(out->data() + at, r.message.data(), r.message.size());
  at += r.message.size();
  copy_in(out->data() + at, r.detail.data(), r.detail.size());
  at += r.detail.size();
  for (const ResultRef& res : r.results) {
    copy_in(out->data() + at, res.inline_bytes.data(), res.inline_bytes.size());
    at += res.inline_bytes.size();
  }
  return Status::ok();
}

Result<Request> decode_request(std::span<const std::byte> b, size_t slot_bytes, size_t max_items) {
  if (b.size() > slot_bytes) {
    return bad(fmt::format("request of {} bytes exceeds the slot size {}", b.size(), slot_bytes));
  }
  if (b.size() < kRequestHeaderBytes) {
    return bad(fmt::format("request of {} bytes is shorter than its {}-byte header", b.size(),
                           kRequestHeaderBytes));
  }
  const std::byte* p = b.data();
  if (get<uint16_t>(p) != kRequestMagic || get<uint8_t>(p + 2) != kVersion) {
    return bad("request has a wrong magic or version; client and server versions differ");
  }
  const uint8_t op = get<uint8_t>(p + 3);
  if (!valid_op(op)) return bad(fmt::format("unknown request op {}", op));
  Request r;
  r.op = static_cast<Op>(op);
  r.slot = get<uint32_t>(p + 4);
  r.generation = get<uint64_t>(p + 8);
  const uint64_t key_len = get<uint32_t>(p + 16);
  const uint64_t value_len = get<uint32_t>(p + 20);
  r.dest_offset = get<uint64_t>(p + 24);
  r.dest_capacity = get<uint64_t>(p + 32);
  r.dest_region = get<uint32_t>(p + 40);
  const uint64_t items = get<uint32_t>(p + 44);
  r.map_epoch = get<uint64_t>(p + 48);
  r.ttl_ms = get<uint64_t>(p + 56);
  r.timeout_ms = get<uint32_t>(p + 64);
  if (get<uint32_t>(p + 68) != 0) return bad("request reserved field is not 0");
  const size_t body = b.size() - kRequestHeaderBytes;
  const std::byte* q = p + kRequestHeaderBytes;
  if (r.op == Op::kGetMany) {
    if (items == 0 || items > max_items) {
      return bad(fmt::format("GET_MANY item count {} is outside 1..{}", items, max_items));
    }
    if (value_len != 0 || r.dest_offset != 0 || r.dest_capacity != 0 || r.dest_region != 0) {
      return bad("GET_MANY header value/dest fields must be 0");
    }
    // items <= max_items bounds the product; key_len is a u32.
    if (items * kItemBytes + key_len != body) {
      return bad(
          fmt::format("GET_MANY of {} items and {} key bytes does not match the {}-byte "
                      "body",
                      items, key_len, body));
    }
    const std::byte* keys = q + items * kItemBytes;
    uint64_t used = 0;
    r.items.resize(items);
    for (uint64_t i = 0; i < items; ++i) {
      const std::byte* e = q + i * kItemBytes;
      const uint64_t n = get<uint32_t>(e);
      if (n > key_len - used) {
        return bad(fmt::format("GET_MANY item {} key of {} bytes runs past the keys", i, n));
      }
      r.items[i].key = view(keys + used, n);
      r.items[i].dest_region = get<uint32_t>(e + 4);
      r.items[i].dest_offset = get<uint64_t>(e + 8);
      r.items[i].dest_capacity = get<uint64_t>(e + 16);
      used += n;
    }
    if (used != key_len) return bad("GET_MANY item key lengths do not add up to key_len");
    return r;
  }
  if (items != 0) return bad(fmt::format("{} request with item count {}", op_name(r.op), items));
  if (r.op != Op::kPut && value_len != 0) {
    return bad(fmt::format("{} request with value length {}", op_name(r.op), value_len));
  }
  if (key_len + value_len != body) {
    return bad(fmt::format("key of {} and value of {} bytes do not match the {}-byte body", key_len,
                           value_len, body));
  }
  r.key = view(q, key_len);
  r.value = view(q + key_len, value_len);
  return r;
}

Result<Response> decode_response(std::span<const std::byte> b, size_t slot_bytes) {
  if (b.size() > slot_bytes || b.size() < kResponseHeaderBytes) {
    return bad(fmt::format("response of {} bytes is outside {}..{}", b.size(), kResponseHeaderBytes,
                           slot_bytes));
  }
  const std::byte* p = b.data();
  if (get<uint16_t>(p) != kResponseMagic || get<uint8_t>(p + 2) != kVersion) {
    return bad("response has a wrong magic or version");
  }
  const uint8_t op = get<uint8_t>(p + 3);
  if (!valid_op(op)) return bad(fmt::format("unknown response op {}", op));
  Response r;
  r.op = static_cast<Op>(op);
  r.slot = get<uint32_t>(p + 4);
  r.generation = get<uint64_t>(p + 8);
  const uint32_t code = get<uint32_t>(p + 16);
  if (code > static_cast<uint32_t>(Code::kInternal)) {
    return bad(fmt::format("response code {} is unknown", code));
  }
  r.code = static_cast<Code>(code);
  const uint64_t msg = get<uint16_t>(p + 20);
  const uint64_t det = get<uint16_t>(p + 22);
  const uint64_t items = get<uint32_t>(p + 24);
  uint64_t left = b.size() - kResponseHeaderBytes;
  if (items > left / kResultBytes)
    return bad(fmt::format("response item count {} too large", items));
  left -= items * kResultBytes;
  if (msg + det > left) return bad("response message and detail run past the slot");
  left -= msg + det;
  const std::byte* q = p + kResponseHeaderBytes;
  const std::byte* bytes = q + items * kResultBytes;
  r.message = view(bytes, msg);
  r.detail = view(bytes + msg, det);
  const std::byte* inl = bytes + msg + det;
  r.results.resize(items);
  for (uint64_t i = 0; i < items; ++i) {
    const std::byte* e = q + i * kResultBytes;
    const uint32_t c = get<uint32_t>(e);
    if (c > static_cast<uint32_t>(Code::kInternal)) {
      return bad(fmt::format("result {} code {} is unknown", i, c));
    }
    const uint64_t n = get<uint32_t>(e + 16);
    if (n > left) return bad(fmt::format("result {} inline bytes run past the slot", i));
    r.results[i].code = static_cast<Code>(c);
    r.results[i].flags = get<uint32_t>(e + 4);
    r.results[i].value_len = get<uint64_t>(e + 8);
    r.results[i].inline_bytes = view(inl, n);
    if ((r.results[i].flags & kFlagInline) && n != r.results[i].value_len) {
      return bad(
          fmt::format("result {} is inline with {} of {} bytes", i, n, r.results[i].value_len));
    }
    inl += n;
    left -= n;
  }
  if (left != 0) return bad("response has trailing bytes");
  return r;
}

}  // namespace kvrdma::channel
