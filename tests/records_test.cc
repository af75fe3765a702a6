// Unit tests of signed control records (protocol/records.h) and access-log records (protocol/access_record.h): round trips, hostile encodings and the structural rules.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crypto/primitives.h"
#include "protocol/access_record.h"
#include "protocol/fragment.h"
#include "protocol/messages.h"
#include "protocol/records.h"

// Names the template test cases read with ("...<ConsentGrant>").
DOCTEST_TYPE_TO_STRING_AS("CaseGenesis", kring::CaseGenesis);
DOCTEST_TYPE_TO_STRING_AS("ConsentGrant", kring::ConsentGrant);
DOCTEST_TYPE_TO_STRING_AS("ConsentWithdrawal", kring::ConsentWithdrawal);
DOCTEST_TYPE_TO_STRING_AS("RegieChange", kring::RegieChange);
DOCTEST_TYPE_TO_STRING_AS("KeyGrant", kring::KeyGrant);
DOCTEST_TYPE_TO_STRING_AS("CitizenKey", kring::CitizenKey);
DOCTEST_TYPE_TO_STRING_AS("CitizenKeyRevocation", kring::CitizenKeyRevocation);
DOCTEST_TYPE_TO_STRING_AS("AccessRecord", kring::AccessRecordBody);
DOCTEST_TYPE_TO_STRING_AS("CaseClose", kring::CaseClose);
DOCTEST_TYPE_TO_STRING_AS("CaseReopen", kring::CaseReopen);
DOCTEST_TYPE_TO_STRING_AS("ErasureRequest", kring::ErasureRequest);
DOCTEST_TYPE_TO_STRING_AS("ErasureAnswer", kring::ErasureAnswer);

// Every record kind on the wire but fragments (tested in fragment_test.cc).
#define KRING_CONTROL_KINDS kring::CaseGenesis, kring::ConsentGrant, kring::ConsentWithdrawal, kring::RegieChange, \
    kring::KeyGrant, kring::CitizenKey, kring::CitizenKeyRevocation, kring::CaseClose, kring::CaseReopen, \
    kring::ErasureRequest, kring::ErasureAnswer
#define KRING_RECORD_KINDS KRING_CONTROL_KINDS, kring::AccessRecordBody

