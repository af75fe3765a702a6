// libFuzzer target: DecodeControlRecord and DecodeAccessRecord on arbitrary bytes, verified with a fixed author key; accepted records re-encode byte for byte.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "crypto/primitives.h"
#include "protocol/access_record.h"
#include "protocol/messages.h"
#include "protocol/records.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "records_fuzz: %s\n", why);
  std::abort();
}

// The author of every seed record: the only key that ever signs here.
const kring::NodeIdentity& Author() {
  static const kring::NodeIdentity id = kring::fuzz::FixedIdentity("gemeente-a", 1);
  return id;
}

kring::Hash SeedHash(const char* s) {
  return kring::HashParts("seed", {kring::ByteSpan(reinterpret_cast<const uint8_t*>(s), std::char_traits<char>::length(s))});
}

// Encoded, signed records of every control type and an access record, all by Author().
std::vector<kring::Bytes> SampleRecords() {
  using namespace kring;
  const NodeIdentity& a = Author();
  std::array<uint8_t, 16> nonce;
  nonce.fill(7);
  const CaseId case_id = CaseIdFor(a.pub.org, nonce);
  auto header = [&](std::vector<RecordId> parents) {
    ControlHeader h;
    h.case_id = case_id;
    h.author.v = a.pub.org;
    h.hlc = MakeHlc(1'700'000'000'000ull, 1);
    h.parents.v = std::move(parents);
    return h;
  };

  std::vector<ControlBody> bodies;
  CaseGenesis g;
  g.h = header({});
  g.nonce = nonce;
  bodies.push_back(g);

  for (int i = 0; i < 2; ++i) {
    ConsentGrant c;
    c.h = header({SeedHash("genesis")});
    c.grantee.v = "zorg-b";
    if (i == 0) {
      c.domains.v = {{"housing"}, {"mental-health"}, {"work-education"}};
      c.valid_until_ms = 1'800'000'000'000;
    } else {
      c.domains.v = {{"*"}};
    }
    c.purpose.v = "ondersteuning";
    c.basis.v = "Wmo 2015";
    c.valid_from_ms = 1'700'000'000'000;
    c.given_by.v = "burger";
    c.evidence_reference.v = "formulier-1";
    bodies.push_back(c);
  }

  ConsentWithdrawal w;
  w.h = header({SeedHash("genesis"), SeedHash("consent")});
  w.consent = SeedHash("consent");
  bodies.push_back(w);

  RegieChange r;
  r.h = header({SeedHash("consent")});
  r.regie.v = "zorg-b";
  r.person.v = "Jan de Vries";
  bodies.push_back(r);

  KeyGrant k;
  k.h = header({SeedHash("consent")});
  k.fragment = SeedHash("fragment");
  k.grantee.v = "zorg-b";
  k.sealed_key.fill(0x5a);  // opaque to the decoder and to verification
  bodies.push_back(k);

  // Issue 16: the end of a case.
  CaseClose close;
  close.h = header({SeedHash("consent")});
  close.reason.v = "goals-reached";
  close.rule.v = "Wmo 2015";
  close.retention.v = "P15Y";
  bodies.push_back(close);
  CaseReopen reopen;
  reopen.h = header({SeedHash("close")});
  reopen.reason.v = "nieuwe hulpvraag";
  bodies.push_back(reopen);
  ErasureRequest erasure;
  erasure.h = header({SeedHash("close")});
  erasure.reference.v = "brief van de burger";
  bodies.push_back(erasure);
  ErasureAnswer answer;
  answer.h = header({SeedHash("erasure")});
  answer.request = SeedHash("erasure");
  answer.erased = 3;
  answer.kept = 1;
  answer.rule.v = "Jeugdwet";
  answer.why.v = "kept by a legal duty to keep";
  bodies.push_back(answer);

  std::vector<Bytes> out;
  for (ControlBody& b : bodies) {
    Result<ControlRecord> rec = SignControl(std::move(b), a);
    if (!rec.ok()) Fail("a seed control record does not sign");
    out.push_back(EncodeControlRecord(*rec));
  }

  AccessRecordBody ab;
  ab.case_id = case_id;
  ab.author.v = a.pub.org;
  ab.hlc = MakeHlc(1'700'000'000'000ull, 2);
  ab.event_id = nonce;
  ab.time_ms = 1'700'000'000'123;
  ab.action.v = "read";
  ab.outcome.v = "success";
  ab.actor_id.v = "medewerker-1";
  ab.actor_name.v = "Anne";
  ab.actor_role.v = "casemanager";
  ab.client.v = "portaal";
  ab.items.v = {{"item-1"}, {"item-2"}};
  ab.consent.v = "consent-1";
  Result<AccessRecord> access = SignAccessRecord(ab, a);
  if (!access.ok()) Fail("the seed access record does not sign");
  out.push_back(EncodeAccessRecord(*access));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kring::fuzz::WriteSeedsIfEmpty(*argc, *argv, SampleRecords());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kring;
  const ByteSpan in(data, size);
  Result<ControlRecord> control = DecodeControlRecord(in);
  Result<AccessRecord> access = DecodeAccessRecord(in);
  if (control.ok() && access.ok()) Fail("one input decodes as both a control and an access record");

  if (control.ok()) {
    const Bytes enc = EncodeControlRecord(*control);
    if (enc.size() != size || !std::equal(enc.begin(), enc.end(), data)) Fail("control: re-encoding differs from the input");
    Result<ControlRecord> again = DecodeControlRecord(enc);
    if (!again.ok() || EncodeControlRecord(*again) != enc) Fail("control: re-encoding does not decode");
    if (again->Id() != control->Id()) Fail("control: id changed across a round trip");
    if (enc[0] != static_cast<uint8_t>(control->type())) Fail("control: type byte and decoded type differ");

    Status verified = VerifyControl(*control, Author().pub.sign_pk);
    if (!verified.ok()) {
      if (verified.message().empty()) Fail("control: rejection without a reason");
      return 0;
    }
    // Only Author() signs, and Ed25519 signing is deterministic: a record that
    // verifies is one SignControl accepts and signs to the same bytes.
    Result<ControlRecord> resigned = SignControl(control->body, Author());
    if (!resigned.ok()) Fail("control: verifies but SignControl refuses its body");
    if (resigned->signature != control->signature) Fail("control: verifies with a signature SignControl did not make");
  }

  if (access.ok()) {
    const Bytes enc = EncodeAccessRecord(*access);
    if (enc.size() != size || !std::equal(enc.begin(), enc.end(), data)) Fail("access: re-encoding differs from the input");
    Result<AccessRecord> again = DecodeAccessRecord(enc);
    if (!again.ok() || EncodeAccessRecord(*again) != enc) Fail("access: re-encoding does not decode");
    if (again->Id() != access->Id()) Fail("access: id changed across a round trip");

    Status verified = VerifyAccessRecord(*access, Author().pub.sign_pk);
    if (!verified.ok()) {
      if (verified.message().empty()) Fail("access: rejection without a reason");
      return 0;
    }
    Result<AccessRecord> resigned = SignAccessRecord(access->body, Author());
    if (!resigned.ok()) Fail("access: verifies but SignAccessRecord refuses its body");
    if (resigned->signature != access->signature) Fail("access: verifies with a signature SignAccessRecord did not make");
  }
  return 0;
}
