// Bounded wire encoding on top of Cereal's binary archive: no length or count from a peer decides an allocation.
//
// Every variable-length field on the wire is one of the Bounded* types below.
// On load each reads its length prefix, checks it against its compile-time
// maximum AND against the bytes actually left in the input, and only then
// allocates. Cereal's own std::vector / std::string loaders resize() to
// whatever the stream claims; they are never used for peer input.
// The grammar these produce is written down in docs/protocol.md.
#pragma once

#include <bit>
#include <cstdint>
#include <sstream>
#include <streambuf>
#include <string>
#include <vector>

#include <cereal/archives/binary.hpp>
#include <cereal/types/array.hpp>

#include "crypto/sodium.h"
#include "crypto/status.h"

namespace kring {

// Cereal's binary archive writes integers in host order; we pin the wire to
// little-endian by refusing to build elsewhere.
static_assert(std::endian::native == std::endian::little, "kring's wire format is little-endian");

// Thrown inside a decode only; Decode() turns it into Status::Corruption.
struct WireError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A read-only streambuf over a byte span that knows how many bytes are left.
class SpanStreamBuf : public std::streambuf {
 public:
  explicit SpanStreamBuf(ByteSpan in) {
    char* b = const_cast<char*>(reinterpret_cast<const char*>(in.data()));
    setg(b, b, b + in.size());
  }
  size_t remaining() const { return static_cast<size_t>(egptr() - gptr()); }
};

namespace wire_detail {
// The input of the decode running on this thread; set by Decode().
inline thread_local const SpanStreamBuf* current_input = nullptr;

inline size_t BytesLeft() {
  if (current_input == nullptr) throw WireError("bounded load outside Decode()");
  return current_input->remaining();
}

// Reads a length/count prefix and checks it against `max` and against the
// bytes left given that every element needs at least `min_elem_bytes`.
template <class Archive, class Len>
size_t LoadCount(Archive& ar, size_t max, size_t min_elem_bytes, const char* what) {
  Len n = 0;
  ar(n);
  if (n > max) throw WireError(std::string(what) + " count " + std::to_string(n) + " exceeds limit " + std::to_string(max));
  if (min_elem_bytes > 0 && static_cast<size_t>(n) > BytesLeft() / min_elem_bytes)
    throw WireError(std::string(what) + " count " + std::to_string(n) + " exceeds the bytes left");
  return static_cast<size_t>(n);
}
}  // namespace wire_detail

// Bytes with at most Max elements; length prefix of type Len.
template <size_t Max, class Len = uint32_t>
struct BoundedBytes {
  static_assert(Max <= std::numeric_limits<Len>::max());
  Bytes v;

  template <class Archive>
  void save(Archive& ar) const {
    if (v.size() > Max) throw WireError("bytes field over its limit on save");
    ar(static_cast<Len>(v.size()));
    ar(cereal::binary_data(v.data(), v.size()));
  }
  template <class Archive>
  void load(Archive& ar) {
    size_t n = wire_detail::LoadCount<Archive, Len>(ar, Max, 1, "bytes");
    v.resize(n);
    ar(cereal::binary_data(v.data(), n));
  }
};

// A string of at most Max bytes (not validated as UTF-8 here; callers that
// need a slug or UTF-8 check it after decoding).
template <size_t Max, class Len = uint8_t>
struct BoundedString {
  static_assert(Max <= std::numeric_limits<Len>::max());
  std::string v;

  template <class Archive>
  void save(Archive& ar) const {
    if (v.size() > Max) throw WireError("string field over its limit on save");
    ar(static_cast<Len>(v.size()));
    ar(cereal::binary_data(v.data(), v.size()));
  }
  template <class Archive>
  void load(Archive& ar) {
    size_t n = wire_detail::LoadCount<Archive, Len>(ar, Max, 1, "string");
    v.resize(n);
    ar(cereal::binary_data(v.data(), n));
  }
};

// A vector of at most Max elements, each of which takes at least
// MinElemBytes on the wire (so a count can be checked against bytes left).
template <class T, size_t Max, size_t MinElemBytes, class Len = uint16_t>
struct BoundedVector {
  static_assert(MinElemBytes > 0);
  static_assert(Max <= std::numeric_limits<Len>::max());
  std::vector<T> v;

  template <class Archive>
  void save(Archive& ar) const {
    if (v.size() > Max) throw WireError("list over its limit on save");
    ar(static_cast<Len>(v.size()));
    for (const T& e : v) ar(e);
  }
  template <class Archive>
  void load(Archive& ar) {
    size_t n = wire_detail::LoadCount<Archive, Len>(ar, Max, MinElemBytes, "list");
    v.clear();
    v.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      T e{};
      ar(e);
      v.push_back(std::move(e));
    }
  }
};

// Encodes `value` with Cereal's binary archive.
template <class T>
Bytes Encode(const T& value) {
  std::ostringstream os(std::ios::binary);
  {
    cereal::BinaryOutputArchive ar(os);
    ar(value);
  }
  const std::string s = os.str();
  return Bytes(s.begin(), s.end());
}

// Decodes exactly `in` into *out. Corruption (with the reason) if the input
// is truncated, exceeds a bound, or has bytes left over. Never throws.
template <class T>
Status Decode(ByteSpan in, T* out) {
  SpanStreamBuf buf(in);
  std::istream is(&buf);
  const SpanStreamBuf* saved = wire_detail::current_input;
  wire_detail::current_input = &buf;
  Status st;
  try {
    cereal::BinaryInputArchive ar(is);
    ar(*out);
    if (buf.remaining() != 0) st = Status::Corruption(std::to_string(buf.remaining()) + " trailing bytes");
  } catch (const WireError& e) {
    st = Status::Corruption(e.what());
  } catch (const cereal::Exception&) {
    st = Status::Corruption("truncated");
  } catch (const std::exception& e) {
    st = Status::Corruption(std::string("undecodable: ") + e.what());
  }
  wire_detail::current_input = saved;
  return st;
}

}  // namespace kring