namespace kring {
namespace {

// The signing contexts: part of the wire contract, so a peer crafting a
// record that breaks the rules signs with them too.
constexpr std::string_view kControlContext = "kring/control/v1";
constexpr std::string_view kAccessContext = "kring/access/v1";

constexpr HlcTimestamp kHlc = MakeHlc(1'700'000'000'000ull, 7);

Hash H(std::string_view s) { return HashParts("test", {ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size())}); }

std::array<uint8_t, 16> Filled16(uint8_t v) {
  std::array<uint8_t, 16> out;
  out.fill(v);
  return out;
}

bool Contains(const std::string& haystack, std::string_view needle) { return haystack.find(needle) != std::string::npos; }

// The author of every sample record, a partner and an outsider.
struct Orgs {
  NodeIdentity a = NodeIdentity::Generate("gemeente-a", "Gemeente A");
  NodeIdentity b = NodeIdentity::Generate("zorg-b", "Zorgaanbieder B");
  NodeIdentity outsider = NodeIdentity::Generate("mallory", "Mallory");
};
const Orgs& O() {
  static const Orgs orgs;
  return orgs;
}

ControlHeader HeaderBy(const NodeIdentity& author, std::vector<RecordId> parents) {
  ControlHeader h;
  h.case_id = CaseIdFor("gemeente-a", Filled16(1));
  h.author.v = author.pub.org;
  h.hlc = kHlc;
  h.parents.v = std::move(parents);
  return h;
}

// A valid body of each kind, written by O().a.
template <class T>
T Sample();

template <>
CaseGenesis Sample() {
  CaseGenesis g;
  g.h = HeaderBy(O().a, {});
  g.nonce = Filled16(1);
  g.h.case_id = CaseIdFor(O().a.pub.org, g.nonce);
  return g;
}

template <>
ConsentGrant Sample() {
  ConsentGrant c;
  c.h = HeaderBy(O().a, {H("genesis")});
  c.grantee.v = "zorg-b";
  c.domains.v = {{"housing"}, {"mental-health"}};
  c.purpose.v = "ondersteuning bij schulden";
  c.basis.v = "Wmo 2015 art. 5.1.1";
  c.valid_from_ms = 1'700'000'000'000;
  c.valid_until_ms = 1'800'000'000'000;
  c.given_by.v = "burger";
  c.evidence_kind = 1;
  c.evidence_reference.v = "formulier-2024-17";
  return c;
}

template <>
ConsentWithdrawal Sample() {
  ConsentWithdrawal w;
  w.h = HeaderBy(O().a, {H("genesis"), H("consent")});
  w.consent = H("consent");
  return w;
}

template <>
RegieChange Sample() {
  RegieChange r;
  r.h = HeaderBy(O().a, {H("consent")});
  r.regie.v = "zorg-b";
  r.person.v = "Jan de Vries";
  return r;
}

template <>
KeyGrant Sample() {
  KeyGrant k;
  k.h = HeaderBy(O().a, {H("consent")});
  k.fragment = H("fragment");
  k.grantee.v = "zorg-b";
  ContentKey key;
  RandomBytes(std::span<uint8_t>(key.data(), key.size()));
  k.sealed_key = SealKey(key, O().b.pub.box_pk);
  return k;
}

// A citizen's device key (as a browser's Web Crypto would hold it).
struct CitizenDevice {
  SignPublicKey pk{};
  SignSecretKey sk;
  CitizenDevice() { crypto_sign_keypair(pk.data(), sk.data()); }
};
const CitizenDevice& Device() {
  static const CitizenDevice d;
  return d;
}

template <>
CitizenKey Sample() {
  CitizenKey k;
  k.h = HeaderBy(O().a, {H("consent")});
  k.key = Device().pk;
  k.given_by.v = "burger";
  k.invitation = InvitationHash("K7M2-Q9RT-W4XZ-8HJN");
  std::string statement = EnrolmentStatement(k.h.case_id, k.invitation, k.key);
  k.possession = SignPure(ByteSpan(reinterpret_cast<const uint8_t*>(statement.data()), statement.size()), Device().sk);
  return k;
}

// Issue 16: the end of a case.
template <>
CaseClose Sample() {
  CaseClose c;
  c.h = HeaderBy(O().a, {H("consent")});
  c.reason.v = "withdrawn-request";
  c.rule.v = "withdrawn-request";
  c.retention.v = "P6W";
  return c;
}

template <>
CaseReopen Sample() {
  CaseReopen r;
  r.h = HeaderBy(O().a, {H("close")});
  r.reason.v = "nieuwe hulpvraag";
  return r;
}

template <>
ErasureRequest Sample() {
  ErasureRequest e;
  e.h = HeaderBy(O().a, {H("close")});
  e.reference.v = "brief van de burger van 3 maart";
  return e;
}

template <>
ErasureAnswer Sample() {
  ErasureAnswer a;
  a.h = HeaderBy(O().a, {H("erasure")});
  a.request = H("erasure");
  a.erased = 12;
  a.kept = 2;
  a.rule.v = "Jeugdwet";
  a.why.v = "kept by a legal duty to keep";
  return a;
}

// Citizen-signed, so that the conditional part of its encoding is covered too.
template <>
CitizenKeyRevocation Sample() {
  CitizenKeyRevocation v;
  v.h = HeaderBy(O().a, {H("citizen-key")});
  v.key = H("citizen-key");
  v.evidence_kind = kEvidenceCitizenSigned;
  v.citizen.key = H("other-citizen-key");
  v.citizen.nonce = Filled16(5);
  v.citizen.heads = HeadsDigest(v.h.parents.v);
  v.citizen.signature.fill(0x42);  // whether it verifies is the admission rule's question, not the codec's
  return v;
}

template <>
AccessRecordBody Sample() {
  AccessRecordBody b;
  b.case_id = CaseIdFor("gemeente-a", Filled16(1));
  b.author.v = O().a.pub.org;
  b.hlc = kHlc;
  b.event_id = Filled16(9);
  b.time_ms = 1'700'000'000'123;
  b.action.v = "read";
  b.outcome.v = "success";
  b.actor_id.v = "medewerker-17";
  b.actor_name.v = "Anne de Wit";
  b.actor_role.v = "casemanager";
  b.on_behalf_of.v = "";
  b.client.v = "portaal";
  b.items.v = {{ToHex(H("item-1"))}, {ToHex(H("item-2"))}};
  b.consent.v = ToHex(H("consent"));
  return b;
}

// What the tests common to every kind need: sign, encode, decode, verify.
template <class Body>
struct Codec {
  using Record = ControlRecord;
  static RecordType Type() { return Record{Body{}, {}}.type(); }
  static Result<Record> SignRecord(Body b, const NodeIdentity& by) { return SignControl(std::move(b), by); }
  // Signs without the structural checks, as a hostile peer would.
  static Record SignUnchecked(Body b, const NodeIdentity& by) {
    Record r{std::move(b), {}};
    r.signature = Sign(kControlContext, r.Id(), by.sign_sk);
    return r;
  }
  static Bytes EncodeRecord(const Record& r) { return EncodeControlRecord(r); }
  static Result<Record> DecodeRecord(ByteSpan in) { return DecodeControlRecord(in); }
  static Status VerifyRecord(const Record& r, const SignPublicKey& pk) { return VerifyControl(r, pk); }
  static bool HoldsKind(const Record& r) { return std::holds_alternative<Body>(r.body); }
};

template <>
struct Codec<AccessRecordBody> {
  using Record = AccessRecord;
  static RecordType Type() { return RecordType::kAccessRecord; }
  static Result<Record> SignRecord(AccessRecordBody b, const NodeIdentity& by) { return SignAccessRecord(std::move(b), by); }
  static Record SignUnchecked(AccessRecordBody b, const NodeIdentity& by) {
    Record r{std::move(b), {}};
    r.signature = Sign(kAccessContext, r.Id(), by.sign_sk);
    return r;
  }
  static Bytes EncodeRecord(const Record& r) { return EncodeAccessRecord(r); }
  static Result<Record> DecodeRecord(ByteSpan in) { return DecodeAccessRecord(in); }
  static Status VerifyRecord(const Record& r, const SignPublicKey& pk) { return VerifyAccessRecord(r, pk); }
  static bool HoldsKind(const Record&) { return true; }
};

template <class Body>
typename Codec<Body>::Record Signed(const Body& body) {
  auto r = Codec<Body>::SignRecord(body, O().a);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  return *r;
}

template <class Body>
Bytes SignedBytes(const Body& body) {
  return Codec<Body>::EncodeRecord(Signed(body));
}

// A body that breaks a structural rule, signed anyway by its author as a
// hostile or buggy peer would: the decoder takes it (structure is not its
// job), verification with the author's key refuses it for `reason`.
template <class Body>
void CheckFailsVerification(const Body& body, const NodeIdentity& by, std::string_view reason) {
  using C = Codec<Body>;
  Result<typename C::Record> decoded = C::DecodeRecord(C::EncodeRecord(C::SignUnchecked(body, by)));
  REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
  Status st = C::VerifyRecord(*decoded, by.pub.sign_pk);
  CHECK(st.code() == Status::Code::kCorruption);
  CHECK_MESSAGE(Contains(st.message(), reason), st.message());
}

// As above, and the author's own node refuses to sign it in the first place.
template <class Body>
void CheckRefused(const Body& body, std::string_view reason) {
  Result<typename Codec<Body>::Record> signed_record = Codec<Body>::SignRecord(body, O().a);
  REQUIRE_FALSE(signed_record.ok());
  CHECK(signed_record.status().code() == Status::Code::kInvalidArgument);
  CHECK_MESSAGE(Contains(signed_record.status().message(), reason), signed_record.status().message());
  CheckFailsVerification(body, O().a, reason);
}

// Offset in a control record's bytes of the parents count (after the type byte).
size_t ParentsCountAt(const ControlHeader& h) { return 1 + Encode(h).size() - Encode(h.parents).size(); }

}  // namespace

