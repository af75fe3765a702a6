// Plan fragments: signed by their author organisation, body end-to-end encrypted to named recipients.
//
// A fragment is immutable. Its id is the BLAKE2b-256 hash of its encoded
// header and ciphertext; the author signs the id with Ed25519. The body is
// encrypted with a fresh XChaCha20-Poly1305 key, with the encoded header as
// associated data, and that key is sealed to each recipient organisation's
// X25519 key (the author always being one). Wire grammar: docs/protocol.md.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "crypto/identity.h"
#include "crypto/sodium.h"
#include "crypto/status.h"
#include "protocol/hlc.h"
#include "protocol/wire.h"

namespace kring {

inline constexpr size_t kCaseIdBytes = 16;
using CaseId = std::array<uint8_t, kCaseIdBytes>;  // random; never derived from a BSN
using FragmentId = Hash;

inline constexpr uint8_t kFragmentFormat = 1;
inline constexpr size_t kMaxOrgBytes = 64;
inline constexpr size_t kMaxKindBytes = 32;
inline constexpr size_t kMaxDomainBytes = 32;
inline constexpr size_t kMaxPredecessors = 16;
inline constexpr size_t kMaxRecipients = 64;
inline constexpr size_t kMaxBodyBytes = 256 * 1024;  // plaintext of one fragment
inline constexpr size_t kMaxCiphertextBytes = kMaxBodyBytes + kAeadTagBytes;
// Smallest encodings, used to check a count against the bytes left.
inline constexpr size_t kMinRecipientBytes = 1 + 2 + kSealedKeyBytes;

struct Recipient {
  BoundedString<kMaxOrgBytes> org;
  SealedKey sealed_key{};
  template <class A>
  void serialize(A& ar) { ar(org, sealed_key); }
};

struct FragmentHeader {
  uint8_t format = kFragmentFormat;
  CaseId case_id{};
  BoundedString<kMaxOrgBytes> author;
  BoundedString<kMaxKindBytes> kind;
  BoundedString<kMaxDomainBytes> domain;  // may be empty where no life domain applies
  HlcTimestamp hlc = 0;
  // The plan item this version belongs to: all zeros for an item's first
  // version (whose own id is then the item id), else that first version's id.
  FragmentId item{};
  // The versions this one supersedes; empty exactly when item is all zeros.
  BoundedVector<FragmentId, kMaxPredecessors, kHashBytes, uint8_t> predecessors;
  BoundedVector<Recipient, kMaxRecipients, kMinRecipientBytes, uint8_t> recipients;  // sorted by org
  Nonce nonce{};
  template <class A>
  void serialize(A& ar) { ar(format, case_id, author, kind, domain, hlc, item, predecessors, recipients, nonce); }
};

struct Fragment {
  FragmentHeader header;
  BoundedBytes<kMaxCiphertextBytes> ciphertext;
  Signature signature{};
  template <class A>
  void serialize(A& ar) { ar(header, ciphertext, signature); }

  // The content id: BLAKE2b-256 over the encoded header and the ciphertext.
  FragmentId Id() const;
  // The item id: header.item, or Id() for a first version.
  FragmentId ItemId() const;
  bool IsRecipient(std::string_view org) const;
};

// What an author wants to write.
struct FragmentDraft {
  CaseId case_id{};
  std::string kind;
  std::string domain;
  HlcTimestamp hlc = 0;
  FragmentId item{};  // zeros for a new item
  std::vector<FragmentId> predecessors;
  Bytes body;
  std::vector<PublicIdentity> recipients;  // the author is added if absent
};

// Encrypts, seals and signs a draft. InvalidArgument on a bad kind, domain,
// size or recipient; the plaintext never leaves this function unencrypted.
Result<Fragment> SealFragment(const FragmentDraft& draft, const NodeIdentity& author);

// Structural checks a receiver makes before anything else: format, slugs,
// author among the recipients, recipients sorted and unique.
Status ValidateFragmentHeader(const FragmentHeader& h);

// Checks structure and that `author_pk` signed this fragment's id.
Status VerifyFragment(const Fragment& f, const SignPublicKey& author_pk);
// The same, for a caller that has just computed `id` = f.Id() (hashing a
// 4 KB fragment costs a tenth of verifying it).
Status VerifyFragmentWithId(const Fragment& f, const FragmentId& id, const SignPublicKey& author_pk);

// Opens the body for `me`. PermissionDenied if `me` is not a recipient,
// Corruption if the sealed key or the ciphertext does not authenticate.
Result<Bytes> OpenFragment(const Fragment& f, const NodeIdentity& me);

// Recovers the content key from `sealed` (a recipient entry or a later key
// grant to `me`). Corruption if it does not open.
Status OpenContentKey(const SealedKey& sealed, const NodeIdentity& me, ContentKey* key);
// The sealed key `me` finds among the recipients, if any.
const SealedKey* SealedKeyFor(const Fragment& f, std::string_view org);
// Decrypts the body with a known content key. Corruption if it does not authenticate.
Result<Bytes> DecryptFragment(const Fragment& f, const ContentKey& key);

// A lower-case slug [a-z0-9-]{1,max}: kinds and life domains.
bool IsValidSlug(std::string_view s, size_t max);

std::string CaseIdToHex(const CaseId& id);
bool CaseIdFromHex(std::string_view hex, CaseId* out);
CaseId NewCaseId();

}  // namespace kring
