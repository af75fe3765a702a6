// Signing, verifying and encoding control records.
#include "protocol/records.h"

#include <algorithm>
#include <set>

#include "crypto/primitives.h"

namespace kring {

namespace {

constexpr std::string_view kControlContext = "kring/control/v1";

template <class T>
constexpr RecordType TypeOf();
template <> constexpr RecordType TypeOf<CaseGenesis>() { return RecordType::kCaseGenesis; }
template <> constexpr RecordType TypeOf<ConsentGrant>() { return RecordType::kConsentGrant; }
template <> constexpr RecordType TypeOf<ConsentWithdrawal>() { return RecordType::kConsentWithdrawal; }
template <> constexpr RecordType TypeOf<RegieChange>() { return RecordType::kRegieChange; }
template <> constexpr RecordType TypeOf<KeyGrant>() { return RecordType::kKeyGrant; }
template <> constexpr RecordType TypeOf<CitizenKey>() { return RecordType::kCitizenKey; }
template <> constexpr RecordType TypeOf<CitizenKeyRevocation>() { return RecordType::kCitizenKeyRevocation; }
template <> constexpr RecordType TypeOf<CaseClose>() { return RecordType::kCaseClose; }
template <> constexpr RecordType TypeOf<CaseReopen>() { return RecordType::kCaseReopen; }
template <> constexpr RecordType TypeOf<ErasureRequest>() { return RecordType::kErasureRequest; }
template <> constexpr RecordType TypeOf<ErasureAnswer>() { return RecordType::kErasureAnswer; }

Bytes EncodeBody(const ControlBody& body) {
  return std::visit([](const auto& b) { return Encode(b); }, body);
}

Status CheckHeader(const ControlHeader& h) {
  if (h.format != kControlFormat && h.format != kControlFormatCitizenSigned)
    return Status::Corruption("unknown control record format");
  if (!IsValidOrgSlug(h.author.v)) return Status::Corruption("author is not a valid organisation slug");
  std::set<RecordId> parents(h.parents.v.begin(), h.parents.v.end());
  if (parents.size() != h.parents.v.size()) return Status::Corruption("duplicate parent");
  return Status::Ok();
}

Status CheckBody(const CaseGenesis& g) {
  if (g.h.format != kControlFormat) return Status::Corruption("only a withdrawal may be format 2");
  if (CaseIdFor(g.h.author.v, g.nonce) != g.h.case_id) return Status::Corruption("case id is not bound to its creator");
  if (!g.h.parents.v.empty()) return Status::Corruption("a case genesis has no parents");
  return Status::Ok();
}

Status CheckBody(const ConsentGrant& c) {
  if (!IsValidOrgSlug(c.grantee.v)) return Status::Corruption("grantee is not a valid organisation slug");
  if (c.domains.v.empty()) return Status::Corruption("consent covers no domain");
  for (size_t i = 0; i < c.domains.v.size(); ++i) {
    const std::string& d = c.domains.v[i].v;
    if (d != "*" && !IsLifeDomain(d)) return Status::Corruption("unknown life domain '" + d + "'");
    if (i > 0 && !(c.domains.v[i - 1].v < d)) return Status::Corruption("domains not sorted and unique");
  }
  if (c.domains.v.size() > 1 && c.domains.v.front().v == "*") return Status::Corruption("'*' stands alone");
  if (c.purpose.v.empty() || c.basis.v.empty()) return Status::Corruption("purpose and legal basis are required");
  for (const std::string* t : {&c.purpose.v, &c.basis.v, &c.given_by.v, &c.evidence_reference.v})
    if (!IsPrintableText(*t)) return Status::Corruption("consent text is not printable UTF-8");
  if (c.valid_until_ms != 0 && c.valid_until_ms <= c.valid_from_ms)
    return Status::Corruption("valid_until is not after valid_from");
  if (c.given_by.v.empty()) return Status::Corruption("given_by is required");
  if (c.h.format != kControlFormat) return Status::Corruption("a consent grant is format 1");
  if (c.evidence_kind != kEvidenceAttested && c.evidence_kind != kEvidenceCitizenSigned)
    return Status::Corruption("unknown evidence kind");
  if (c.evidence_kind == kEvidenceAttested && c.evidence_reference.v.empty())
    return Status::Corruption("attested consent needs a reference to the signed form");
  return Status::Ok();
}

Status CheckBody(const ConsentWithdrawal& w) {
  if (w.citizen_signed() && w.evidence_kind != kEvidenceCitizenSigned)
    return Status::Corruption("a format 2 withdrawal is citizen-signed");
  return Status::Ok();
}

Status CheckBody(const CitizenKey& k) {
  if (k.h.format != kControlFormat) return Status::Corruption("a citizen key record is format 1");
  if (k.given_by.v.empty() || !IsPrintableText(k.given_by.v))
    return Status::Corruption("given_by is required, printable UTF-8");
  // The device proved it holds the key: a key nobody holds, or one copied
  // from another case, cannot be enrolled.
  std::string statement = EnrolmentStatement(k.h.case_id, k.invitation, k.key);
  if (!VerifyPure(ByteSpan(reinterpret_cast<const uint8_t*>(statement.data()), statement.size()), k.possession, k.key))
    return Status::Corruption("the citizen's proof of possession does not verify");
  return Status::Ok();
}

Status CheckBody(const CitizenKeyRevocation& r) {
  if (r.h.format != kControlFormat) return Status::Corruption("a citizen key revocation is format 1");
  if (r.evidence_kind != kEvidenceAttested && r.evidence_kind != kEvidenceCitizenSigned)
    return Status::Corruption("unknown evidence kind");
  if (!IsPrintableText(r.evidence_reference.v)) return Status::Corruption("evidence reference is not printable UTF-8");
  if (r.evidence_kind == kEvidenceAttested && r.evidence_reference.v.empty())
    return Status::Corruption("a revocation by the regie organisation names what it acted on");
  return Status::Ok();
}

Status FormatOne(const ControlHeader& h) {
  return h.format == kControlFormat ? Status::Ok() : Status::Corruption("only a withdrawal may be format 2");
}

Status CheckBody(const RegieChange& r) {
  KRING_RETURN_IF_ERROR(FormatOne(r.h));
  if (!IsValidOrgSlug(r.regie.v)) return Status::Corruption("regie is not a valid organisation slug");
  if (!IsValidDisplayName(r.person.v)) return Status::Corruption("person name is empty or has control characters");
  return Status::Ok();
}

Status CheckBody(const KeyGrant& k) {
  KRING_RETURN_IF_ERROR(FormatOne(k.h));
  if (!IsValidOrgSlug(k.grantee.v)) return Status::Corruption("grantee is not a valid organisation slug");
  return Status::Ok();
}

Status CheckBody(const CaseClose& c) {
  KRING_RETURN_IF_ERROR(FormatOne(c.h));
  if (!IsCloseReason(c.reason.v)) return Status::Corruption("unknown close reason '" + c.reason.v.substr(0, 32) + "'");
  if (c.rule.v.empty() || !IsPrintableText(c.rule.v)) return Status::Corruption("the retention rule's name is required, printable UTF-8");
  if (!ParsePeriod(c.retention.v).ok()) return Status::Corruption("the retention period is no ISO 8601 duration");
  return Status::Ok();
}

Status CheckBody(const CaseReopen& r) {
  KRING_RETURN_IF_ERROR(FormatOne(r.h));
  if (!IsPrintableText(r.reason.v)) return Status::Corruption("reopen reason is not printable UTF-8");
  return Status::Ok();
}

Status CheckBody(const ErasureRequest& r) {
  KRING_RETURN_IF_ERROR(FormatOne(r.h));
  if (r.reference.v.empty() || !IsPrintableText(r.reference.v))
    return Status::Corruption("an erasure request names what it acted on, printable UTF-8");
  return Status::Ok();
}

Status CheckBody(const ErasureAnswer& a) {
  KRING_RETURN_IF_ERROR(FormatOne(a.h));
  if (!IsPrintableText(a.rule.v) || !IsPrintableText(a.why.v)) return Status::Corruption("erasure answer text is not printable UTF-8");
  if (a.kept > 0 && a.rule.v.empty()) return Status::Corruption("an erasure answer that kept records names the rule that obliges it");
  return Status::Ok();
}

}  // namespace

bool IsCloseReason(std::string_view s) {
  return std::any_of(std::begin(kCloseReasons), std::end(kCloseReasons), [&](const char* r) { return s == r; });
}

namespace {

constexpr std::string_view kStatementHeader = "kring burgerverklaring v1\n";

// Free text on one line: a backslash and a line break are escaped, so no
// value can forge another line of the statement.
std::string OneLine(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out;
}

void Line(std::string& out, std::string_view name, std::string_view value) {
  out.append(name).append(": ").append(OneLine(value)).append("\n");
}

// The lines every citizen statement about an existing case starts with.
std::string Preamble(std::string_view action, const ControlHeader& h, const CitizenSignature& c) {
  std::string out(kStatementHeader);
  Line(out, "handeling", action);
  Line(out, "zaak", CaseIdToHex(h.case_id));
  Line(out, "na", ToHex(c.heads));
  Line(out, "sleutel", ToHex(c.key));
  Line(out, "nonce", ToHex(c.nonce));
  return out;
}

}  // namespace

Hash HeadsDigest(std::vector<RecordId> parents) {
  std::sort(parents.begin(), parents.end());
  parents.erase(std::unique(parents.begin(), parents.end()), parents.end());
  Bytes all;
  all.reserve(parents.size() * kHashBytes);
  for (const RecordId& p : parents) all.insert(all.end(), p.begin(), p.end());
  return HashParts("kring/citizen/heads/v1", {all});
}

std::string EnrolmentStatement(const CaseId& case_id, const Hash& invitation, const SignPublicKey& key) {
  std::string out(kStatementHeader);
  Line(out, "handeling", "sleutel koppelen");
  Line(out, "zaak", CaseIdToHex(case_id));
  Line(out, "uitnodiging", ToHex(invitation));
  Line(out, "sleutel", ToHex(key));
  return out;
}

Hash InvitationHash(std::string_view code) {
  return HashParts("kring/citizen/invitation/v1", {ByteSpan(reinterpret_cast<const uint8_t*>(code.data()), code.size())});
}

Result<std::string> CitizenStatement(const ControlRecord& r) {
  if (const auto* c = std::get_if<ConsentGrant>(&r.body); c && c->evidence_kind == kEvidenceCitizenSigned) {
    std::string out = Preamble("toestemming geven", c->h, c->citizen);
    Line(out, "organisatie", c->grantee.v);
    std::string domains;
    for (const auto& d : c->domains.v) domains += (domains.empty() ? "" : ",") + d.v;
    Line(out, "levensgebieden", domains);
    Line(out, "doel", c->purpose.v);
    Line(out, "grondslag", c->basis.v);
    Line(out, "geldig vanaf", std::to_string(c->valid_from_ms));
    Line(out, "geldig tot", std::to_string(c->valid_until_ms));
    Line(out, "gegeven door", c->given_by.v);
    return out;
  }
  if (const auto* w = std::get_if<ConsentWithdrawal>(&r.body); w && w->citizen_signed()) {
    std::string out = Preamble("toestemming intrekken", w->h, w->citizen);
    Line(out, "toestemming", ToHex(w->consent));
    return out;
  }
  if (const auto* k = std::get_if<CitizenKeyRevocation>(&r.body); k && k->evidence_kind == kEvidenceCitizenSigned) {
    std::string out = Preamble("sleutel intrekken", k->h, k->citizen);
    Line(out, "ingetrokken sleutel", ToHex(k->key));
    return out;
  }
  return Status::InvalidArgument("the record carries no citizen signature");
}

bool IsLifeDomain(std::string_view s) {
  return std::any_of(std::begin(kLifeDomains), std::end(kLifeDomains), [&](const char* d) { return s == d; });
}

CaseId CaseIdFor(std::string_view creator, const std::array<uint8_t, 16>& nonce) {
  Hash h = HashParts("kring/case/v1", {ByteSpan(reinterpret_cast<const uint8_t*>(creator.data()), creator.size()), nonce});
  CaseId id;
  std::copy_n(h.begin(), id.size(), id.begin());
  return id;
}

RecordType ControlRecord::type() const {
  return std::visit([](const auto& b) { return TypeOf<std::decay_t<decltype(b)>>(); }, body);
}

const ControlHeader& ControlRecord::header() const {
  return std::visit([](const auto& b) -> const ControlHeader& { return b.h; }, body);
}

RecordId ControlRecord::Id() const {
  uint8_t t = static_cast<uint8_t>(type());
  Bytes b = EncodeBody(body);
  return HashParts(kControlContext, {ByteSpan(&t, 1), b});
}

Result<ControlRecord> SignControl(ControlBody body, const NodeIdentity& author) {
  ControlRecord r{std::move(body), {}};
  if (r.header().author.v != author.pub.org) return Status::InvalidArgument("record author is not the signer");
  Status st = std::visit([](const auto& b) {
    Status s = CheckHeader(b.h);
    return s.ok() ? CheckBody(b) : s;
  }, r.body);
  if (!st.ok()) return Status::InvalidArgument(st.message());
  try {
    r.signature = Sign(kControlContext, r.Id(), author.sign_sk);  // Id() encodes, which throws past a field's limit
  } catch (const WireError& e) {
    return Status::ResourceExhausted(std::string("record does not fit the wire format: ") + e.what());
  }
  return r;
}

Status VerifyControl(const ControlRecord& r, const SignPublicKey& author_pk) {
  KRING_RETURN_IF_ERROR(std::visit([](const auto& b) {
    Status s = CheckHeader(b.h);
    return s.ok() ? CheckBody(b) : s;
  }, r.body));
  if (!Verify(kControlContext, r.Id(), r.signature, author_pk))
    return Status::Corruption("signature does not verify with the author's key");
  return Status::Ok();
}

namespace {
// The signed body and its signature, as Cereal sees them.
template <class T>
struct Signed {
  T body;
  Signature signature{};
  template <class A>
  void serialize(A& ar) { ar(body, signature); }
};

template <class T>
Result<ControlRecord> DecodeAs(ByteSpan in) {
  Signed<T> s;
  KRING_RETURN_IF_ERROR(Decode(in, &s));
  return ControlRecord{ControlBody(std::move(s.body)), s.signature};
}
}  // namespace

Bytes EncodeControlRecord(const ControlRecord& r) {
  Bytes out{static_cast<uint8_t>(r.type())};
  Bytes enc = std::visit([&](const auto& b) {
    using T = std::decay_t<decltype(b)>;
    return Encode(Signed<T>{b, r.signature});
  }, r.body);
  out.insert(out.end(), enc.begin(), enc.end());
  return out;
}

Result<ControlRecord> DecodeControlRecord(ByteSpan record) {
  if (record.empty()) return Status::Corruption("empty record");
  ByteSpan rest = record.subspan(1);
  switch (static_cast<RecordType>(record[0])) {
    case RecordType::kCaseGenesis: return DecodeAs<CaseGenesis>(rest);
    case RecordType::kConsentGrant: return DecodeAs<ConsentGrant>(rest);
    case RecordType::kConsentWithdrawal: return DecodeAs<ConsentWithdrawal>(rest);
    case RecordType::kRegieChange: return DecodeAs<RegieChange>(rest);
    case RecordType::kKeyGrant: return DecodeAs<KeyGrant>(rest);
    case RecordType::kCitizenKey: return DecodeAs<CitizenKey>(rest);
    case RecordType::kCitizenKeyRevocation: return DecodeAs<CitizenKeyRevocation>(rest);
    case RecordType::kCaseClose: return DecodeAs<CaseClose>(rest);
    case RecordType::kCaseReopen: return DecodeAs<CaseReopen>(rest);
    case RecordType::kErasureRequest: return DecodeAs<ErasureRequest>(rest);
    case RecordType::kErasureAnswer: return DecodeAs<ErasureAnswer>(rest);
    case RecordType::kFragment:
    case RecordType::kAccessRecord:
    case RecordType::kCheckpoint:
    case RecordType::kRoster:
    case RecordType::kKeyRotation: break;
  }
  return Status::Corruption("not a control record type: " + std::to_string(record[0]));
}

}  // namespace kring