// ---- Every kind: round trip and hostile encodings ----

TEST_CASE_TEMPLATE("a signed record survives encoding and decoding, verifies with its author's key and keeps its id", T,
                   KRING_RECORD_KINDS) {
  using C = Codec<T>;
  const T body = Sample<T>();
  const typename C::Record signed_record = Signed(body);
  const Bytes bytes = C::EncodeRecord(signed_record);
  CHECK(bytes[0] == static_cast<uint8_t>(C::Type()));

  Result<typename C::Record> decoded = C::DecodeRecord(bytes);
  REQUIRE_MESSAGE(decoded.ok(), decoded.status().ToString());
  CHECK(C::HoldsKind(*decoded));
  CHECK(C::EncodeRecord(*decoded) == bytes);
  CHECK(decoded->Id() == signed_record.Id());
  CHECK(decoded->signature == signed_record.signature);
  Status verified = C::VerifyRecord(*decoded, O().a.pub.sign_pk);
  CHECK_MESSAGE(verified.ok(), verified.ToString());
}

TEST_CASE_TEMPLATE("signing is deterministic and a record's id does not depend on its signature", T, KRING_RECORD_KINDS) {
  using C = Codec<T>;
  const T body = Sample<T>();
  typename C::Record r = Signed(body);
  CHECK(C::EncodeRecord(Signed(body)) == C::EncodeRecord(r));
  const RecordId id = r.Id();
  r.signature[0] ^= 1;
  CHECK(r.Id() == id);
}

TEST_CASE_TEMPLATE("every truncated prefix of a record is rejected by its decoder", T, KRING_RECORD_KINDS) {
  using C = Codec<T>;
  const Bytes bytes = SignedBytes(Sample<T>());
  for (size_t len = 0; len < bytes.size(); ++len) {
    CAPTURE(len);
    Result<typename C::Record> r = C::DecodeRecord(ByteSpan(bytes).first(len));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kCorruption);
  }
}

TEST_CASE_TEMPLATE("a record with trailing bytes is rejected by its decoder", T, KRING_RECORD_KINDS) {
  using C = Codec<T>;
  const Bytes valid = SignedBytes(Sample<T>());
  Bytes bytes = valid;
  SUBCASE("one zero byte") { bytes.push_back(0); }
  SUBCASE("one 0xff byte") { bytes.push_back(0xff); }
  SUBCASE("a second copy of the record") { bytes.insert(bytes.end(), valid.begin(), valid.end()); }
  Result<typename C::Record> r = C::DecodeRecord(bytes);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kCorruption);
  CHECK_MESSAGE(Contains(r.status().message(), "trailing"), r.status().message());
}

