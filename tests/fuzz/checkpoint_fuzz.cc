// libFuzzer target: DecodeCheckpoint and VerifyCheckpoint on arbitrary bytes, with a fixed signer; accepted checkpoints re-encode byte for byte.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "crypto/primitives.h"
#include "protocol/checkpoint.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "checkpoint_fuzz: %s\n", why);
  std::abort();
}

// The only key that ever signs here.
const kring::NodeIdentity& Signer() {
  static const kring::NodeIdentity id = kring::fuzz::FixedIdentity("gemeente-a", 1);
  return id;
}

// Checkpoints of an empty log, a short one and a restored one, all by Signer().
std::vector<kring::Bytes> SampleCheckpoints() {
  using namespace kring;
  std::vector<Bytes> out;
  const uint64_t entries[] = {0, 17, 1'000'000};
  for (uint32_t i = 0; i < 3; ++i) {
    CheckpointBody b;
    b.org.v = Signer().pub.org;
    b.hlc = MakeHlc(1'700'000'000'000ull + i, static_cast<uint16_t>(i));
    b.time_ms = 1'700'000'000'000 + i;
    b.restores = i == 2 ? 1 : 0;
    b.entries = entries[i];
    if (b.entries > 0) b.head = HashParts("seed", {Bytes{static_cast<uint8_t>(i)}});
    Result<Checkpoint> cp = SignCheckpoint(b, Signer());
    if (!cp.ok()) Fail("a seed checkpoint does not sign");
    out.push_back(EncodeCheckpoint(*cp));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kring::fuzz::WriteSeedsIfEmpty(*argc, *argv, SampleCheckpoints());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kring;
  const ByteSpan in(data, size);
  Result<Checkpoint> cp = DecodeCheckpoint(in);
  if (!cp.ok()) {
    if (cp.status().message().empty()) Fail("rejection without a reason");
    return 0;
  }
  if (size < kCheckpointMinBytes || size > kCheckpointMaxBytes) Fail("decoded a checkpoint of impossible size");
  const Bytes enc = EncodeCheckpoint(*cp);
  if (enc.size() != size || !std::equal(enc.begin(), enc.end(), data)) Fail("re-encoding differs from the input");
  Result<Checkpoint> again = DecodeCheckpoint(enc);
  if (!again.ok() || EncodeCheckpoint(*again) != enc) Fail("re-encoding does not decode");
  if (again->Id() != cp->Id()) Fail("id changed across a round trip");

  Status verified = VerifyCheckpoint(*cp, Signer().pub.sign_pk);
  if (!verified.ok()) {
    if (verified.message().empty()) Fail("verification failed without a reason");
    return 0;
  }
  // Ed25519 signing is deterministic: a checkpoint that verifies is one
  // SignCheckpoint accepts and signs to the same bytes.
  Result<Checkpoint> resigned = SignCheckpoint(cp->body, Signer());
  if (!resigned.ok()) Fail("verifies but SignCheckpoint refuses its body");
  if (resigned->signature != cp->signature) Fail("verifies with a signature SignCheckpoint did not make");
  return 0;
}
