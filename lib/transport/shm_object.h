// POSIX shared-memory objects as the mock transport uses them: their names, creating and mapping
// one we own, opening one a peer owns, and removing those a dead process left behind.
//
// Every object is named "/kvrdma-<pid>-<16 lowercase hex digits>" (<pid> = its creator, so a stale
// one can be told from a live one) and created with mode 0600. Only names of exactly that pattern
// are ever opened: a name a peer sends is never treated as a path.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "kvrdma/status.h"

namespace kvrdma::transport::shm {

// True when `name` is "/kvrdma-<1..10 decimal digits>-<16 lowercase hex digits>" and nothing else.
bool is_object_name(std::string_view name);

// A fresh name for an object of this process, with 64 random bits.
std::string new_object_name();

// A shared read-write mapping of a whole object; unmaps on destruction. Move-only.
class Mapping {
 public:
  Mapping() = default;
  Mapping(std::byte* data, size_t size) : data_(data), size_(size) {}
  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// An object this process created: mapped, and unlinked by unlink() or at the latest on
// destruction, so nothing is left in /dev/shm whichever way it ends.
class OwnedObject {
 public:
  // Creates a new object of `size` bytes (a multiple of the page size, > 0), reserves its pages
  // (so a full /dev/shm fails here with RESOURCE_EXHAUSTED instead of SIGBUS on a later write)
  // and maps it. On failure nothing is left behind.
  static Result<OwnedObject> create(size_t size);

  OwnedObject(OwnedObject&& other) noexcept;
  OwnedObject& operator=(OwnedObject&&) = delete;
  OwnedObject(const OwnedObject&) = delete;
  OwnedObject& operator=(const OwnedObject&) = delete;
  ~OwnedObject();

  const std::string& name() const { return name_; }
  std::byte* data() const { return map_.data(); }
  size_t size() const { return map_.size(); }

  // Removes the name; the mapping and peers' mappings stay valid. Idempotent; not thread-safe
  // (the caller serialises).
  void unlink();

 private:
  OwnedObject(std::string name, Mapping map) : name_(std::move(name)), map_(std::move(map)) {}

  std::string name_;  // empty once unlinked
  Mapping map_;
};

// Maps a peer's object `name` (which must pass is_object_name) read-write, checking that it is
// exactly `size` bytes. FAILED_PRECONDITION when it does not exist or cannot be opened,
// INVALID_ARGUMENT when its size differs, RESOURCE_EXHAUSTED when it cannot be mapped.
Result<Mapping> open_object(const std::string& name, size_t size);

// Unlinks /dev/shm/kvrdma-<pid>-* objects whose process no longer exists; returns how many.
size_t remove_stale_objects();

}  // namespace kvrdma::transport::shm
