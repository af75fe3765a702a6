// libFuzzer target: roster versions and key rotations (decoders, JSON form, chain rule) on arbitrary bytes; what decodes re-encodes byte for byte.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "consent/network.h"
#include "protocol/roster.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "roster_fuzz: %s\n", why);
  std::abort();
}

const std::vector<kring::NodeIdentity>& Members() {
  static const std::vector<kring::NodeIdentity> ids = [] {
    std::vector<kring::NodeIdentity> v;
    v.push_back(kring::fuzz::FixedIdentity("gemeente", 1));
    v.push_back(kring::fuzz::FixedIdentity("wijkteam", 2));
    v.push_back(kring::fuzz::FixedIdentity("zorg", 3));
    return v;
  }();
  return ids;
}

kring::Roster Version1() {
  using namespace kring;
  Roster r;
  r.body.network.v = "Kenis fuzz";
  r.body.issued_ms = 1'700'000'000'000;
  r.body.threshold = 2;
  for (const NodeIdentity& id : Members()) {
    RosterMember m;
    m.org.v = id.pub.org;
    m.name.v = id.pub.org;
    m.sign_pk = id.pub.sign_pk;
    m.box_pk = id.pub.box_pk;
    m.transport_pk = id.pub.transport_pk;
    m.endpoint.v = "tcp://127.0.0.1:7400";
    r.body.members.v.push_back(m);
    r.body.stewards.v.push_back({id.pub.org});
  }
  for (const NodeIdentity& id : Members())
    if (!SignRoster(&r, id).ok()) Fail("seed roster does not sign");
  return r;
}

const kring::Roster& Current() {
  static const kring::Roster r = Version1();
  return r;
}

std::vector<kring::Bytes> Seeds() {
  using namespace kring;
  std::vector<Bytes> out = {EncodeRoster(Current())};
  Roster next = Current();
  next.body.version = 2;
  next.body.previous = Current().Id();
  next.body.members.v.pop_back();
  next.body.stewards.v.pop_back();
  next.signatures.v.clear();
  if (!SignRoster(&next, Members()[0]).ok() || !SignRoster(&next, Members()[1]).ok()) Fail("seed v2 does not sign");
  out.push_back(EncodeRoster(next));
  auto fresh = fuzz::FixedIdentity("gemeente", 9);
  auto rot = SignKeyRotation(Members()[0], fresh, MakeHlc(1'700'000'000'000ull, 0), 1'700'000'100'000);
  if (!rot.ok()) Fail("seed rotation does not sign");
  out.push_back(EncodeKeyRotation(*rot));
  std::string json = RosterToJson(Current());
  out.emplace_back(json.begin(), json.end());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kring::fuzz::WriteSeedsIfEmpty(*argc, *argv, Seeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kring;
  const ByteSpan in(data, size);
  if (Result<Roster> r = DecodeRoster(in); r.ok()) {
    const Bytes enc = EncodeRoster(*r);
    if (enc.size() != size || !std::equal(enc.begin(), enc.end(), data)) Fail("roster re-encoding differs from the input");
    if (!CheckRosterShape(r->body).ok()) Fail("decoded a roster of the wrong shape");
    // The chain rule never throws and names a reason when it refuses.
    auto keys = [&](const std::string& org) {
      std::vector<SignPublicKey> ks;
      if (const RosterMember* m = Current().body.Member(org)) ks.push_back(m->sign_pk);
      return ks;
    };
    if (auto why = JudgeRosterNext(Current(), *r, keys); why && why->detail.empty()) Fail("refusal without a reason");
    if (auto why = JudgeRosterAlone(*r, "gemeente"); why && why->detail.empty()) Fail("refusal without a reason");
    // Its JSON form reads back as the same version.
    auto back = RosterFromJson(RosterToJson(*r));
    if (!back.ok() || EncodeRoster(*back) != enc) Fail("JSON form does not read back as the same roster");
  } else if (r.status().message().empty()) {
    Fail("roster rejection without a reason");
  }
  if (Result<KeyRotation> k = DecodeKeyRotation(in); k.ok()) {
    const Bytes enc = EncodeKeyRotation(*k);
    if (enc.size() != size || !std::equal(enc.begin(), enc.end(), data)) Fail("rotation re-encoding differs from the input");
    bool duplicate = false;
    OrgKeys current;
    current.org = "gemeente";
    current.sign_pk = Members()[0].pub.sign_pk;
    current.box_pk = Members()[0].pub.box_pk;
    current.transport_pk = Members()[0].pub.transport_pk;
    if (auto why = JudgeKeyRotation(*k, current, &duplicate); why && why->detail.empty()) Fail("refusal without a reason");
  } else if (k.status().message().empty()) {
    Fail("rotation rejection without a reason");
  }
  // Bytes as a roster file: never throws; what parses has the right shape.
  if (auto j = RosterFromJson(std::string_view(reinterpret_cast<const char*>(data), size)); j.ok()) {
    if (!CheckRosterShape(j->body).ok()) Fail("JSON roster of the wrong shape");
  }
  return 0;
}
