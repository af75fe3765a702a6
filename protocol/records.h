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
#include "protocol/wire.h"

namespace kring {

using RecordId = Hash;

inline constexpr size_t kMaxConsentDomains = 14;  // the 13 ZRM domains or "*"
inline constexpr size_t kMaxPurposeBytes = 1000;
inline constexpr size_t kMaxBasisBytes = 1000;
inline constexpr size_t kMaxReferenceBytes = 200;
inline constexpr size_t kMaxPersonNameBytes = 128;
inline constexpr size_t kMaxCausalParents = 16;

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
  uint8_t evidence_kind = 1;                          // 1 attested (by a professional, signed form on file)
  BoundedString<kMaxReferenceBytes> evidence_reference;
  template <class A>
  void serialize(A& ar) {
    ar(h, grantee, domains, purpose, basis, valid_from_ms, valid_until_ms, given_by, evidence_kind, evidence_reference);
  }
};

// Ends a consent: by the regie organisation, or by the grantee declining.
struct ConsentWithdrawal {
  ControlHeader h;
  RecordId consent{};
  template <class A>
  void serialize(A& ar) { ar(h, consent); }
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

using ControlBody = std::variant<CaseGenesis, ConsentGrant, ConsentWithdrawal, RegieChange, KeyGrant>;

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

// The case id a creator and nonce determine.
CaseId CaseIdFor(std::string_view creator, const std::array<uint8_t, 16>& nonce);

// The 13 ZRM life domains (ZRM 2017) as slugs.
inline constexpr const char* kLifeDomains[] = {
    "finances",     "work-education",  "daily-activities", "housing",        "domestic-relations",
    "mental-health", "physical-health", "substance-use",    "basic-adl",      "instrumental-adl",
    "social-network", "participation", "justice"};
bool IsLifeDomain(std::string_view s);

}  // namespace kring
