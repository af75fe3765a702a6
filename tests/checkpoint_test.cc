// Unit tests of access-log checkpoint records (protocol/checkpoint.h): round trip, every truncated prefix, hostile encodings and the structural rules.
#include <doctest/doctest.h>

#include <string>

#include "crypto/primitives.h"
#include "protocol/checkpoint.h"

namespace kring {
namespace {

const NodeIdentity& Signer() {
  static const NodeIdentity id = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  return id;
}

CheckpointBody SampleBody(uint64_t entries = 42) {
  CheckpointBody b;
  b.org.v = Signer().pub.org;
  b.hlc = MakeHlc(1'700'000'000'000ull, 3);
  b.time_ms = 1'700'000'000'123;
  b.restores = 1;
  b.entries = entries;
  if (entries > 0) b.head = HashParts("test", {ByteSpan(reinterpret_cast<const uint8_t*>("head"), 4)});
  return b;
}

}  // namespace

TEST_CASE("a signed checkpoint round-trips byte for byte and verifies with its org's key") {
  auto cp = SignCheckpoint(SampleBody(), Signer());
  REQUIRE(cp.ok());
  Bytes enc = EncodeCheckpoint(*cp);
  CHECK(enc[0] == static_cast<uint8_t>(RecordType::kCheckpoint));
  CHECK(enc.size() == kCheckpointFixedBytes + Signer().pub.org.size());
  auto back = DecodeCheckpoint(enc);
  REQUIRE(back.ok());
  CHECK(EncodeCheckpoint(*back) == enc);
  CHECK(back->Id() == cp->Id());
  CHECK(back->body.entries == 42);
  CHECK(back->body.restores == 1);
  CHECK(VerifyCheckpoint(*back, Signer().pub.sign_pk).ok());
  const NodeIdentity other = NodeIdentity::Generate("gemeente-a", "Impostor");
  CHECK(VerifyCheckpoint(*back, other.pub.sign_pk).code() == Status::Code::kCorruption);
}

TEST_CASE("every truncated prefix of a checkpoint is refused with a reason") {
  auto cp = SignCheckpoint(SampleBody(), Signer());
  REQUIRE(cp.ok());
  const Bytes enc = EncodeCheckpoint(*cp);
  for (size_t n = 0; n < enc.size(); ++n) {
    CAPTURE(n);
    auto r = DecodeCheckpoint(ByteSpan(enc.data(), n));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kCorruption);
    CHECK_FALSE(r.status().message().empty());
  }
}

TEST_CASE("a checkpoint with bytes left over, a wrong type byte or an oversized org is refused") {
  auto cp = SignCheckpoint(SampleBody(), Signer());
  REQUIRE(cp.ok());
  Bytes enc = EncodeCheckpoint(*cp);
  SUBCASE("trailing byte") {
    enc.push_back(0);
    CHECK_FALSE(DecodeCheckpoint(enc).ok());
  }
  SUBCASE("another record type") {
    enc[0] = static_cast<uint8_t>(RecordType::kAccessRecord);
    CHECK(DecodeCheckpoint(enc).status().message() == "not a checkpoint");
  }
  SUBCASE("org length claims more than the bytes left") {
    enc[2] = 200;  // the org's u8 length prefix
    CHECK_FALSE(DecodeCheckpoint(enc).ok());
  }
  SUBCASE("longer than any checkpoint") {
    enc.resize(kCheckpointMaxBytes + 1, 0);
    CHECK(DecodeCheckpoint(enc).status().message() == "checkpoint too long");
  }
}

TEST_CASE("a checkpoint whose body was changed after signing does not verify") {
  auto cp = SignCheckpoint(SampleBody(), Signer());
  REQUIRE(cp.ok());
  Checkpoint c = *cp;
  SUBCASE("fewer entries") { c.body.entries = 41; }
  SUBCASE("another head") { c.body.head[0] ^= 1; }
  SUBCASE("restores hidden") { c.body.restores = 0; }
  CHECK_FALSE(VerifyCheckpoint(c, Signer().pub.sign_pk).ok());
}

TEST_CASE("the head is zeros exactly when the log is empty, and only the org signs its checkpoint") {
  CheckpointBody b = SampleBody(0);
  CHECK(SignCheckpoint(b, Signer()).ok());
  b.head[5] = 1;
  CHECK(SignCheckpoint(b, Signer()).status().code() == Status::Code::kInvalidArgument);
  CheckpointBody c = SampleBody(5);
  c.head.fill(0);
  CHECK(SignCheckpoint(c, Signer()).status().code() == Status::Code::kInvalidArgument);
  CheckpointBody d = SampleBody();
  d.org.v = "wijkteam-b";
  CHECK(SignCheckpoint(d, Signer()).status().message() == "checkpoint org is not the signer");
}

}  // namespace kring
