// Unit tests of the bounded wire encoding (protocol/wire.h) and message framing (protocol/messages.h).
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <string>

#include "protocol/messages.h"
#include "protocol/wire.h"

namespace kring {
namespace {

using Item = std::array<uint8_t, 4>;

// One of each bounded field, with small limits so tests can exceed them cheaply.
struct Sample {
  uint32_t n = 0;
  BoundedBytes<16> bytes;                          // uint32 length prefix
  BoundedString<8> text;                           // uint8 length prefix
  BoundedVector<Item, 3, sizeof(Item), uint8_t> items;
  template <class A>
  void serialize(A& ar) { ar(n, bytes, text, items); }
};

Sample MakeSample() {
  Sample s;
  s.n = 0x01020304;
  s.bytes.v = {9, 8, 7};
  s.text.v = "plan";
  s.items.v = {Item{1, 2, 3, 4}, Item{5, 6, 7, 8}};
  return s;
}

void PutU8(Bytes& b, uint8_t v) { b.push_back(v); }
void PutU16(Bytes& b, uint16_t v) {
  for (int i = 0; i < 2; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU32(Bytes& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void PutU64(Bytes& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

// [version][type] of a frame.
Bytes FrameHeader(MessageType type) { return {kProtocolVersion, static_cast<uint8_t>(type)}; }

bool Contains(const Status& st, std::string_view what) { return st.message().find(what) != std::string::npos; }

PushMessage MakePush() {
  PushMessage m;
  m.records.v.resize(3);
  m.records.v[0].v = {1, 2, 3, 4, 5};
  m.records.v[1].v = Bytes(300, 0xab);
  m.records.v[2].v = {1, 0, 0, 0, 0, 7};
  return m;
}

ReconcileMessage MakeReconcile() {
  ReconcileMessage m;
  m.session = 0x1122334455667788ull;
  m.initiator = 1;
  m.body.v = Bytes(100, 0x5a);
  return m;
}

WantMessage MakeWant() {
  WantMessage m;
  for (uint8_t i = 0; i < 5; ++i) {
    Hash h{};
    h.fill(i);
    m.ids.v.push_back(h);
  }
  return m;
}

}  // namespace

TEST_CASE("bounded bytes, strings and lists round trip through Encode and Decode") {
  const Sample s = MakeSample();
  const Bytes enc = Encode(s);
  // 4 (n) + 4+3 (bytes) + 1+4 (text) + 1+8 (items): length prefixes of the declared widths, no padding.
  CHECK(enc.size() == 4 + 4 + 3 + 1 + 4 + 1 + 2 * 4);
  Sample out;
  Status st = Decode(enc, &out);
  REQUIRE_MESSAGE(st.ok(), st.ToString());
  CHECK(out.n == s.n);
  CHECK(out.bytes.v == s.bytes.v);
  CHECK(out.text.v == s.text.v);
  CHECK(out.items.v == s.items.v);
  CHECK(Encode(out) == enc);
}

TEST_CASE("bounded fields at exactly their limits round trip") {
  Sample s;
  s.bytes.v = Bytes(16, 0xee);
  s.text.v = std::string(8, 'x');
  s.items.v = {Item{1, 1, 1, 1}, Item{2, 2, 2, 2}, Item{3, 3, 3, 3}};
  Sample out;
  REQUIRE(Decode(Encode(s), &out).ok());
  CHECK(out.bytes.v == s.bytes.v);
  CHECK(out.text.v == s.text.v);
  CHECK(out.items.v == s.items.v);
}

TEST_CASE("empty bounded fields round trip") {
  Sample s;
  Sample out = MakeSample();  // decoding must replace, not append to, what was there
  REQUIRE(Decode(Encode(s), &out).ok());
  CHECK(out.n == 0);
  CHECK(out.bytes.v.empty());
  CHECK(out.text.v.empty());
  CHECK(out.items.v.empty());
}

TEST_CASE("a length prefix above a field's compile-time maximum is rejected as Corruption") {
  Bytes in;
  PutU32(in, 0);
  SUBCASE("bytes") {
    PutU32(in, 17);
    in.insert(in.end(), 17, 0);
    PutU8(in, 0);
    PutU8(in, 0);
  }
  SUBCASE("string") {
    PutU32(in, 0);
    PutU8(in, 9);
    in.insert(in.end(), 9, 'a');
    PutU8(in, 0);
  }
  SUBCASE("list") {
    PutU32(in, 0);
    PutU8(in, 0);
    PutU8(in, 4);
    in.insert(in.end(), 4 * sizeof(Item), 0);
  }
  Sample out;
  Status st = Decode(in, &out);
  CHECK(st.code() == Status::Code::kCorruption);
  CHECK(Contains(st, "exceeds limit"));
}

TEST_CASE("a length prefix within the maximum but beyond the bytes present is rejected as Corruption") {
  Bytes in;
  PutU32(in, 0);
  SUBCASE("bytes") { PutU32(in, 16); in.insert(in.end(), 15, 0); }
  SUBCASE("string") { PutU32(in, 0); PutU8(in, 8); in.insert(in.end(), 7, 'a'); }
  SUBCASE("list") { PutU32(in, 0); PutU8(in, 0); PutU8(in, 3); in.insert(in.end(), 2 * sizeof(Item) + 3, 0); }
  Sample out;
  Status st = Decode(in, &out);
  CHECK(st.code() == Status::Code::kCorruption);
}

TEST_CASE("encoding a field over its limit throws rather than writing bytes a peer would reject") {
  Sample s;
  SUBCASE("bytes") { s.bytes.v = Bytes(17, 0); }
  SUBCASE("string") { s.text.v = std::string(9, 'a'); }
  SUBCASE("list") { s.items.v.resize(4); }
  CHECK_THROWS_AS(Encode(s), WireError);
}

TEST_CASE("every truncated prefix of an encoding is rejected by Decode") {
  const Bytes enc = Encode(MakeSample());
  for (size_t len = 0; len < enc.size(); ++len) {
    CAPTURE(len);
    Sample out;
    Status st = Decode(ByteSpan(enc).first(len), &out);
    CHECK(st.code() == Status::Code::kCorruption);
  }
}

TEST_CASE("bytes after a complete encoding are rejected by Decode") {
  Bytes enc = Encode(MakeSample());
  enc.push_back(0);
  Sample out;
  Status st = Decode(enc, &out);
  CHECK(st.code() == Status::Code::kCorruption);
  CHECK(Contains(st, "1 trailing bytes"));
}

TEST_CASE("each message type round trips through EncodeMessage and DecodeMessage") {
  SUBCASE("push") {
    Bytes frame = EncodeMessage(MakePush());
    CHECK(frame[0] == kProtocolVersion);
    CHECK(frame[1] == static_cast<uint8_t>(MessageType::kPush));
    Result<Message> m = DecodeMessage(frame);
    REQUIRE_MESSAGE(m.ok(), m.status().ToString());
    REQUIRE(std::holds_alternative<PushMessage>(*m));
    const PushMessage& p = std::get<PushMessage>(*m);
    REQUIRE(p.records.v.size() == 3);
    CHECK(p.records.v[1].v == Bytes(300, 0xab));
    CHECK(EncodeMessage(*m) == frame);
  }
  SUBCASE("reconcile") {
    Bytes frame = EncodeMessage(MakeReconcile());
    CHECK(frame[1] == static_cast<uint8_t>(MessageType::kReconcile));
    Result<Message> m = DecodeMessage(frame);
    REQUIRE_MESSAGE(m.ok(), m.status().ToString());
    REQUIRE(std::holds_alternative<ReconcileMessage>(*m));
    const ReconcileMessage& r = std::get<ReconcileMessage>(*m);
    CHECK(r.session == 0x1122334455667788ull);
    CHECK(r.initiator == 1);
    CHECK(r.body.v == Bytes(100, 0x5a));
    CHECK(EncodeMessage(*m) == frame);
  }
  SUBCASE("want") {
    Bytes frame = EncodeMessage(MakeWant());
    CHECK(frame[1] == static_cast<uint8_t>(MessageType::kWant));
    Result<Message> m = DecodeMessage(frame);
    REQUIRE_MESSAGE(m.ok(), m.status().ToString());
    REQUIRE(std::holds_alternative<WantMessage>(*m));
    CHECK(std::get<WantMessage>(*m).ids.v == MakeWant().ids.v);
    CHECK(EncodeMessage(*m) == frame);
  }
}

TEST_CASE("every truncated prefix of a message frame is rejected by DecodeMessage") {
  Message msg;
  SUBCASE("push") { msg = MakePush(); }
  SUBCASE("reconcile") { msg = MakeReconcile(); }
  SUBCASE("want") { msg = MakeWant(); }
  SUBCASE("empty push") { msg = PushMessage{}; }
  const Bytes frame = EncodeMessage(msg);
  for (size_t len = 0; len < frame.size(); ++len) {
    CAPTURE(len);
    Result<Message> m = DecodeMessage(ByteSpan(frame).first(len));
    REQUIRE_FALSE(m.ok());
    CHECK(m.status().code() == Status::Code::kCorruption);
  }
}

TEST_CASE("a message frame with trailing bytes is rejected") {
  Message msg;
  SUBCASE("push") { msg = MakePush(); }
  SUBCASE("reconcile") { msg = MakeReconcile(); }
  SUBCASE("want") { msg = MakeWant(); }
  Bytes frame = EncodeMessage(msg);
  frame.push_back(0);
  Result<Message> m = DecodeMessage(frame);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == Status::Code::kCorruption);
  CHECK(Contains(m.status(), "trailing"));
}

TEST_CASE("a frame shorter than its version and type bytes is rejected") {
  const Bytes one{kProtocolVersion};
  Result<Message> empty = DecodeMessage({});
  Result<Message> short_frame = DecodeMessage(one);
  CHECK(empty.status().code() == Status::Code::kCorruption);
  CHECK(short_frame.status().code() == Status::Code::kCorruption);
  CHECK(Contains(short_frame.status(), "shorter than its header"));
}

TEST_CASE("a frame larger than kMaxFrameBytes is rejected before its body is decoded") {
  // A valid reconcile header followed by far more body than the frame limit.
  Bytes frame = FrameHeader(MessageType::kReconcile);
  frame.resize(kMaxFrameBytes + 1, 0);
  Result<Message> m = DecodeMessage(frame);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == Status::Code::kResourceExhausted);
  CHECK(Contains(m.status(), "larger than the limit"));
}

TEST_CASE("a push frame of exactly kMaxFrameBytes is accepted") {
  // 2 header + 2 count + 16 x (4 length + body) == kMaxFrameBytes.
  constexpr size_t kRecords = 16;
  const size_t bodies = kMaxFrameBytes - 2 - 2 - kRecords * 4;
  PushMessage p;
  p.records.v.resize(kRecords);
  for (size_t i = 0; i < kRecords; ++i) p.records.v[i].v = Bytes(bodies / kRecords, static_cast<uint8_t>(i));
  p.records.v.back().v.resize(bodies / kRecords + bodies % kRecords);
  REQUIRE(p.records.v.back().v.size() <= kMaxRecordBytes);
  Bytes frame = EncodeMessage(p);
  REQUIRE(frame.size() == kMaxFrameBytes);
  Result<Message> m = DecodeMessage(frame);
  CHECK_MESSAGE(m.ok(), m.status().ToString());
}

TEST_CASE("a frame with an unsupported protocol version is rejected") {
  Bytes frame = EncodeMessage(MakeWant());
  frame[0] = kProtocolVersion + 1;
  Result<Message> m = DecodeMessage(frame);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == Status::Code::kCorruption);
  CHECK(Contains(m.status(), "unsupported protocol version " + std::to_string(kProtocolVersion + 1)));
  frame[0] = 1;  // the first version: another reconcile format
  CHECK(Contains(DecodeMessage(frame).status(), "unsupported protocol version 1"));
  frame[0] = 0;
  CHECK(Contains(DecodeMessage(frame).status(), "unsupported protocol version 0"));
}

TEST_CASE("a frame with an unknown message type is rejected") {
  Bytes frame = EncodeMessage(MakeWant());
  uint8_t type = 0;
  SUBCASE("zero") { type = 0; }
  SUBCASE("one past the last type") { type = 4; }
  SUBCASE("0xff") { type = 0xff; }
  frame[1] = type;
  Result<Message> m = DecodeMessage(frame);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == Status::Code::kCorruption);
  CHECK(Contains(m.status(), "unknown message type " + std::to_string(type)));
}

TEST_CASE("a message's list count above its limit is rejected even when the bytes are present") {
  Bytes frame;
  SUBCASE("want with kMaxIdsPerWant + 1 ids") {
    frame = FrameHeader(MessageType::kWant);
    PutU16(frame, static_cast<uint16_t>(kMaxIdsPerWant + 1));
    frame.insert(frame.end(), (kMaxIdsPerWant + 1) * kHashBytes, 0);
  }
  SUBCASE("push with kMaxRecordsPerPush + 1 records") {
    frame = FrameHeader(MessageType::kPush);
    PutU16(frame, static_cast<uint16_t>(kMaxRecordsPerPush + 1));
    for (size_t i = 0; i <= kMaxRecordsPerPush; ++i) {
      PutU32(frame, 1);
      PutU8(frame, 1);
    }
  }
  Result<Message> m = DecodeMessage(frame);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == Status::Code::kCorruption);
  CHECK(Contains(m.status(), "exceeds limit"));
}

