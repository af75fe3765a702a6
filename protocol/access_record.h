// Access-log records: one organisation's NEN 7513 entry about a case, signed and sent to the case's regie organisation.
//
// The citizen asks the regie organisation who looked at their plan; each
// organisation keeps its own log and sends the regie organisation a signed
// copy of every entry about the case. No plan content: ids only.
//   id        = BLAKE2b-256("kring/access/v1" || encode(body))
//   signature = Ed25519(author, "kring/access/v1" || id)
// Travels as [RecordType::kAccessRecord][encode(body)][signature].
#pragma once

#include <array>
#include <string>

#include "crypto/identity.h"
#include "protocol/fragment.h"
#include "protocol/messages.h"
#include "protocol/records.h"
#include "protocol/wire.h"

namespace kring {

inline constexpr size_t kMaxAccessItems = 1024;

struct AccessRecordBody {
  uint8_t format = 1;
  CaseId case_id{};
  BoundedString<kMaxOrgBytes> author;  // the organisation whose node served the call
  HlcTimestamp hlc = 0;
  std::array<uint8_t, 16> event_id{};
  int64_t time_ms = 0;
  BoundedString<32> action;
  BoundedString<16> outcome;
  BoundedString<128> actor_id;
  BoundedString<200> actor_name;
  BoundedString<100> actor_role;
  BoundedString<200> on_behalf_of;
  BoundedString<kMaxOrgBytes> client;
  BoundedVector<BoundedString<64>, kMaxAccessItems, 1> items;
  BoundedString<4096, uint16_t> consent;
  template <class A>
  void serialize(A& ar) {
    ar(format, case_id, author, hlc, event_id, time_ms, action, outcome, actor_id, actor_name, actor_role,
       on_behalf_of, client, items, consent);
  }
};

struct AccessRecord {
  AccessRecordBody body;
  Signature signature{};
  template <class A>
  void serialize(A& ar) { ar(body, signature); }
  RecordId Id() const;
};

Result<AccessRecord> SignAccessRecord(AccessRecordBody body, const NodeIdentity& author);
// Structure (format, slugs, action and outcome known) and the author's signature.
Status VerifyAccessRecord(const AccessRecord& r, const SignPublicKey& author_pk);
Bytes EncodeAccessRecord(const AccessRecord& r);
Result<AccessRecord> DecodeAccessRecord(ByteSpan record);

}  // namespace kring
