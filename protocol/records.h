// Control records: the signed, cleartext records that decide who may see a case (genesis, consent, regie, key grants).
//
// Unlike fragments these carry no plan content, so every node that must
// enforce them can read them. Each is signed by its author organisation:
//   id        = BLAKE2b-256("kring/control/v1" || type || encode(body))
//   signature = Ed25519(author, "kring/control/v1" || id)
// and travels as [RecordType][encode(ControlRecord)]. Grammar: docs/protocol.md.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "crypto/identity.h"
#include "protocol/fragment.h"
#include "protocol/messages.h"
#include "protocol/period.h"
#include "protocol/wire.h"

namespace kring {

using RecordId = Hash;

inline constexpr size_t kMaxConsentDomains = 14;  // the 13 ZRM domains or "*"
inline constexpr size_t kMaxPurposeBytes = 1000;
inline constexpr size_t kMaxBasisBytes = 1000;
inline constexpr size_t kMaxReferenceBytes = 200;
inline constexpr size_t kMaxPersonNameBytes = 128;
inline constexpr size_t kMaxCausalParents = 16;
inline constexpr size_t kCitizenNonceBytes = 16;

// Control header formats. A withdrawal in format 2 carries the citizen's
// signature after its body; every other record is format 1.
inline constexpr uint8_t kControlFormat = 1;
inline constexpr uint8_t kControlFormatCitizenSigned = 2;

// Evidence kinds of a consent (and of a key revocation).
inline constexpr uint8_t kEvidenceAttested = 1;       // recorded by a professional; the signed form is on file
inline constexpr uint8_t kEvidenceCitizenSigned = 2;  // signed by the citizen's own enrolled key

// The citizen's signature on a record (evidence kind 2): Ed25519 by an
// enrolled citizen key over CitizenStatement(record), pure (as Web Crypto
// signs; the statement names its own context in its first line).
struct CitizenSignature {
  RecordId key{};  // the CitizenKey record that enrolled the signing key
  std::array<uint8_t, kCitizenNonceBytes> nonce{};  // fresh per statement, drawn by the citizen's device
  // HeadsDigest of the case's control records the citizen signed against;
  // must equal HeadsDigest(record's parents), so a statement signed once
  // cannot be carried into a later record (docs/consent.md, "Citizen-signed consent").
  Hash heads{};
  Signature signature{};
  template <class A>
  void serialize(A& ar) { ar(key, nonce, heads, signature); }
};

// Fields every control record has.
struct ControlHeader {
  uint8_t format = 1;
  CaseId case_id{};
  BoundedString<kMaxOrgBytes> author;
  HlcTimestamp hlc = 0;
  // Control records of the same case the author had seen and this one
  // follows (the heads of what it knew): the causal order that decides
  // races between consents, withdrawals and regie changes.
  BoundedVector<RecordId, kMaxCausalParents, kHashBytes, uint8_t> parents;
  template <class A>
  void serialize(A& ar) { ar(format, case_id, author, hlc, parents); }
};

// Opens a case. The case id is bound to its creator:
// case_id = first 16 bytes of BLAKE2b("kring/case/v1" || creator || nonce),
// so nobody else can claim to have opened it. The creator holds regie first.
struct CaseGenesis {
  ControlHeader h;
  std::array<uint8_t, 16> nonce{};
  template <class A>
  void serialize(A& ar) { ar(h, nonce); }
};

// The citizen's consent for one organisation, recorded by the regie organisation.
struct ConsentGrant {
  ControlHeader h;
  BoundedString<kMaxOrgBytes> grantee;
  BoundedVector<BoundedString<kMaxDomainBytes>, kMaxConsentDomains, 1, uint8_t> domains;  // sorted, unique; "*" = all
  BoundedString<kMaxPurposeBytes, uint16_t> purpose;  // "doel"
  BoundedString<kMaxBasisBytes, uint16_t> basis;      // "grondslag"
  int64_t valid_from_ms = 0;
  int64_t valid_until_ms = 0;                         // 0: open-ended
  BoundedString<kMaxReferenceBytes> given_by;         // pseudonymous: the citizen or a representative
  uint8_t evidence_kind = kEvidenceAttested;          // kEvidenceAttested or kEvidenceCitizenSigned
  BoundedString<kMaxReferenceBytes> evidence_reference;  // attested: the signed form; citizen-signed: may be empty
  CitizenSignature citizen;                           // on the wire only when citizen-signed
  template <class A>
  void serialize(A& ar) {
    ar(h, grantee, domains, purpose, basis, valid_from_ms, valid_until_ms, given_by, evidence_kind, evidence_reference);
    if (evidence_kind == kEvidenceCitizenSigned) ar(citizen);
  }
};

// Ends a consent: by the regie organisation, by the grantee declining, or
// (format 2) by the citizen, relayed by any organisation involved in the case.
struct ConsentWithdrawal {
  ControlHeader h;
  RecordId consent{};
  uint8_t evidence_kind = 0;  // format 2 only: kEvidenceCitizenSigned
  CitizenSignature citizen;   // format 2 only
  bool citizen_signed() const { return h.format == kControlFormatCitizenSigned; }
  template <class A>
  void serialize(A& ar) {
    ar(h, consent);
    if (h.format == kControlFormatCitizenSigned) ar(evidence_kind, citizen);
  }
};

// Who holds regie: the organisation and the person there. Only the current
// regie organisation may write one (a new person, or handing regie over).
struct RegieChange {
  ControlHeader h;
  BoundedString<kMaxOrgBytes> regie;
  BoundedString<kMaxPersonNameBytes> person;
  template <class A>
  void serialize(A& ar) { ar(h, regie, person); }
};

// A fragment's content key sealed to an organisation granted access after the
// fragment was written (late grant), by an organisation that holds the key.
struct KeyGrant {
  ControlHeader h;
  FragmentId fragment{};
  BoundedString<kMaxOrgBytes> grantee;
  SealedKey sealed_key{};
  template <class A>
  void serialize(A& ar) { ar(h, fragment, grantee, sealed_key); }
};

// Binds a citizen's public key to the case, written by the regie organisation
// when the citizen enrolled with a one-time invitation. The citizen proved
// possession of the key by signing EnrolmentStatement(case, invitation, key).
struct CitizenKey {
  ControlHeader h;
  SignPublicKey key{};
  BoundedString<kMaxReferenceBytes> given_by;  // pseudonymous: the citizen or a representative
  Hash invitation{};                           // InvitationHash(code): the code itself is never stored
  Signature possession{};
  template <class A>
  void serialize(A& ar) { ar(h, key, given_by, invitation, possession); }
};

// Ends a citizen key (a lost phone): by the regie organisation (attested,
// with a reference to what it acted on), or signed by the citizen with
// another (or the same) enrolled key.
struct CitizenKeyRevocation {
  ControlHeader h;
  RecordId key{};  // the CitizenKey record
  uint8_t evidence_kind = kEvidenceAttested;
  BoundedString<kMaxReferenceBytes> evidence_reference;  // attested: required
  CitizenSignature citizen;                              // on the wire only when citizen-signed
  template <class A>
  void serialize(A& ar) {
    ar(h, key, evidence_kind, evidence_reference);
    if (evidence_kind == kEvidenceCitizenSigned) ar(citizen);
  }
};

// Why a case ends (docs/retention.md); the slugs are stable, used in the API.
inline constexpr const char* kCloseReasons[] = {"goals-reached", "moved", "declined", "withdrawn-request", "deceased", "other"};
bool IsCloseReason(std::string_view s);
inline constexpr size_t kMaxCloseReasonBytes = 32;
inline constexpr size_t kMaxRetentionRuleBytes = 200;

// Ends a case, written by the regie organisation: from its time on the case
// is read-only (no new items, consents, citizen keys or regie changes) and
// every node starts its retention clock. It carries the closing
// organisation's retention rule for what it wrote in this case, so that
// copy holders know the author's limit (docs/retention.md).
struct CaseClose {
  ControlHeader h;
  BoundedString<kMaxCloseReasonBytes> reason;  // one of kCloseReasons
  BoundedString<kMaxRetentionRuleBytes> rule;  // the name of the rule applied ("default", "Wmo 2015", ...)
  BoundedString<kMaxPeriodChars> retention;    // its period, an ISO 8601 duration (protocol/period.h)
  template <class A>
  void serialize(A& ar) { ar(h, reason, rule, retention); }
};

// Opens a closed case again, by the regie organisation; retention stops
// running until the next close.
struct CaseReopen {
  ControlHeader h;
  BoundedString<kMaxReferenceBytes> reason;  // free text, may be empty
  template <class A>
  void serialize(A& ar) { ar(h, reason); }
};

// The citizen's request to erase what the organisations hold of a closed
// case (AVG art. 17), recorded by the regie organisation. Every node that
// admits it erases what its organisation is not obliged by law to keep and
// answers with an ErasureAnswer, once; a later reopen brings nothing back.
struct ErasureRequest {
  ControlHeader h;
  BoundedString<kMaxReferenceBytes> reference;  // what the regie organisation acted on (the citizen's letter), never a BSN
  template <class A>
  void serialize(A& ar) { ar(h, reference); }
};

inline constexpr size_t kMaxErasureReasonBytes = 1000;

// A node's answer to an erasure request, for the regie organisation alone:
// how many records it erased and kept, and, when it kept any, the rule that
// obliges it (a retention rule marked as a legal duty).
struct ErasureAnswer {
  ControlHeader h;
  RecordId request{};
  uint32_t erased = 0;
  uint32_t kept = 0;
  BoundedString<kMaxRetentionRuleBytes> rule;            // the legal duty that kept them; empty when none was kept
  BoundedString<kMaxErasureReasonBytes, uint16_t> why;   // plain words, for the regie organisation's answer to the citizen
  template <class A>
  void serialize(A& ar) { ar(h, request, erased, kept, rule, why); }
};

using ControlBody = std::variant<CaseGenesis, ConsentGrant, ConsentWithdrawal, RegieChange, KeyGrant, CitizenKey,
                                 CitizenKeyRevocation, CaseClose, CaseReopen, ErasureRequest, ErasureAnswer>;

// A decoded, not yet verified control record.
struct ControlRecord {
  ControlBody body;
  Signature signature{};