TEST_CASE_TEMPLATE("a record with any one byte changed is rejected by the decoder or fails verification", T,
                   KRING_RECORD_KINDS) {
  using C = Codec<T>;
  const typename C::Record original = Signed(Sample<T>());
  const Bytes bytes = C::EncodeRecord(original);
  size_t decoded_count = 0;
  for (size_t at = 0; at < bytes.size(); ++at) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}, uint8_t{0xff}}) {
      CAPTURE(at);
      CAPTURE(static_cast<int>(mask));
      Bytes changed = bytes;
      changed[at] ^= mask;
      Result<typename C::Record> r = C::DecodeRecord(changed);
      if (!r.ok()) {
        CHECK(r.status().code() == Status::Code::kCorruption);
        continue;
      }
      ++decoded_count;
      // Different bytes never decode to the same record...
      CHECK((r->Id() != original.Id() || r->signature != original.signature));
      // ...and a different record does not carry the author's signature.
      CHECK(C::VerifyRecord(*r, O().a.pub.sign_pk).code() == Status::Code::kCorruption);
    }
  }
  // At least the signature bytes decode when changed: the loop above tested verification, not only the decoder.
  CHECK(decoded_count >= 3 * kSignatureBytes);
}

TEST_CASE_TEMPLATE("a record fails verification with any key but its author's", T, KRING_RECORD_KINDS) {
  using C = Codec<T>;
  const typename C::Record r = Signed(Sample<T>());
  SUBCASE("a partner's key") {
    Status st = C::VerifyRecord(r, O().b.pub.sign_pk);
    CHECK(st.code() == Status::Code::kCorruption);
    CHECK(Contains(st.message(), "signature"));
  }
  SUBCASE("an outsider's key") { CHECK(C::VerifyRecord(r, O().outsider.pub.sign_pk).code() == Status::Code::kCorruption); }
  SUBCASE("an all-zero key") { CHECK(C::VerifyRecord(r, SignPublicKey{}).code() == Status::Code::kCorruption); }
  SUBCASE("signed by an impostor using the author's organisation name") {
    NodeIdentity impostor = NodeIdentity::Generate("gemeente-a", "Gemeente A");
    auto forged = C::SignRecord(Sample<T>(), impostor);
    REQUIRE(forged.ok());  // the organisation name matches, so the impostor's node signs...
    CHECK(C::VerifyRecord(*forged, impostor.pub.sign_pk).ok());
    CHECK(C::VerifyRecord(*forged, O().a.pub.sign_pk).code() == Status::Code::kCorruption);  // ...but not as the author
  }
}

// ---- Every kind: rules of the common fields ----

namespace {
template <class T>
uint8_t& FormatOf(T& b) { return b.h.format; }
uint8_t& FormatOf(AccessRecordBody& b) { return b.format; }
template <class T>
std::string& AuthorOf(T& b) { return b.h.author.v; }
std::string& AuthorOf(AccessRecordBody& b) { return b.author.v; }
}  // namespace

TEST_CASE_TEMPLATE("signing refuses a body whose author is not the signer", T, KRING_RECORD_KINDS) {
  Result<typename Codec<T>::Record> r = Codec<T>::SignRecord(Sample<T>(), O().b);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kInvalidArgument);
  CHECK_MESSAGE(Contains(r.status().message(), "not the signer"), r.status().message());
}

TEST_CASE_TEMPLATE("a record of an unknown format is refused when signed and fails verification", T, KRING_RECORD_KINDS) {
  T body = Sample<T>();
  SUBCASE("format 0") { FormatOf(body) = 0; }
  SUBCASE("format 2") { FormatOf(body) = 2; }
  SUBCASE("format 255") { FormatOf(body) = 255; }
  CheckRefused(body, "format");
}

TEST_CASE_TEMPLATE("a validly signed record whose author is not an organisation slug fails verification", T,
                   KRING_RECORD_KINDS) {
  T body = Sample<T>();
  SUBCASE("empty") { AuthorOf(body) = ""; }
  SUBCASE("one character") { AuthorOf(body) = "g"; }
  SUBCASE("upper case and a space") { AuthorOf(body) = "Gemeente A"; }
  SUBCASE("an underscore") { AuthorOf(body) = "gemeente_a"; }
  SUBCASE("a trailing newline") { AuthorOf(body) = "gemeente-a\n"; }
  CheckFailsVerification(body, O().a, "author");
}

TEST_CASE_TEMPLATE("a control record that lists a parent twice is refused when signed and fails verification", T,
                   KRING_CONTROL_KINDS) {
  T body = Sample<T>();
  SUBCASE("adjacent") { body.h.parents.v = {H("p"), H("p")}; }
  SUBCASE("apart") { body.h.parents.v = {H("p"), H("q"), H("r"), H("p")}; }
  CheckRefused(body, "duplicate parent");
}

TEST_CASE_TEMPLATE("a control record with the most parents survives its encoding and verifies", T, kring::ConsentGrant,
                   kring::ConsentWithdrawal, kring::RegieChange, kring::KeyGrant) {
  T body = Sample<T>();
  body.h.parents.v.clear();
  for (size_t i = 0; i < kMaxCausalParents; ++i) body.h.parents.v.push_back(H("parent-" + std::to_string(i)));
  Result<ControlRecord> r = DecodeControlRecord(SignedBytes(body));
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(r->header().parents.v.size() == kMaxCausalParents);
  CHECK(VerifyControl(*r, O().a.pub.sign_pk).ok());
}

// ---- Rules of each control record kind ----

