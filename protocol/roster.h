// The network roster and key rotation statements: signed documents that say who the network's members are and which keys speak for them.
//
// A roster version lists the member organisations (their cards and sync
// endpoints), its stewards (some of the members) and a threshold k:
//   id        = BLAKE2b-256("kring/roster/v1" || encode(body))
//   signature = Ed25519(steward, "kring/roster/v1" || id), one per steward
// travelling as [RecordType::kRoster][encode(Roster)]. Whether a version may
// follow another is decided in consent/network.h, not here.
//
// A rotation statement is an organisation's own word that its keys change:
//   id        = BLAKE2b-256("kring/rotation/v1" || encode(body))
//   old_signature = Ed25519(old sign key, "kring/rotation/v1" || id)
//   new_signature = Ed25519(new sign key, "kring/rotation/v1" || id)
// travelling as [RecordType::kKeyRotation][encode(KeyRotation)].
// Grammar of both: docs/protocol.md ("Network roster", "Key rotation").
#pragma once

#include <cstdint>
#include <string>

#include "crypto/identity.h"
#include "protocol/fragment.h"
#include "protocol/messages.h"
#include "protocol/records.h"
#include "protocol/wire.h"

namespace kring {

inline constexpr uint8_t kRosterFormat = 1;
inline constexpr size_t kMaxNetworkNameBytes = 128;
inline constexpr size_t kMaxEndpointBytes = 255;
inline constexpr size_t kMaxDisplayNameBytes = 128;
inline constexpr size_t kMaxRosterMembers = 128;
inline constexpr size_t kMaxStewards = 32;
inline constexpr size_t kMaxRosterJsonBytes = 256 * 1024;
// org (1+2), name (1+1), three keys, endpoint (1+1), keys_from_ms.
inline constexpr size_t kMinRosterMemberBytes = 3 + 2 + 3 * 32 + 2 + 8;

// tcp://HOST:PORT with a port in 1..65535 and a host of name or address characters.
bool IsValidSyncEndpoint(std::string_view endpoint);

struct RosterMember {
  BoundedString<kMaxOrgBytes> org;
  BoundedString<kMaxDisplayNameBytes> name;
  SignPublicKey sign_pk{};
  BoxPublicKey box_pk{};
  BoxPublicKey transport_pk{};
  BoundedString<kMaxEndpointBytes> endpoint;
  // From when these keys speak for the organisation (Unix ms); 0: from the
  // start. A later version that changes the keys sets it to the moment the
  // old keys stop counting (an emergency rotation).
  int64_t keys_from_ms = 0;
  template <class A>
  void serialize(A& ar) { ar(org, name, sign_pk, box_pk, transport_pk, endpoint, keys_from_ms); }

  PublicIdentity Identity() const;
};

struct RosterBody {
  uint8_t format = kRosterFormat;
  BoundedString<kMaxNetworkNameBytes> network;
  uint32_t version = 1;
  Hash previous{};      // id of the version this one follows; zeros for version 1
  int64_t issued_ms = 0;
  uint8_t threshold = 1;  // k: signatures of this version's stewards the next version needs
  BoundedVector<BoundedString<kMaxOrgBytes>, kMaxStewards, 3, uint8_t> stewards;
  BoundedVector<RosterMember, kMaxRosterMembers, kMinRosterMemberBytes, uint8_t> members;
  template <class A>
  void serialize(A& ar) { ar(format, network, version, previous, issued_ms, threshold, stewards, members); }

  const RosterMember* Member(std::string_view org) const;
  bool IsSteward(std::string_view org) const;
};

struct RosterSignature {
  BoundedString<kMaxOrgBytes> org;
  Signature signature{};
  template <class A>
  void serialize(A& ar) { ar(org, signature); }
};

struct Roster {
  RosterBody body;
  BoundedVector<RosterSignature, kMaxStewards, 3 + kSignatureBytes, uint8_t> signatures;
  template <class A>
  void serialize(A& ar) { ar(body, signatures); }

  Hash Id() const;
  // Whether `org` signed it with `pk` (a signature by another key of the same org does not count).
  bool SignedBy(std::string_view org, const SignPublicKey& pk) const;
};

// Structure only: format, names, slugs, endpoints, unique members and keys,
// stewards among the members, 1 <= threshold <= stewards, version 1 exactly
// when previous is zeros. Corruption with the reason.
Status CheckRosterShape(const RosterBody& b);
// Adds (or replaces) `signer`'s signature. InvalidArgument if the signer is
// not a member of the version it signs, or signs with keys the version does not list for it.
Status SignRoster(Roster* r, const NodeIdentity& signer);
Bytes EncodeRoster(const Roster& r);
// Length, type byte, bounded body, nothing left over, CheckRosterShape.
// Does not verify signatures. Never throws.
Result<Roster> DecodeRoster(ByteSpan record);

// The JSON form people pass around to sign and join (docs/operations.md):
// the body's fields, member cards with fingerprints, the id, and signatures.
std::string RosterToJson(const Roster& r);
// InvalidArgument naming the field; checks the shape; ignores the
// informational "id" and "fingerprint" fields.
Result<Roster> RosterFromJson(std::string_view json);

inline constexpr uint8_t kRotationFormat = 1;
// type, format, org length and a 2-byte org, hlc, switch time, six keys, two signatures.
inline constexpr size_t kRotationBytes = 1 + 1 + 1 + 2 + 8 + 8 + 6 * 32 + 2 * kSignatureBytes;

struct KeyRotationBody {
  uint8_t format = kRotationFormat;
  BoundedString<kMaxOrgBytes> org;
  HlcTimestamp hlc = 0;  // when it was signed; orders it among the org's records
  // From this moment (Unix ms) the new keys speak for the organisation and
  // the old ones no longer do: records dated from then on must be signed
  // with the new key, connections use the new transport key.
  int64_t switch_ms = 0;
  SignPublicKey old_sign_pk{};
  BoxPublicKey old_box_pk{};
  BoxPublicKey old_transport_pk{};
  SignPublicKey new_sign_pk{};
  BoxPublicKey new_box_pk{};
  BoxPublicKey new_transport_pk{};
  template <class A>
  void serialize(A& ar) {
    ar(format, org, hlc, switch_ms, old_sign_pk, old_box_pk, old_transport_pk, new_sign_pk, new_box_pk, new_transport_pk);
  }
};

struct KeyRotation {
  KeyRotationBody body;
  Signature old_signature{};
  Signature new_signature{};
  template <class A>
  void serialize(A& ar) { ar(body, old_signature, new_signature); }
  RecordId Id() const;
};

// Signs a rotation from `old_id` to `new_id` (same organisation), switching at `switch_ms`.
Result<KeyRotation> SignKeyRotation(const NodeIdentity& old_id, const NodeIdentity& new_id, HlcTimestamp hlc,
                                    int64_t switch_ms);
// Shape (format, slug, old and new keys differ) and both signatures.
Status VerifyKeyRotation(const KeyRotation& r);
Bytes EncodeKeyRotation(const KeyRotation& r);
Result<KeyRotation> DecodeKeyRotation(ByteSpan record);

}  // namespace kring
