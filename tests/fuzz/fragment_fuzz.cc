// libFuzzer target: DecodeFragmentRecord and VerifyFragment on arbitrary bytes, with a fixed author key; accepted records re-encode byte for byte.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "protocol/fragment.h"
#include "protocol/messages.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "fragment_fuzz: %s\n", why);
  std::abort();
}

// The author of the seed fragments and the node that receives what the fuzzer makes of them.
const kring::NodeIdentity& Author() {
  static const kring::NodeIdentity id = kring::fuzz::FixedIdentity("gemeente-a", 1);
  return id;
}
const kring::NodeIdentity& Other() {
  static const kring::NodeIdentity id = kring::fuzz::FixedIdentity("zorg-b", 2);
  return id;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kring::fuzz::WriteSeedsIfEmpty(*argc, *argv, kring::fuzz::SampleFragmentRecords(Author(), Other().pub));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kring;
  const ByteSpan in(data, size);
  Result<Fragment> f = DecodeFragmentRecord(in);
  if (!f.ok()) return 0;

  const Bytes enc = EncodeFragmentRecord(*f);
  if (enc.size() != size || !std::equal(enc.begin(), enc.end(), data)) Fail("re-encoding differs from the input");
  Result<Fragment> again = DecodeFragmentRecord(enc);
  if (!again.ok() || EncodeFragmentRecord(*again) != enc) Fail("re-encoding does not decode");
  if (again->Id() != f->Id()) Fail("id changed across a round trip");

  Status verified = VerifyFragment(*f, Author().pub.sign_pk);
  if (!verified.ok()) {
    if (verified.message().empty()) Fail("rejection without a reason");
    return 0;
  }
  // Only Author() can sign, so a fragment that verifies is one it sealed:
  // every recipient we hold keys for must be able to open it.
  for (const NodeIdentity* me : {&Author(), &Other()}) {
    if (!f->IsRecipient(me->pub.org)) continue;
    if (!OpenFragment(*f, *me).ok()) Fail("a verified fragment does not open for its recipient");
  }
  return 0;
}