TEST_CASE("a consent grant that breaks a structural rule is refused when signed and fails verification") {
  ConsentGrant c = Sample<ConsentGrant>();
  std::string reason;
  SUBCASE("grantee not a slug") { c.grantee.v = "Zorg B"; reason = "grantee"; }
  SUBCASE("no grantee") { c.grantee.v.clear(); reason = "grantee"; }
  SUBCASE("no domain") { c.domains.v.clear(); reason = "no domain"; }
  SUBCASE("an unknown domain") { c.domains.v = {{"wonen"}}; reason = "unknown life domain 'wonen'"; }
  SUBCASE("an unknown domain among known ones") {
    c.domains.v = {{"housing"}, {"housing-2"}, {"mental-health"}};
    reason = "unknown life domain 'housing-2'";
  }
  SUBCASE("an empty domain") { c.domains.v = {{""}}; reason = "unknown life domain"; }
  SUBCASE("a domain in upper case") { c.domains.v = {{"Housing"}}; reason = "unknown life domain"; }
  SUBCASE("domains out of order") { c.domains.v = {{"mental-health"}, {"housing"}}; reason = "sorted"; }
  SUBCASE("a domain listed twice") { c.domains.v = {{"housing"}, {"housing"}}; reason = "unique"; }
  SUBCASE("'*' followed by a domain") { c.domains.v = {{"*"}, {"housing"}}; reason = "'*' stands alone"; }
  SUBCASE("'*' after a domain") { c.domains.v = {{"housing"}, {"*"}}; reason = "sorted"; }
  SUBCASE("'*' listed twice") { c.domains.v = {{"*"}, {"*"}}; reason = "unique"; }
  SUBCASE("empty purpose") { c.purpose.v.clear(); reason = "purpose"; }
  SUBCASE("empty legal basis") { c.basis.v.clear(); reason = "legal basis"; }
  SUBCASE("valid_until equal to valid_from") { c.valid_until_ms = c.valid_from_ms; reason = "valid_until"; }
  SUBCASE("valid_until before valid_from") { c.valid_until_ms = c.valid_from_ms - 1; reason = "valid_until"; }
  SUBCASE("valid_until negative") { c.valid_until_ms = -1; reason = "valid_until"; }
  SUBCASE("empty given_by") { c.given_by.v.clear(); reason = "given_by"; }
  SUBCASE("evidence kind 0") { c.evidence_kind = 0; reason = "evidence kind"; }
  SUBCASE("evidence kind 3") { c.evidence_kind = 3; reason = "evidence kind"; }  // 2 is citizen-signed (citizen_test.cc)
  SUBCASE("empty evidence reference") { c.evidence_reference.v.clear(); reason = "reference"; }
  CheckRefused(c, reason);
}

TEST_CASE("a consent grant over every life domain, over the wildcard alone, open-ended or with fields at their limits is signed and verifies") {
  ConsentGrant c = Sample<ConsentGrant>();
  SUBCASE("all 13 life domains, sorted") {
    std::vector<std::string> all(std::begin(kLifeDomains), std::end(kLifeDomains));
    std::sort(all.begin(), all.end());
    c.domains.v.clear();
    for (const std::string& d : all) c.domains.v.push_back({d});
    REQUIRE(c.domains.v.size() == 13);
  }
  SUBCASE("'*' alone") { c.domains.v = {{"*"}}; }
  SUBCASE("open-ended") { c.valid_until_ms = 0; }
  SUBCASE("valid for one millisecond") { c.valid_until_ms = c.valid_from_ms + 1; }
  SUBCASE("purpose, basis, given_by and evidence reference at their limits") {
    c.purpose.v.assign(kMaxPurposeBytes, 'p');
    c.basis.v.assign(kMaxBasisBytes, 'b');
    c.given_by.v.assign(kMaxReferenceBytes, 'g');
    c.evidence_reference.v.assign(kMaxReferenceBytes, 'e');
  }
  Result<ControlRecord> r = DecodeControlRecord(SignedBytes(c));
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  Status st = VerifyControl(*r, O().a.pub.sign_pk);
  CHECK_MESSAGE(st.ok(), st.ToString());
  CHECK(Encode(std::get<ConsentGrant>(r->body)) == Encode(c));
}

TEST_CASE("a case genesis whose case id is not bound to its creator is refused when signed and fails verification") {
  CaseGenesis g = Sample<CaseGenesis>();
  SUBCASE("a case id byte changed") { g.h.case_id[15] ^= 1; }
  SUBCASE("a fresh random case id") { g.h.case_id = NewCaseId(); }
  SUBCASE("a nonce byte changed") { g.nonce[0] ^= 1; }
  SUBCASE("the case id another organisation would get for the same nonce") { g.h.case_id = CaseIdFor("zorg-b", g.nonce); }
  CheckRefused(g, "bound to its creator");
}

TEST_CASE("a partner cannot open a case under the case id of its creator") {
  CaseGenesis g = Sample<CaseGenesis>();  // case id and nonce of gemeente-a
  g.h.author.v = "zorg-b";
  Result<ControlRecord> r = SignControl(g, O().b);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kInvalidArgument);
  CheckFailsVerification(g, O().b, "bound to its creator");
}

TEST_CASE("a case genesis with parents is refused when signed and fails verification") {
  CaseGenesis g = Sample<CaseGenesis>();
  g.h.parents.v = {H("an earlier record")};
  CheckRefused(g, "no parents");
}

