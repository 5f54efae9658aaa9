// What the fabric link's two ends share (fabric_link.h has the protocol): the message header,
// the completion header, the CQ data layout and the offer/accept text helpers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvrdma::channel::fabric_wire {

inline constexpr std::string_view kTag = "kvrdma-chan-fabric-v1";
inline constexpr uint32_t kMagic = 0x3166636b;  // "kcf1" little-endian

// Before each request message.
struct MessageHeader {
  uint32_t magic;
  uint32_t link;
  uint64_t secret;
  uint32_t slot;
  uint32_t reserved;
  uint64_t generation;
};
static_assert(sizeof(MessageHeader) == 32);

// Before each completion in the client's area.
struct CompletionHeader {
  uint64_t generation;
  uint32_t length;
  uint32_t reserved;
};
static_assert(sizeof(CompletionHeader) == 16);

// The CQ data of a completion: the client's link index, the slot, the generation's low bits.
struct DataLayout {
  unsigned link_bits = 16, slot_bits = 16, gen_bits = 32;

  // For a provider's cq_data_size: 8 bytes, or 4 (verbs). nullopt below 4.
  static std::optional<DataLayout> for_bytes(size_t bytes) {
    if (bytes >= 8) return DataLayout{16, 16, 32};
    if (bytes >= 4) return DataLayout{8, 10, 14};
    return std::nullopt;
  }
  uint32_t max_links() const { return 1u << link_bits; }
  uint32_t max_slots() const { return 1u << slot_bits; }
  uint64_t gen_mask() const { return (uint64_t{1} << gen_bits) - 1; }
  uint64_t pack(uint32_t link, uint32_t slot, uint64_t generation) const {
    return uint64_t{link} | (uint64_t{slot} << link_bits) |
           ((generation & gen_mask()) << (link_bits + slot_bits));
  }
  void unpack(uint64_t data, uint32_t* link, uint32_t* slot, uint64_t* gen_low) const {
    *link = static_cast<uint32_t>(data & (max_links() - 1));
    *slot = static_cast<uint32_t>((data >> link_bits) & (max_slots() - 1));
    *gen_low = (data >> (link_bits + slot_bits)) & gen_mask();
  }
};

inline std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

// nullopt for odd lengths or a character that is not a lower-case hex digit.
inline std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = digit(hex[2 * i]), lo = digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

// Splits "tag a b ..." into `count` words; nullopt when the tag or the count differs.
inline std::optional<std::vector<std::string_view>> words(std::string_view s, size_t count) {
  std::vector<std::string_view> out;
  while (out.size() <= count) {
    size_t sp = s.find(' ');
    out.push_back(s.substr(0, sp));
    if (sp == std::string_view::npos) break;
    s.remove_prefix(sp + 1);
  }
  if (out.size() != count || out[0] != kTag) return std::nullopt;
  return out;
}

}  // namespace kvrdma::channel::fabric_wire
