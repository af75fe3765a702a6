// libFuzzer target: DecodeMessage on arbitrary bytes never crashes, and every frame it accepts re-encodes to exactly the same bytes.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstdio>

#include "protocol/messages.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "message_fuzz: %s\n", why);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  using namespace kring;
  NodeIdentity a = fuzz::FixedIdentity("gemeente-a", 1);
  NodeIdentity b = fuzz::FixedIdentity("zorg-b", 2);
  PushMessage push;
  for (Bytes& r : fuzz::SampleFragmentRecords(a, b.pub)) push.records.v.push_back({std::move(r)});
  ReconcileMessage rec;
  rec.session = 42;
  rec.initiator = 1;
  rec.body.v = {1, 2, 3, 4, 5, 6, 7, 8};
  WantMessage want;
  want.ids.v.resize(3);
  for (size_t i = 0; i < 3; ++i) want.ids.v[i].fill(static_cast<uint8_t>(i));
  fuzz::WriteSeedsIfEmpty(*argc, *argv,
                          {EncodeMessage(push), EncodeMessage(PushMessage{}), EncodeMessage(rec),
                           EncodeMessage(ReconcileMessage{}), EncodeMessage(want), EncodeMessage(WantMessage{})});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kring;
  const ByteSpan in(data, size);
  Result<Message> m = DecodeMessage(in);
  if (!m.ok()) {
    if (m.status().message().empty()) Fail("rejection without a reason");
    return 0;
  }
  // Round trip: the encoding is canonical, so what decodes re-encodes byte for byte.
  const Bytes enc = EncodeMessage(*m);
  if (enc.size() != size || !std::equal(enc.begin(), enc.end(), data)) Fail("re-encoding differs from the input");
  Result<Message> again = DecodeMessage(enc);
  if (!again.ok() || again->index() != m->index() || EncodeMessage(*again) != enc) Fail("re-encoding does not decode");

  // Records inside a push come from the same peer: decode them the way a receiver would.
  if (const auto* push = std::get_if<PushMessage>(&*m)) {
    for (const auto& r : push->records.v) {
      Result<Fragment> f = DecodeFragmentRecord(r.v);
      if (f.ok() && EncodeFragmentRecord(*f) != r.v) Fail("record re-encoding differs from the input");
    }
  }
  return 0;
}