  RecordType type() const;
  const ControlHeader& header() const;
  RecordId Id() const;
};

// Signs `body` as `author` (whose org must equal body's header author).
Result<ControlRecord> SignControl(ControlBody body, const NodeIdentity& author);
// Structural checks (slugs, sorted unique domains, sizes, format) and the
// author's signature. Does not decide whether the author was allowed to
// write it: that depends on the case's state (consent/).
Status VerifyControl(const ControlRecord& r, const SignPublicKey& author_pk);

// [RecordType][encode(body)][signature]
Bytes EncodeControlRecord(const ControlRecord& r);
Result<ControlRecord> DecodeControlRecord(ByteSpan record);

// --- the citizen's statements (docs/protocol.md, "Citizen statements") -----
// What the citizen signs: canonical UTF-8 text a person can read, one
// "name: value" line each, first line "kring burgerverklaring v1". Built from
// the record's own fields by every node alike.
// The digest of a set of causal parents (sorted, unique) a citizen signs against.
Hash HeadsDigest(std::vector<RecordId> parents);
// The statement for a citizen-signed consent grant, withdrawal (format 2) or
// key revocation; InvalidArgument for any other record.
Result<std::string> CitizenStatement(const ControlRecord& r);
// The statement a new device signs to prove it holds `key`.
std::string EnrolmentStatement(const CaseId& case_id, const Hash& invitation, const SignPublicKey& key);
// An invitation's hash: what the node stores and the CitizenKey record names.
Hash InvitationHash(std::string_view code);

// The case id a creator and nonce determine.
CaseId CaseIdFor(std::string_view creator, const std::array<uint8_t, 16>& nonce);

// The 13 ZRM life domains (ZRM 2017) as slugs.
inline constexpr const char* kLifeDomains[] = {
    "finances",     "work-education",  "daily-activities", "housing",        "domestic-relations",
    "mental-health", "physical-health", "substance-use",    "basic-adl",      "instrumental-adl",
    "social-network", "participation", "justice"};
bool IsLifeDomain(std::string_view s);

}  // namespace kring