TEST_CASE("CaseIdFor depends on the creator and on every nonce byte") {
  const std::array<uint8_t, 16> nonce = Filled16(3);
  const CaseId id = CaseIdFor("gemeente-a", nonce);
  CHECK(CaseIdFor("gemeente-a", nonce) == id);
  CHECK(CaseIdFor("gemeente-b", nonce) != id);
  CHECK(CaseIdFor("gemeente-a-", nonce) != id);
  for (size_t i = 0; i < nonce.size(); ++i) {
    std::array<uint8_t, 16> other = nonce;
    other[i] ^= 1;
    CHECK(CaseIdFor("gemeente-a", other) != id);
  }
}

TEST_CASE("a regie change naming a bad organisation or person is refused when signed and fails verification") {
  RegieChange r = Sample<RegieChange>();
  std::string reason;
  SUBCASE("empty organisation") { r.regie.v.clear(); reason = "regie"; }
  SUBCASE("one-character organisation") { r.regie.v = "z"; reason = "regie"; }
  SUBCASE("organisation in upper case") { r.regie.v = "Zorg-B"; reason = "regie"; }
  SUBCASE("organisation with a space") { r.regie.v = "zorg b"; reason = "regie"; }
  SUBCASE("organisation with a dot") { r.regie.v = "zorg.b"; reason = "regie"; }
  SUBCASE("empty person") { r.person.v.clear(); reason = "person"; }
  SUBCASE("person with a newline") { r.person.v = "Jan\nde Vries"; reason = "person"; }
  SUBCASE("person with a tab") { r.person.v = "Jan\tde Vries"; reason = "person"; }
  SUBCASE("person with a NUL byte") { r.person.v = std::string("Jan\0de Vries", 12); reason = "person"; }
  SUBCASE("person with DEL") { r.person.v = "Jan\x7f"; reason = "person"; }
  SUBCASE("person with a terminal escape") { r.person.v = "\x1b[31mJan"; reason = "person"; }
  CheckRefused(r, reason);
}

TEST_CASE("a regie change to a person with a UTF-8 name of the longest length is signed and verifies") {
  RegieChange r = Sample<RegieChange>();
  SUBCASE("UTF-8") { r.person.v = "Jöran Çelik-Ünal"; }
  SUBCASE("128 bytes") { r.person.v.assign(kMaxPersonNameBytes, 'x'); }
  SUBCASE("regie stays with the author") { r.regie.v = "gemeente-a"; }
  Result<ControlRecord> d = DecodeControlRecord(SignedBytes(r));
  REQUIRE(d.ok());
  CHECK(VerifyControl(*d, O().a.pub.sign_pk).ok());
  CHECK(std::get<RegieChange>(d->body).person.v == r.person.v);
}

TEST_CASE("a key grant to a grantee that is not an organisation slug is refused when signed and fails verification") {
  KeyGrant k = Sample<KeyGrant>();
  SUBCASE("empty") { k.grantee.v.clear(); }
  SUBCASE("one character") { k.grantee.v = "z"; }
  SUBCASE("upper case") { k.grantee.v = "ZORG-B"; }
  SUBCASE("a slash") { k.grantee.v = "zorg/b"; }
  CheckRefused(k, "grantee");
}

// ---- Rules of access records ----

TEST_CASE("an access record with an unknown action or outcome or no actor is refused when signed and fails verification") {
  AccessRecordBody b = Sample<AccessRecordBody>();
  std::string reason;
  SUBCASE("unknown action") { b.action.v = "delete"; reason = "unknown access action 'delete'"; }
  SUBCASE("empty action") { b.action.v.clear(); reason = "unknown access action"; }
  SUBCASE("action in upper case") { b.action.v = "READ"; reason = "unknown access action"; }
  SUBCASE("action with a trailing space") { b.action.v = "read "; reason = "unknown access action"; }
  SUBCASE("action with a trailing NUL") { b.action.v = std::string("read\0", 5); reason = "unknown access action"; }
  SUBCASE("unknown outcome") { b.outcome.v = "ok"; reason = "unknown access outcome 'ok'"; }
  SUBCASE("empty outcome") { b.outcome.v.clear(); reason = "unknown access outcome"; }
  SUBCASE("outcome that is an action") { b.outcome.v = "read"; reason = "unknown access outcome"; }
  SUBCASE("empty actor") { b.actor_id.v.clear(); reason = "no actor"; }
  CheckRefused(b, reason);
}

TEST_CASE("an access record of every known action and outcome is signed and verifies") {
  for (const char* action : {"create", "read", "update", "consent-record", "consent-withdraw", "purge", "export"}) {
    for (const char* outcome : {"success", "denied", "failure"}) {
      CAPTURE(action);
      CAPTURE(outcome);
      AccessRecordBody b = Sample<AccessRecordBody>();
      b.action.v = action;
      b.outcome.v = outcome;
      Result<AccessRecord> r = DecodeAccessRecord(SignedBytes(b));
      REQUIRE(r.ok());
      CHECK(VerifyAccessRecord(*r, O().a.pub.sign_pk).ok());
    }
  }
}