TEST_CASE("a message field longer than its limit is rejected even when the bytes are present") {
  Bytes frame;
  SUBCASE("reconcile body of kMaxReconcileBytes + 1") {
    frame = FrameHeader(MessageType::kReconcile);
    PutU64(frame, 1);
    PutU8(frame, 1);
    PutU32(frame, static_cast<uint32_t>(kMaxReconcileBytes + 1));
    frame.resize(frame.size() + kMaxReconcileBytes + 1, 0);
  }
  SUBCASE("push record of kMaxRecordBytes + 1") {
    frame = FrameHeader(MessageType::kPush);
    PutU16(frame, 1);
    PutU32(frame, static_cast<uint32_t>(kMaxRecordBytes + 1));
    frame.resize(frame.size() + kMaxRecordBytes + 1, 0);
  }
  Result<Message> m = DecodeMessage(frame);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == Status::Code::kCorruption);
  CHECK(Contains(m.status(), "exceeds limit"));
}

TEST_CASE("a message length prefix claiming more than the frame holds is rejected") {
  Bytes frame;
  SUBCASE("reconcile body claiming 0xFFFFFFFF bytes") {
    frame = FrameHeader(MessageType::kReconcile);
    PutU64(frame, 1);
    PutU8(frame, 0);
    PutU32(frame, 0xFFFFFFFFu);
  }
  SUBCASE("reconcile body claiming its maximum with 10 bytes present") {
    frame = FrameHeader(MessageType::kReconcile);
    PutU64(frame, 1);
    PutU8(frame, 0);
    PutU32(frame, static_cast<uint32_t>(kMaxReconcileBytes));
    frame.resize(frame.size() + 10, 0);
  }
  SUBCASE("want claiming kMaxIdsPerWant ids with one present") {
    frame = FrameHeader(MessageType::kWant);
    PutU16(frame, static_cast<uint16_t>(kMaxIdsPerWant));
    frame.resize(frame.size() + kHashBytes, 0);
  }
  SUBCASE("push claiming kMaxRecordsPerPush records with none present") {
    frame = FrameHeader(MessageType::kPush);
    PutU16(frame, static_cast<uint16_t>(kMaxRecordsPerPush));
  }
  Result<Message> m = DecodeMessage(frame);
  REQUIRE_FALSE(m.ok());
  CHECK(m.status().code() == Status::Code::kCorruption);
}

}  // namespace kring
