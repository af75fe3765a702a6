// libFuzzer target: the citizen's records (CitizenKey, CitizenKeyRevocation, citizen-signed grants and withdrawals) decoded from arbitrary bytes, round-tripped, and offered to a case with one enrolled citizen key.
//
// Properties: a decoded record re-encodes to the input; its statement is a
// pure function of it; and a record admitted with a citizen signature was
// signed by the one enrolled device over exactly that statement (nobody
// else holds its key, so an admitted forgery is a bug in the rule).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "consent/case_state.h"
#include "crypto/primitives.h"
#include "protocol/records.h"
#include "tests/fuzz/fuzz_seeds.h"

namespace {

using namespace kring;

[[noreturn]] void Fail(const char* why) {
  std::fprintf(stderr, "citizen_fuzz: %s\n", why);
  std::abort();
}

ByteSpan AsBytes(const std::string& s) { return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

// The regie organisation, the one citizen device, and a case where that device is enrolled.
struct World {
  NodeIdentity regie = fuzz::FixedIdentity("gemeente-a", 1);
  SignPublicKey device_pk{};
  SignSecretKey device_sk;
  CaseState state{CaseId{}};
  RecordId key{};
  std::vector<Bytes> seeds;

  World() {
    std::array<uint8_t, crypto_sign_SEEDBYTES> seed;
    seed.fill(9);
    crypto_sign_seed_keypair(device_pk.data(), device_sk.data(), seed.data());
    CaseGenesis g;
    g.nonce.fill(7);
    g.h.case_id = CaseIdFor(regie.pub.org, g.nonce);
    g.h.author.v = regie.pub.org;
    g.h.hlc = MakeHlc(1'700'000'000'000ull, 1);
    state = CaseState(g.h.case_id);
    Admit(g);
    CitizenKey k;
    Header(k.h, 2);
    k.key = device_pk;
    k.given_by.v = "burger";
    k.invitation = InvitationHash("K7M2Q9RTW4XZ8HJN");
    k.possession = SignPure(AsBytes(EnrolmentStatement(k.h.case_id, k.invitation, k.key)), device_sk);
    key = Admit(k);

    ConsentGrant c;
    Header(c.h, 3);
    c.grantee.v = "zorg-b";
    c.domains.v = {{"housing"}};
    c.purpose.v = "woning";
    c.basis.v = "toestemming";
    c.valid_from_ms = 1'700'000'000'000;
    c.given_by.v = "burger";
    c.evidence_kind = kEvidenceCitizenSigned;
    RecordId grant = Admit(CitizenSigned(c));
    ConsentWithdrawal w;
    Header(w.h, 4);
    w.h.format = kControlFormatCitizenSigned;
    w.evidence_kind = kEvidenceCitizenSigned;
    w.consent = grant;
    Seed(CitizenSigned(w));
    CitizenKeyRevocation v;
    Header(v.h, 5);
    v.key = key;
    v.evidence_kind = kEvidenceCitizenSigned;
    Seed(CitizenSigned(v));
  }
  void Header(ControlHeader& h, uint16_t tick) {
    h.case_id = state.case_id();
    h.author.v = regie.pub.org;
    h.hlc = MakeHlc(1'700'000'000'000ull + tick, tick);
    if (state.has_genesis()) h.parents.v = state.Heads();
  }
  template <class Body>
  Body CitizenSigned(Body b) {
    b.citizen.key = key;
    b.citizen.nonce.fill(3);
    b.citizen.heads = HeadsDigest(b.h.parents.v);
    auto statement = CitizenStatement(ControlRecord{b, {}});
    if (!statement.ok()) Fail("a seed has no statement");
    b.citizen.signature = SignPure(AsBytes(*statement), device_sk);
    return b;
  }
  ControlRecord Seed(ControlBody body) {
    auto r = SignControl(std::move(body), regie);
    if (!r.ok()) Fail("a seed does not sign");
    seeds.push_back(EncodeControlRecord(*r));
    return *r;
  }
  RecordId Admit(ControlBody body) {
    ControlRecord r = Seed(std::move(body));
    if (!state.Admit(r).ok()) Fail("a seed is not admitted");
    return r.Id();
  }
};

World& W() {
  static World* w = new World();
  return *w;
}

const CitizenSignature* SignatureOf(const ControlRecord& r) {
  if (const auto* c = std::get_if<ConsentGrant>(&r.body); c && c->evidence_kind == kEvidenceCitizenSigned) return &c->citizen;
  if (const auto* w = std::get_if<ConsentWithdrawal>(&r.body); w && w->citizen_signed()) return &w->citizen;
  if (const auto* v = std::get_if<CitizenKeyRevocation>(&r.body); v && v->evidence_kind == kEvidenceCitizenSigned)
    return &v->citizen;
  return nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  kring::fuzz::WriteSeedsIfEmpty(*argc, *argv, W().seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteSpan in(data, size);
  Result<ControlRecord> r = DecodeControlRecord(in);
  if (!r.ok()) return 0;
  const Bytes enc = EncodeControlRecord(*r);
  if (enc.size() != size || !std::equal(enc.begin(), enc.end(), data)) Fail("re-encoding differs from the input");

  const CitizenSignature* sig = SignatureOf(*r);
  auto statement = CitizenStatement(*r);
  if ((sig != nullptr) != statement.ok()) Fail("a record has a statement iff it carries a citizen signature");
  if (statement.ok() && *CitizenStatement(*r) != *statement) Fail("the statement is not a function of the record");

  if (!VerifyControl(*r, W().regie.pub.sign_pk).ok()) return 0;
  Admission a = W().state.Check(*r);
  if (a.kind == Admission::Kind::kAdmitted && sig != nullptr) {
    if (sig->key != W().key) Fail("admitted a citizen signature by a key that is not enrolled");
    if (!VerifyPure(AsBytes(*statement), sig->signature, W().device_pk)) Fail("admitted a citizen signature that does not verify");
    if (sig->heads != HeadsDigest(r->header().parents.v)) Fail("admitted a statement signed against other parents");
  }
  if (a.kind == Admission::Kind::kAdmitted && std::holds_alternative<ConsentGrant>(r->body) && sig == nullptr)
    Fail("admitted an unsigned grant in a case with an enrolled citizen key");
  return 0;
}
