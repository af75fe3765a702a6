// The node-to-node messages: one ZeroMQ frame each, a version and type byte followed by a bounded body.
#pragma once

#include <cstdint>
#include <variant>

#include "protocol/fragment.h"
#include "protocol/wire.h"

namespace kring {

inline constexpr uint8_t kProtocolVersion = 2;  // 2: reconcile bodies with pushed ids, keyed fingerprints
// The largest frame a node accepts; also set as ZMQ_MAXMSGSIZE on every socket,
// so a bigger frame is dropped by libzmq before it is ever buffered whole.
inline constexpr size_t kMaxFrameBytes = 4 * 1024 * 1024;
inline constexpr size_t kMaxRecordBytes = kMaxCiphertextBytes + 16 * 1024;
inline constexpr size_t kMaxRecordsPerPush = 512;
inline constexpr size_t kMaxIdsPerWant = 4096;
inline constexpr size_t kMaxReconcileBytes = 256 * 1024;

enum class MessageType : uint8_t {
  kPush = 1,       // records the receiver is entitled to
  kReconcile = 2,  // one step of range-based set reconciliation
  kWant = 3,       // ids the sender lacks and asks the receiver to push
};

// A stored record as it travels: a type byte and its encoding.
enum class RecordType : uint8_t {
  kFragment = 1,
  kCaseGenesis = 2,
  kConsentGrant = 3,
  kConsentWithdrawal = 4,
  kRegieChange = 5,
  kKeyGrant = 6,
  kAccessRecord = 7,  // protocol/access_record.h
  kCheckpoint = 8,    // protocol/checkpoint.h
  // 8 is taken by access-log checkpoints (another change); the citizen's records follow it.
  kCitizenKey = 9,            // protocol/records.h: a citizen's public key bound to a case
  kCitizenKeyRevocation = 10, // protocol/records.h: that key no longer speaks for the citizen
  kRoster = 11,               // protocol/roster.h: a version of the network's member list
  kKeyRotation = 12,          // protocol/roster.h: an organisation's keys change
  kCaseClose = 13,   // protocol/records.h: the regie organisation ends the case; retention starts
  kCaseReopen = 14,  // protocol/records.h: the regie organisation opens a closed case again
  kErasureRequest = 15,  // protocol/records.h: the citizen asked for erasure (AVG art. 17), recorded by the regie organisation
  kErasureAnswer = 16,   // protocol/records.h: what a node erased of the case and what it kept, and why
};

struct PushMessage {
  BoundedVector<BoundedBytes<kMaxRecordBytes>, kMaxRecordsPerPush, 4> records;  // 4: a record's length prefix
  template <class A>
  void serialize(A& ar) { ar(records); }
};

struct WantMessage {
  BoundedVector<Hash, kMaxIdsPerWant, kHashBytes> ids;
  template <class A>
  void serialize(A& ar) { ar(ids); }
};

struct ReconcileMessage {
  uint64_t session = 0;  // chosen by the initiator; a reply carries it back
  uint8_t initiator = 0; // 1 when sent by the session's initiator
  BoundedBytes<kMaxReconcileBytes> body;  // see protocol/reconcile.h
  template <class A>
  void serialize(A& ar) { ar(session, initiator, body); }
};

using Message = std::variant<PushMessage, ReconcileMessage, WantMessage>;

// Frames a message: [version][type][body].
Bytes EncodeMessage(const Message& m);

// Decodes one frame in the fixed order: minimum length, maximum length,
// version, type, bounded body, nothing left over. Never throws.
Result<Message> DecodeMessage(ByteSpan frame);

// A record on the wire: [RecordType][encoding].
Bytes EncodeFragmentRecord(const Fragment& f);
// Corruption for unknown record types or undecodable bytes.
Result<Fragment> DecodeFragmentRecord(ByteSpan record);

}  // namespace kring