TEST_CASE("an access record with every field at its limit survives its encoding and verifies") {
  AccessRecordBody b = Sample<AccessRecordBody>();
  b.actor_id.v.assign(128, 'i');
  b.actor_name.v.assign(200, 'n');
  b.actor_role.v.assign(100, 'r');
  b.on_behalf_of.v.assign(200, 'o');
  b.client.v.assign(kMaxOrgBytes, 'c');
  b.items.v.assign(kMaxAccessItems, {std::string(64, 'x')});
  b.consent.v.assign(4096, 'k');
  const Bytes bytes = SignedBytes(b);
  Result<AccessRecord> r = DecodeAccessRecord(bytes);
  REQUIRE_MESSAGE(r.ok(), r.status().ToString());
  CHECK(EncodeAccessRecord(*r) == bytes);
  CHECK(r->body.items.v.size() == kMaxAccessItems);
  CHECK(VerifyAccessRecord(*r, O().a.pub.sign_pk).ok());
}

// ---- Sizes: signing refuses what would not encode ----

TEST_CASE("SignControl refuses a field longer than its wire limit with an error instead of throwing") {
  ConsentGrant c = Sample<ConsentGrant>();
  SUBCASE("purpose one byte over") { c.purpose.v.assign(kMaxPurposeBytes + 1, 'p'); }
  SUBCASE("basis one byte over") { c.basis.v.assign(kMaxBasisBytes + 1, 'b'); }
  SUBCASE("given_by one byte over") { c.given_by.v.assign(kMaxReferenceBytes + 1, 'g'); }
  SUBCASE("evidence reference one byte over") { c.evidence_reference.v.assign(kMaxReferenceBytes + 1, 'e'); }
  SUBCASE("one parent too many") {
    c.h.parents.v.clear();
    for (size_t i = 0; i <= kMaxCausalParents; ++i) c.h.parents.v.push_back(H("parent-" + std::to_string(i)));
  }
  Result<ControlRecord> r = Status::Corruption("not run");
  CHECK_NOTHROW(r = SignControl(c, O().a));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kResourceExhausted);
}

TEST_CASE("SignAccessRecord refuses a field longer than its wire limit with an error instead of throwing") {
  AccessRecordBody b = Sample<AccessRecordBody>();
  SUBCASE("actor id") { b.actor_id.v.assign(129, 'i'); }
  SUBCASE("actor name") { b.actor_name.v.assign(201, 'n'); }
  SUBCASE("actor role") { b.actor_role.v.assign(101, 'r'); }
  SUBCASE("on behalf of") { b.on_behalf_of.v.assign(201, 'o'); }
  SUBCASE("client") { b.client.v.assign(kMaxOrgBytes + 1, 'c'); }
  SUBCASE("one item too many") { b.items.v.assign(kMaxAccessItems + 1, {"item"}); }
  SUBCASE("an item one byte over") { b.items.v[1].v.assign(65, 'x'); }
  SUBCASE("consent") { b.consent.v.assign(4097, 'k'); }
  Result<AccessRecord> r = Status::Corruption("not run");
  CHECK_NOTHROW(r = SignAccessRecord(b, O().a));
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kResourceExhausted);
}

// ---- Type bytes ----

TEST_CASE("DecodeControlRecord rejects the type bytes of fragments, access records and unknown types") {
  Bytes bytes = SignedBytes(Sample<ConsentGrant>());
  uint8_t type = 0;
  SUBCASE("0") { type = 0; }
  SUBCASE("1, a fragment") { type = static_cast<uint8_t>(RecordType::kFragment); }
  SUBCASE("7, an access record") { type = static_cast<uint8_t>(RecordType::kAccessRecord); }
  SUBCASE("8") { type = 8; }
  SUBCASE("11") { type = 11; }
  SUBCASE("17") { type = 17; }
  SUBCASE("0x80") { type = 0x80; }
  SUBCASE("0xff") { type = 0xff; }
  bytes[0] = type;
  Result<ControlRecord> r = DecodeControlRecord(bytes);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kCorruption);
  CHECK_MESSAGE(Contains(r.status().message(), "not a control record type: " + std::to_string(type)), r.status().message());
}

TEST_CASE("DecodeControlRecord rejects a real fragment record, a real access record and empty input") {
  Bytes bytes;
  SUBCASE("fragment") {
    FragmentDraft d;
    d.case_id = Sample<ConsentGrant>().h.case_id;
    d.kind = "hulpvraag";
    d.body = {'x'};
    Result<Fragment> f = SealFragment(d, O().a);
    REQUIRE(f.ok());
    bytes = EncodeFragmentRecord(*f);
  }
  SUBCASE("access record") { bytes = SignedBytes(Sample<AccessRecordBody>()); }
  SUBCASE("empty") {}
  Result<ControlRecord> r = DecodeControlRecord(bytes);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Status::Code::kCorruption);
}

