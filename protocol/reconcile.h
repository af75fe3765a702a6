// Range-based set reconciliation (after Negentropy): which records a peer holds that we lack, and the reverse.
//
// Each side holds a sorted set of item keys (hlc, id). The initiator sends a
// fingerprint of the whole key space; the responder answers each range it is
// sent: settled, its ids, its sum (which, when the range differs by exactly
// one item, *is* that item's id), or a split into sub-ranges with their own
// fingerprints. The initiator answers those the same way, one level deeper
// each message, until nothing is left unsettled. The responder keeps no
// state between messages; only the initiator learns what differs.
//
// Wire format of a body (the `body` of ReconcileMessage; also in docs/protocol.md):
//
//   body        = 1*range               ; bounds strictly increasing; the last bound is +infinity,
//                                       ; so every message covers the whole key space
//   range       = bound tag payload     ; the range [previous bound, bound); the first range starts
//                                       ; at the smallest key (hlc 0, id 32 zero bytes)
//   bound       = %x80                  ; +infinity
//               / header magnitude [prefix]
//   header      = OCTET                 ; bit 7 clear; bits 0-5: shift z; bit 6: a prefix follows
//   magnitude   = varint                ; m: bound.hlc = previous bound.hlc + (m << z);
//                                       ; canonical: m odd, or m = 0 and z = 0; no overflow
//   prefix      = len len*OCTET         ; len 1..32, last octet non-zero; bound.id = prefix followed
//                                       ; by zeros (without a prefix: 32 zero bytes)
//   tag         = varint                ; (count << 3) | mode
//   payload     = mode 0 Skip          : count 0, empty. Settled. Never two Skips in a row.
//               / mode 1 Fingerprint   : count = the sender's items in the range; if count > 0,
//                                        kReconcileFingerprintBytes of fingerprint
//               / mode 2 IdList        : count <= kMaxReconcileIds ids of 32 bytes: all the
//                                        sender's ids in the range (reply only)
//               / mode 3 Sum           : count = the sender's items; 32-byte sum, 8-byte check (reply only)
//               / mode 4 SendSum       : count 0, empty: "reply with your Sum" (initiator only)
//               / mode 5 SendIds       : count 0, empty: "reply with your IdList" (initiator only)
//               / mode 6 Deferred      : count 0, empty, bound +infinity: the responder ran out of
//                                        room; the initiator's ranges from here on were not
//                                        answered and must be asked again (reply only)
//   varint      = unsigned LEB128, at most 10 octets, at most 64 bits, minimal length
//   sum         = the ids, read as 256-bit little-endian integers, added mod 2^256 (little-endian)
//   check       = Σ Mix(id) mod 2^64 (little-endian), Mix a fixed 64-bit mixing function
//   fingerprint = the first kReconcileFingerprintBytes of
//                 HashParts("kring/reconcile/fingerprint", sum || check || varint(count))
//
// A body has at most kMaxReconcileRanges ranges and kMaxReconcileBytes bytes.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "crypto/sodium.h"
#include "crypto/status.h"

namespace kring {

// 64 bits: a false "equal" needs a 2^-64 accident, or 2^64 hashing from an
// adversary; 16 bytes would cost ~22 more bytes per differing item
// (about 2.8 fingerprints are sent per difference).
inline constexpr size_t kReconcileFingerprintBytes = 8;
inline constexpr size_t kMaxReconcileRanges = 32768;
inline constexpr size_t kMaxReconcileIds = 8192;

// The key of one record in reconciliation order: by hlc, ties broken by id.
struct ItemKey {
  uint64_t hlc = 0;
  Hash id{};
  auto operator<=>(const ItemKey&) const = default;
};

// The items one side offers a peer, with running sums so that a range's
// count, sum and fingerprint cost O(log n). Immutable, so thread-safe to
// share between sessions. About 43 bytes per item: the keys and, every 16
// items, a running sum.
class ReconcileSet {
 public:
  // Sorts and removes duplicates (cheap when already sorted and unique).
  explicit ReconcileSet(std::vector<ItemKey> items);

  size_t size() const { return items_.size(); }
  std::span<const ItemKey> items() const { return items_; }

 private:
  friend class ReconcileView;  // protocol/reconcile.cc

  struct Checkpoint {
    std::array<uint64_t, 4> sum{};  // little-endian limbs
    uint64_t check = 0;
  };

  std::vector<ItemKey> items_;
  // checkpoints_[k] sums items_[0, k * stride); see reconcile.cc.
  std::vector<Checkpoint> checkpoints_;
};

// The initiator's side of one session. Not thread-safe; `set` must outlive it.
class Reconciler {
 public:
  explicit Reconciler(const ReconcileSet& set);
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Starts (or restarts) the session: the first body to send.
  Bytes Initiate();

  // Processes the responder's reply to the last body sent. Returns the next
  // body to send, or std::nullopt when the session is complete. Appends to
  // *have ids we hold that the peer lacks, and to *need ids the peer holds
  // that we lack (with an honest peer, each differing id once per session).
  // Corruption when the reply is malformed or answers ranges we did not ask
  // about; ResourceExhausted when it makes the session too large;
  // InvalidArgument when no body awaits a reply. On error nothing changes:
  // the caller may abandon the session (or retry with a correct reply).
  // A peer can keep a session going by never agreeing: callers cap rounds.
  // REQUIRES: have != nullptr, need != nullptr
  Result<std::optional<Bytes>> Continue(ByteSpan reply, std::vector<Hash>* have, std::vector<Hash>* need);

 private:
  struct Request;  // a range to ask about in the next body; reconcile.cc

  Bytes NextBody();

  const ReconcileSet* set_;
  std::vector<Request> pending_;  // sorted by range, disjoint
  std::vector<Request> sent_;     // the requests of the body awaiting a reply
  bool awaiting_reply_ = false;
};

// The responder's side: the reply to one initiator body. Stateless: a peer's
// body costs work proportional to its size and allocates nothing that
// outlives the call. The reply is at most kMaxReconcileBytes.
// Corruption when the body is malformed.
Result<Bytes> Respond(const ReconcileSet& set, ByteSpan body);

}  // namespace kring
