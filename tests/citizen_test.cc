// Unit tests of the citizen's records and statements (protocol/records.h) and of their admission rule (consent/case_state.h), issue 12.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "consent/admission.h"
#include "consent/case_state.h"
#include "crypto/primitives.h"
#include "protocol/records.h"

namespace kring {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;
constexpr int64_t kMin = 60 * 1000;

ByteSpan AsBytes(std::string_view s) { return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

// A citizen's device: an Ed25519 key pair, as Web Crypto makes it in the browser.
struct Device {
  SignPublicKey pk{};
  SignSecretKey sk;
  Device() { crypto_sign_keypair(pk.data(), sk.data()); }
  Signature SignText(std::string_view text) const { return SignPure(AsBytes(text), sk); }
};

// A case opened by the municipality, with a care provider and a mental-health
// service as partners; records are admitted into `state` as a node would.
struct Case {
  NodeIdentity gemeente = NodeIdentity::Generate("gemeente", "Gemeente");
  NodeIdentity zorg = NodeIdentity::Generate("zorg", "Zorg");
  NodeIdentity ggz = NodeIdentity::Generate("ggz", "GGZ");
  CaseState state{CaseId{}};
  std::vector<ControlRecord> admitted;  // in admission order
  uint64_t tick = 0;
  int64_t now = kT0;

  explicit Case(uint8_t nonce = 3) {
    CaseGenesis g;
    g.nonce.fill(nonce);
    g.h.case_id = CaseIdFor("gemeente", g.nonce);
    state = CaseState(g.h.case_id);
    Admit(Sign(g, gemeente));
  }
  template <class Body>
  ControlRecord Sign(Body b, const NodeIdentity& by) {
    b.h.case_id = state.case_id();
    b.h.author.v = by.pub.org;
    now += kMin;
    b.h.hlc = MakeHlc(static_cast<uint64_t>(now), static_cast<uint16_t>(++tick));
    if constexpr (!std::is_same_v<Body, CaseGenesis>) b.h.parents.v = state.Heads();
    auto r = SignControl(std::move(b), by);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return *r;
  }
  RecordId Admit(const ControlRecord& r) {
    Admission a = state.Admit(r);
    REQUIRE_MESSAGE(a.ok(), a.detail);
    admitted.push_back(r);
    return r.Id();
  }
  Admission Offer(const ControlRecord& r) { return JudgeDecision(state, r, Receipt{"zorg", "gemeente", now}); }

  // The regie organisation enrols `d` with the invitation code `code`.
  ControlRecord EnrolRecord(const Device& d, std::string_view code, const NodeIdentity* by = nullptr) {
    CitizenKey k;
    k.key = d.pk;
    k.given_by.v = "burger";
    k.invitation = InvitationHash(code);
    k.possession = d.SignText(EnrolmentStatement(state.case_id(), k.invitation, d.pk));
    return Sign(k, by ? *by : gemeente);
  }
  RecordId Enrol(const Device& d, std::string_view code) { return Admit(EnrolRecord(d, code)); }

  static ConsentGrant GrantBody(const std::string& grantee, const std::string& domain) {
    ConsentGrant c;
    c.grantee.v = grantee;
    c.domains.v = {{domain}};
    c.purpose.v = "hulp bij schulden";
    c.basis.v = "Wmo 2015 art. 5.1.1";
    c.given_by.v = "burger";
    c.evidence_reference.v = "formulier-1";
    c.valid_from_ms = kT0;
    return c;
  }
  // A consent grant signed by the citizen's device `d` (enrolled as `key`),
  // against the case's heads now, as the portal has the browser sign it.
  ControlRecord CitizenGrant(const Device& d, const RecordId& key, const std::string& grantee, const std::string& domain) {
    ConsentGrant c = GrantBody(grantee, domain);
    c.evidence_kind = kEvidenceCitizenSigned;
    c.evidence_reference.v = "";
    return SignAsCitizen(std::move(c), d, key, gemeente);
  }
  ControlRecord CitizenWithdrawal(const Device& d, const RecordId& key, const RecordId& consent, const NodeIdentity& relay) {
    ConsentWithdrawal w;
    w.h.format = kControlFormatCitizenSigned;
    w.evidence_kind = kEvidenceCitizenSigned;
    w.consent = consent;
    return SignAsCitizen(std::move(w), d, key, relay);
  }
  // Fills in the citizen's signature over the record's statement, then the author signs.
  template <class Body>
  ControlRecord SignAsCitizen(Body b, const Device& d, const RecordId& key, const NodeIdentity& by) {
    b.h.case_id = state.case_id();
    b.h.author.v = by.pub.org;
    now += kMin;
    b.h.hlc = MakeHlc(static_cast<uint64_t>(now), static_cast<uint16_t>(++tick));
    b.h.parents.v = state.Heads();
    b.citizen.key = key;
    RandomBytes(b.citizen.nonce);
    b.citizen.heads = HeadsDigest(b.h.parents.v);
    ControlRecord draft{b, {}};
    auto statement = CitizenStatement(draft);
    REQUIRE(statement.ok());
    b.citizen.signature = d.SignText(*statement);
    auto r = SignControl(std::move(b), by);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    return *r;
  }
};

void CheckRefused(const Admission& a, Reject why) {
  CHECK(a.kind == Admission::Kind::kRefused);
  CHECK_MESSAGE(a.reason == why, RejectName(a.reason), ": ", a.detail);
}

// ---- records and statements ----

TEST_CASE("a citizen-signed consent grant and withdrawal survive their encoding, and every truncated prefix is rejected") {
  Case c;
  Device phone;
  RecordId key = c.Enrol(phone, "K7M2-Q9RT-W4XZ-8HJN");
  ControlRecord grant = c.CitizenGrant(phone, key, "zorg", "housing");
  c.Admit(grant);
  ControlRecord withdrawal = c.CitizenWithdrawal(phone, key, grant.Id(), c.zorg);
  for (const ControlRecord* r : {&grant, &withdrawal}) {
    Bytes bytes = EncodeControlRecord(*r);
    auto decoded = DecodeControlRecord(bytes);
    REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
    CHECK(decoded->Id() == r->Id());
    CHECK(EncodeControlRecord(*decoded) == bytes);
    CHECK(VerifyControl(*decoded, r->header().author.v == "zorg" ? c.zorg.pub.sign_pk : c.gemeente.pub.sign_pk).ok());
    for (size_t len = 0; len < bytes.size(); ++len) {
      CAPTURE(len);
      auto cut = DecodeControlRecord(ByteSpan(bytes).first(len));
      REQUIRE_FALSE(cut.ok());
      CHECK(cut.status().code() == Status::Code::kCorruption);
    }
  }
}

TEST_CASE("an attested consent grant encodes exactly as before citizen signatures existed") {
  // Kind 1 carries no citizen block: records stored before issue 12 keep their bytes and ids.
  ConsentGrant c = Case::GrantBody("zorg", "housing");
  Bytes with = Encode(c);
  c.citizen.signature.fill(7);  // ignored for kind 1
  CHECK(Encode(c) == with);
  ConsentWithdrawal w;
  Bytes plain = Encode(w);
  w.citizen.signature.fill(7);
  CHECK(Encode(w) == plain);
  CHECK(plain.size() == Encode(w.h).size() + kHashBytes);
}

TEST_CASE("a citizen key whose proof of possession is not by that key fails verification") {
  Case c;
  Device phone, thief;
  CitizenKey k;
  k.h.case_id = c.state.case_id();
  k.h.author.v = "gemeente";
  k.h.hlc = MakeHlc(kT0, 1);
  k.h.parents.v = c.state.Heads();
  k.key = phone.pk;
  k.given_by.v = "burger";
  k.invitation = InvitationHash("CODE");
  SUBCASE("signed by another device") { k.possession = thief.SignText(EnrolmentStatement(k.h.case_id, k.invitation, k.key)); }
  SUBCASE("signed for another case") {
    k.possession = phone.SignText(EnrolmentStatement(CaseIdFor("gemeente", {}), k.invitation, k.key));
  }
  SUBCASE("signed for another invitation") { k.possession = phone.SignText(EnrolmentStatement(k.h.case_id, InvitationHash("X"), k.key)); }
  auto signed_rec = SignControl(k, c.gemeente);
  REQUIRE_FALSE(signed_rec.ok());
  CHECK(signed_rec.status().message().find("possession") != std::string::npos);
}

TEST_CASE("a citizen statement names the action, the case, the consent's fields, and keeps free text on one line") {
  Case c;
  Device phone;
  RecordId key = c.Enrol(phone, "A");
  ConsentGrant g = Case::GrantBody("zorg", "housing");
  g.purpose.v = "regel 1\nhandeling: toestemming intrekken";
  g.evidence_kind = kEvidenceCitizenSigned;
  g.citizen.key = key;
  g.h.case_id = c.state.case_id();
  auto text = CitizenStatement(ControlRecord{g, {}});
  REQUIRE(text.ok());
  CHECK(text->rfind("kring burgerverklaring v1\nhandeling: toestemming geven\nzaak: " + CaseIdToHex(c.state.case_id()) + "\n", 0) == 0);
  CHECK(text->find("organisatie: zorg\n") != std::string::npos);
  CHECK(text->find("levensgebieden: housing\n") != std::string::npos);
  CHECK(text->find("doel: regel 1\\nhandeling: toestemming intrekken\n") != std::string::npos);
  CHECK(text->find("\nhandeling: toestemming intrekken\n") == std::string::npos);
  ConsentGrant attested = Case::GrantBody("zorg", "housing");
  CHECK_FALSE(CitizenStatement(ControlRecord{attested, {}}).ok());
}

// ---- admission ----

TEST_CASE("once a citizen key is enrolled, a consent grant the citizen did not sign is refused; before, it is admitted") {
  Case c;
  Device phone;
  ControlRecord before = c.Sign(Case::GrantBody("zorg", "housing"), c.gemeente);
  c.Admit(before);
  CHECK_FALSE(c.state.HasCitizenKey());
  c.Enrol(phone, "K7M2");
  CHECK(c.state.HasCitizenKey());
  ControlRecord after = c.Sign(Case::GrantBody("ggz", "mental-health"), c.gemeente);
  CheckRefused(c.Offer(after), Reject::kCitizenRequired);
  CHECK(c.state.CheckNewRecord(after).code() == Status::Code::kPermissionDenied);
  SUBCASE("narrowing stays open: the regie organisation and the grantee may still withdraw without the citizen") {
    ConsentWithdrawal w;
    w.consent = before.Id();
    CHECK(c.Offer(c.Sign(w, c.zorg)).ok());
    CHECK(c.Offer(c.Sign(w, c.gemeente)).ok());
  }
}

TEST_CASE("a consent grant the citizen signed with an enrolled key is admitted and in force") {
  Case c;
  Device phone;
  RecordId key = c.Enrol(phone, "K7M2");
  ControlRecord g = c.CitizenGrant(phone, key, "zorg", "housing");
  c.Admit(g);
  auto consents = c.state.Consents(c.now);
  REQUIRE(consents.size() == 1);
  CHECK(consents[0].status == ConsentStatus::kActive);
  CHECK(consents[0].grant->evidence_kind == kEvidenceCitizenSigned);
}

TEST_CASE("a citizen-signed grant is refused when signed by the wrong key, for another case, tampered with, or replayed") {
  Case c;
  Device phone, stranger;
  RecordId key = c.Enrol(phone, "K7M2");
  SUBCASE("signed by a key that is not the enrolled one it names") {
    CheckRefused(c.Offer(c.CitizenGrant(stranger, key, "zorg", "housing")), Reject::kCitizenSignature);
  }
  SUBCASE("naming a key that is not enrolled in the case") {
    CheckRefused(c.Offer(c.CitizenGrant(phone, c.admitted[0].Id(), "zorg", "housing")), Reject::kCitizenSignature);  // the genesis
  }
  SUBCASE("a statement the citizen signed for another case") {
    Case other(9);
    RecordId other_key = other.Enrol(phone, "K7M2");
    ControlRecord there = other.CitizenGrant(phone, other_key, "zorg", "housing");
    // The regie organisation copies the signature into a record of this case.
    ConsentGrant copy = std::get<ConsentGrant>(there.body);
    copy.h.case_id = c.state.case_id();
    copy.h.parents.v = c.state.Heads();
    copy.citizen.key = key;
    copy.citizen.heads = HeadsDigest(copy.h.parents.v);
    auto forged = SignControl(copy, c.gemeente);
    REQUIRE(forged.ok());
    CheckRefused(c.Offer(*forged), Reject::kCitizenSignature);
  }
  SUBCASE("a field changed after the citizen signed") {
    ControlRecord g = c.CitizenGrant(phone, key, "zorg", "housing");
    ConsentGrant body = std::get<ConsentGrant>(g.body);
    body.domains.v = {{"*"}};
    auto changed = SignControl(body, c.gemeente);
    REQUIRE(changed.ok());
    CheckRefused(c.Offer(*changed), Reject::kCitizenSignature);
  }
  SUBCASE("an old grant sent again after the citizen withdrew it") {
    ControlRecord g = c.CitizenGrant(phone, key, "zorg", "housing");
    c.Admit(g);
    c.Admit(c.CitizenWithdrawal(phone, key, g.Id(), c.gemeente));
    // The same statement and signature in a new record after the withdrawal.
    ConsentGrant again = std::get<ConsentGrant>(g.body);
    again.h.parents.v = c.state.Heads();
    again.h.hlc = MakeHlc(static_cast<uint64_t>(c.now + kMin), 1);
    auto replay = SignControl(again, c.gemeente);
    REQUIRE(replay.ok());
    CheckRefused(c.Offer(*replay), Reject::kCitizenReplay);
    // Its view of the case kept as well: the regie organisation's own chain refuses it.
    again.citizen.heads = std::get<ConsentGrant>(g.body).citizen.heads;
    again.h.parents = std::get<ConsentGrant>(g.body).h.parents;
    auto stale = SignControl(again, c.gemeente);
    REQUIRE(stale.ok());
    CHECK(c.Offer(*stale).kind == Admission::Kind::kRefused);
    CHECK(c.state.Consents(c.now)[0].status == ConsentStatus::kWithdrawn);
  }
}

TEST_CASE("a citizen-signed withdrawal may be relayed by any organisation involved in the case, not by an outsider") {
  Case c;
  Device phone;
  RecordId key = c.Enrol(phone, "K7M2");
  ControlRecord housing = c.CitizenGrant(phone, key, "zorg", "housing");
  c.Admit(housing);
  ControlRecord mental = c.CitizenGrant(phone, key, "ggz", "mental-health");
  c.Admit(mental);
  SUBCASE("by another grantee (ggz relays the withdrawal of zorg's consent)") {
    ControlRecord w = c.CitizenWithdrawal(phone, key, housing.Id(), c.ggz);
    c.Admit(w);
    CHECK(c.state.Consents(c.now)[0].status == ConsentStatus::kWithdrawn);
    CHECK(c.state.Consents(c.now)[1].status == ConsentStatus::kActive);
  }
  SUBCASE("an outsider cannot relay it") {
    NodeIdentity outsider = NodeIdentity::Generate("buiten", "Buiten");
    CheckRefused(c.Offer(c.CitizenWithdrawal(phone, key, housing.Id(), outsider)), Reject::kForgedRecord);
  }
  SUBCASE("without the citizen's signature ggz may not withdraw zorg's consent") {
    ConsentWithdrawal w;
    w.consent = housing.Id();
    CheckRefused(c.Offer(c.Sign(w, c.ggz)), Reject::kForgedRecord);
  }
  SUBCASE("a signature by a stranger's key is refused") {
    Device stranger;
    CheckRefused(c.Offer(c.CitizenWithdrawal(stranger, key, housing.Id(), c.ggz)), Reject::kCitizenSignature);
  }
}

TEST_CASE("a second device enrols with a second invitation; an invitation enrols once") {
  Case c;
  Device phone, laptop, other;
  RecordId first = c.Enrol(phone, "CODE-ONE");
  RecordId second = c.Enrol(laptop, "CODE-TWO");
  CHECK(c.state.CitizenKeys().size() == 2);
  CHECK(c.state.InvitationUsed(InvitationHash("CODE-ONE")));
  CheckRefused(c.Offer(c.EnrolRecord(other, "CODE-ONE")), Reject::kInvitationUsed);
  CHECK(c.state.CheckNewRecord(c.EnrolRecord(other, "CODE-ONE")).code() == Status::Code::kConflict);
  CHECK(c.Offer(c.CitizenGrant(laptop, second, "zorg", "housing")).ok());
  CHECK(c.Offer(c.CitizenGrant(phone, first, "zorg", "housing")).ok());
  SUBCASE("only the regie organisation enrols") { CheckRefused(c.Offer(c.EnrolRecord(other, "CODE-3", &c.zorg)), Reject::kForgedRecord); }
}

TEST_CASE("a revoked citizen key signs nothing more; the citizen may revoke a lost phone from another device") {
  Case c;
  Device phone, laptop;
  RecordId lost = c.Enrol(phone, "CODE-ONE");
  RecordId kept = c.Enrol(laptop, "CODE-TWO");
  SUBCASE("revoked by the citizen, signed on the laptop") {
    CitizenKeyRevocation v;
    v.key = lost;
    v.evidence_kind = kEvidenceCitizenSigned;
    c.Admit(c.SignAsCitizen(v, laptop, kept, c.gemeente));
  }
  SUBCASE("revoked by the regie organisation") {
    CitizenKeyRevocation v;
    v.key = lost;
    v.evidence_reference.v = "nieuwe uitnodiging na verlies telefoon";
    c.Admit(c.Sign(v, c.gemeente));
  }
  CHECK(c.state.CitizenKeys()[0].revoked_by.has_value());
  CHECK(c.state.HasCitizenKey());
  CheckRefused(c.Offer(c.CitizenGrant(phone, lost, "zorg", "housing")), Reject::kCitizenSignature);
  CHECK(c.Offer(c.CitizenGrant(laptop, kept, "zorg", "housing")).ok());
}

TEST_CASE("a revocation the citizen did not sign, by an organisation without regie, is refused") {
  Case c;
  Device phone;
  RecordId key = c.Enrol(phone, "CODE-ONE");
  CitizenKeyRevocation v;
  v.key = key;
  v.evidence_reference.v = "telefoon kwijt";
  CheckRefused(c.Offer(c.Sign(v, c.zorg)), Reject::kForgedRecord);
}

TEST_CASE("with every citizen key revoked, attested consent is possible again") {
  Case c;
  Device phone;
  RecordId key = c.Enrol(phone, "CODE-ONE");
  CitizenKeyRevocation v;
  v.key = key;
  v.evidence_reference.v = "burger wil geen portaal meer";
  c.Admit(c.Sign(v, c.gemeente));
  CHECK_FALSE(c.state.HasCitizenKey());
  CHECK(c.Offer(c.Sign(Case::GrantBody("zorg", "housing"), c.gemeente)).ok());
}

TEST_CASE("the citizen's records give the same state in any order they are admitted") {
  Case c;
  Device phone, laptop;
  RecordId k1 = c.Enrol(phone, "A");
  RecordId k2 = c.Enrol(laptop, "B");
  CitizenKeyRevocation v;
  v.key = k1;
  v.evidence_kind = kEvidenceCitizenSigned;
  ControlRecord g = c.CitizenGrant(phone, k1, "zorg", "housing");
  c.Admit(g);
  c.Admit(c.SignAsCitizen(v, laptop, k2, c.gemeente));
  c.Admit(c.CitizenWithdrawal(laptop, k2, g.Id(), c.zorg));
  std::vector<ControlRecord> reversed(c.admitted.rbegin(), c.admitted.rend());
  CaseState rebuilt = CaseState::Build(c.state.case_id(), reversed);
  CHECK(rebuilt.Refused().empty());
  CHECK(rebuilt.Waiting().empty());
  CHECK(rebuilt.size() == c.state.size());
  CHECK(rebuilt.Heads() == c.state.Heads());
  CHECK(rebuilt.Consents(c.now)[0].status == ConsentStatus::kWithdrawn);
  CHECK(rebuilt.CitizenKeys()[0].revoked_by.has_value());
  CHECK_FALSE(rebuilt.CitizenKeys()[1].revoked_by.has_value());
}

}  // namespace
}  // namespace kring