TEST_CASE("DecodeAccessRecord rejects every type byte but 7, and empty input") {
  CHECK(DecodeAccessRecord(ByteSpan()).status().code() == Status::Code::kCorruption);
  Bytes bytes = SignedBytes(Sample<AccessRecordBody>());
  for (int type = 0; type < 256; ++type) {
    if (type == static_cast<int>(RecordType::kAccessRecord)) continue;
    CAPTURE(type);
    bytes[0] = static_cast<uint8_t>(type);
    Result<AccessRecord> r = DecodeAccessRecord(bytes);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Status::Code::kCorruption);
  }
  bytes[0] = static_cast<uint8_t>(RecordType::kAccessRecord);
  CHECK(DecodeAccessRecord(bytes).ok());
}

// ---- Counts and lengths from a peer ----

namespace {
void PutU16At(Bytes& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v);
  b[at + 1] = static_cast<uint8_t>(v >> 8);
}
}  // namespace

TEST_CASE("a count or length beyond its limit or beyond the bytes present is rejected by the decoder") {
  const ConsentGrant c = Sample<ConsentGrant>();
  const RegieChange rc = Sample<RegieChange>();
  const AccessRecordBody ab = Sample<AccessRecordBody>();
  const size_t parents_at = ParentsCountAt(c.h);
  const size_t domains_at = 1 + Encode(c.h).size() + Encode(c.grantee).size();
  const size_t purpose_at = domains_at + Encode(c.domains).size();
  const size_t person_at = 1 + Encode(rc.h).size() + Encode(rc.regie).size();
  const size_t items_at = 1 + Encode(ab).size() - Encode(ab.items).size() - Encode(ab.consent).size();
  const size_t consent_at = 1 + Encode(ab).size() - Encode(ab.consent).size();

  Bytes bytes;
  bool access = false;
  std::string reason = "exceeds limit";
  SUBCASE("parents count of 255") {
    bytes = SignedBytes(c);
    REQUIRE(bytes[parents_at] == 1);
    bytes[parents_at] = 0xff;
  }
  SUBCASE("parents count at its limit with one parent's bytes left") {
    bytes = SignedBytes(c);
    bytes[parents_at] = kMaxCausalParents;
    bytes.resize(parents_at + 1 + kHashBytes);
    reason = "exceeds the bytes left";
  }
  SUBCASE("domains count of 255") {
    bytes = SignedBytes(c);
    REQUIRE(bytes[domains_at] == 2);
    bytes[domains_at] = 0xff;
  }
  SUBCASE("domains count at its limit with 10 bytes left") {
    bytes = SignedBytes(c);
    bytes[domains_at] = kMaxConsentDomains;
    bytes.resize(domains_at + 1 + 10);
    reason = "exceeds the bytes left";
  }
  SUBCASE("purpose length of 0xffff") {
    bytes = SignedBytes(c);
    REQUIRE(bytes[purpose_at] == c.purpose.v.size());
    PutU16At(bytes, purpose_at, 0xffff);
  }
  SUBCASE("purpose length at its limit with 16 bytes left") {
    bytes = SignedBytes(c);
    PutU16At(bytes, purpose_at, kMaxPurposeBytes);
    bytes.resize(purpose_at + 2 + 16);
    reason = "exceeds the bytes left";
  }
  SUBCASE("person length of 255") {
    bytes = SignedBytes(rc);
    REQUIRE(bytes[person_at] == rc.person.v.size());
    bytes[person_at] = 0xff;
  }
  SUBCASE("items count of 0xffff") {
    access = true;
    bytes = SignedBytes(ab);
    REQUIRE(bytes[items_at] == 2);
    PutU16At(bytes, items_at, 0xffff);
  }
  SUBCASE("items count at its limit with 16 bytes left") {
    access = true;
    bytes = SignedBytes(ab);
    PutU16At(bytes, items_at, kMaxAccessItems);
    bytes.resize(items_at + 2 + 16);
    reason = "exceeds the bytes left";
  }
  SUBCASE("consent length at its limit with 16 bytes left") {
    access = true;
    bytes = SignedBytes(ab);
    PutU16At(bytes, consent_at, 4096);
    bytes.resize(consent_at + 2 + 16);
    reason = "exceeds the bytes left";
  }
  SUBCASE("consent length of 0xffff") {
    access = true;
    bytes = SignedBytes(ab);
    PutU16At(bytes, consent_at, 0xffff);
  }
  Status st = access ? DecodeAccessRecord(bytes).status() : DecodeControlRecord(bytes).status();
  CHECK(st.code() == Status::Code::kCorruption);
  CHECK_MESSAGE(Contains(st.message(), reason), st.message());
}

TEST_CASE("issue 16: a close with an unknown reason or a period that is no ISO 8601 duration, and an answer that kept records without naming the duty, are refused") {
  CaseClose c = Sample<CaseClose>();
  c.reason.v = "klaar";
  CheckRefused(c, "unknown close reason");
  c = Sample<CaseClose>();
  c.retention.v = "15 jaar";
  CheckRefused(c, "no ISO 8601 duration");
  c = Sample<CaseClose>();
  c.rule.v = "";
  CheckRefused(c, "retention rule's name is required");
  ErasureRequest e = Sample<ErasureRequest>();
  e.reference.v = "";
  CheckRefused(e, "names what it acted on");
  ErasureAnswer a = Sample<ErasureAnswer>();
  a.rule.v = "";
  CheckRefused(a, "names the rule that obliges it");
}

}  // namespace kring
