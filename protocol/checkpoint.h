// Access-log checkpoints: an organisation's signed statement "my access log had N entries ending in hash H".
//
// A node signs one periodically and at clean shutdown, keeps every one it
// signed, and sends the latest to each partner, which keeps the latest of
// every organisation. `kring-node audit verify` checks the chain against
// them: a log rewritten or truncated after a checkpoint no longer matches it.
//   id        = BLAKE2b-256("kring/checkpoint/v1" || encode(body))
//   signature = Ed25519(org, "kring/checkpoint/v1" || id)
// Travels as [RecordType::kCheckpoint][encode(body)][signature]; grammar in
// docs/protocol.md ("Checkpoint").
#pragma once

#include <cstdint>

#include "crypto/identity.h"
#include "protocol/fragment.h"
#include "protocol/messages.h"
#include "protocol/records.h"
#include "protocol/wire.h"

namespace kring {

inline constexpr uint8_t kCheckpointFormat = 1;
inline constexpr size_t kMinOrgBytes = 2;  // IsValidOrgSlug: [a-z0-9-]{2,64}
// type, format, org length, then hlc, time, restores, entries, head, signature.
inline constexpr size_t kCheckpointFixedBytes = 1 + 1 + 1 + 8 + 8 + 4 + 8 + kHashBytes + kSignatureBytes;
inline constexpr size_t kCheckpointMinBytes = kCheckpointFixedBytes + kMinOrgBytes;  // 129
inline constexpr size_t kCheckpointMaxBytes = kCheckpointFixedBytes + kMaxOrgBytes;  // 191
static_assert(kCheckpointMinBytes == 129 && kCheckpointMaxBytes == 191, "docs/protocol.md names these sizes");

struct CheckpointBody {
  uint8_t format = kCheckpointFormat;
  BoundedString<kMaxOrgBytes> org;  // whose access log; also the signer
  HlcTimestamp hlc = 0;              // orders an organisation's checkpoints
  int64_t time_ms = 0;               // when it was signed (Unix ms)
  uint32_t restores = 0;             // how often this log was restored from a backup before
  uint64_t entries = 0;              // the log's length: the last entry's seq
  Hash head{};                       // that entry's hash; all zeros when entries is 0
  template <class A>
  void serialize(A& ar) { ar(format, org, hlc, time_ms, restores, entries, head); }
};

struct Checkpoint {
  CheckpointBody body;
  Signature signature{};
  template <class A>
  void serialize(A& ar) { ar(body, signature); }
  RecordId Id() const;
};

// InvalidArgument if `body` is malformed or its org is not the signer's.
Result<Checkpoint> SignCheckpoint(CheckpointBody body, const NodeIdentity& signer);
// Structure (format, slug, head zero exactly when entries is 0) and signature.
Status VerifyCheckpoint(const Checkpoint& c, const SignPublicKey& org_pk);
Bytes EncodeCheckpoint(const Checkpoint& c);
// In order: length within [kCheckpointMinBytes, kCheckpointMaxBytes], type
// byte, bounded body, nothing left over. Corruption with the reason; never throws.
// Does not verify the signature.
Result<Checkpoint> DecodeCheckpoint(ByteSpan record);

}  // namespace kring
