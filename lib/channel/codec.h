// The request channel's wire format: what a request and a completion slot hold. Fixed
// little-endian headers followed by key, value, message and detail bytes. Every decoder treats its
// input as hostile: it checks every length and count against the bytes it was given and the slot
// size before it reads, and returns INVALID_ARGUMENT (never crashes, never reads past the input).
// Views returned by a decoder point into the input, which must outlive them.
//
// Request (kRequestHeaderBytes, then the body):
//   u16 magic 0x6b63 ("kc") | u8 version 1 | u8 op | u32 slot | u64 generation |
//   u32 key_len | u32 value_len | u64 dest_offset | u64 dest_capacity | u32 dest_region |
//   u32 item_count | u64 map_epoch | u64 ttl_ms | u32 timeout_ms | u32 reserved (0)
//   GET, DELETE: key.  PUT: key, value.
//   GET_MANY: item_count entries of {u32 key_len | u32 dest_region | u64 dest_offset |
//             u64 dest_capacity} (kItemBytes each), then the keys back to back. Header key_len
//             is the sum of the keys' lengths; header dest fields are 0.
// Response (kResponseHeaderBytes, then item_count result records, then the bytes):
//   u16 magic 0x6b72 ("kr") | u8 version 1 | u8 op | u32 slot | u64 generation |
//   u32 code | u16 message_len | u16 detail_len | u32 item_count | u32 reserved (0)
//   result record (kResultBytes): u32 code | u32 flags (1 inline, 2 written, 4 deferred) |
//             u64 value_len | u32 inline_len | u32 reserved
//   then message, detail (a serialized v1::ErrorDetail: wrong_owner, session_lost), and each
//   result's inline bytes in order.
//   GET, PUT, DELETE carry one result (DELETE: code OK when the key existed, NOT_FOUND when not).
//   GET_MANY carries one per item. A request that failed as a whole carries code != OK and no
//   results.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvrdma/status.h"

namespace kvrdma::channel {

enum class Op : uint8_t { kGet = 1, kGetMany = 2, kPut = 3, kDelete = 4 };

inline constexpr size_t kRequestHeaderBytes = 72;
inline constexpr size_t kItemBytes = 24;
inline constexpr size_t kResponseHeaderBytes = 32;
inline constexpr size_t kResultBytes = 24;
// Smallest slot a link may offer: room for a header and a useful key.
inline constexpr size_t kMinSlotBytes = 512;
// Largest slot a server accepts (a slot region is slots x 2 x this).
inline constexpr size_t kMaxSlotBytes = 1 << 20;

inline constexpr uint32_t kFlagInline = 1;
inline constexpr uint32_t kFlagWritten = 2;
inline constexpr uint32_t kFlagDeferred = 4;

// One GET_MANY item.
struct ItemRef {
  std::string_view key;
  uint32_t dest_region = 0;  // 0: the session's receive buffer
  uint64_t dest_offset = 0;
  uint64_t dest_capacity = 0;
};

// A request, as the client builds it or the server decodes it.
struct Request {
  Op op = Op::kGet;
  uint32_t slot = 0;
  uint64_t generation = 0;
  std::string_view key;    // GET, PUT, DELETE
  std::string_view value;  // PUT
  uint32_t dest_region = 0;
  uint64_t dest_offset = 0;
  uint64_t dest_capacity = 0;
  uint64_t map_epoch = 0;
  uint64_t ttl_ms = 0;
  uint32_t timeout_ms = 0;     // 0: the server's default
  std::vector<ItemRef> items;  // GET_MANY
};

// One result of a response.
struct ResultRef {
  Code code = Code::kOk;
  uint32_t flags = 0;
  uint64_t value_len = 0;
  std::string_view inline_bytes;
};

// A response, as the server builds it or the client decodes it.
struct Response {
  Op op = Op::kGet;
  uint32_t slot = 0;
  uint64_t generation = 0;
  Code code = Code::kOk;
  std::string_view message;
  std::string_view detail;
  std::vector<ResultRef> results;
};

// Bytes `request` encodes to.
size_t encoded_size(const Request& request);
size_t encoded_size(const Response& response);

// Encodes into `out` (resized). INVALID_ARGUMENT when the encoding exceeds `slot_bytes` or a
// length does not fit its field; `out` is then unspecified.
Status encode(const Request& request, size_t slot_bytes, std::string* out);
Status encode(const Response& response, size_t slot_bytes, std::string* out);

// Decodes untrusted bytes. INVALID_ARGUMENT, naming the field, when anything is out of range:
// input larger than `slot_bytes` or shorter than its header, wrong magic/version, unknown op,
// lengths that do not add up to the input, item counts beyond `max_items`, codes outside Code.
Result<Request> decode_request(std::span<const std::byte> bytes, size_t slot_bytes,
                               size_t max_items);
Result<Response> decode_response(std::span<const std::byte> bytes, size_t slot_bytes);

const char* op_name(Op op);

}  // namespace kvrdma::channel
