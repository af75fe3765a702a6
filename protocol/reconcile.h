// Range-based set reconciliation (after Negentropy): which records a peer holds that we lack, and the reverse.
//
// Each side holds a sorted set of item keys (hlc, id). The initiator sends a
// fingerprint of the whole key space; each side answers each range the other
// sent with one step, one level deeper each message, until nothing is left
// unsettled:
//
//   - the same fingerprint: settled;
//   - one item ahead: the side holding one more finds that item from the
//     other's fingerprint alone (its first octets are the low bits of a sum
//     of ids) and settles the range;
//   - one item behind, or no items: send our own fingerprint back, so that the
//     side ahead can do that;
//   - both sides hold few items: the initiator lists short keyed hashes of
//     its ids (their prefixes); the responder answers which it lacks;
//   - otherwise: split into sub-ranges with their own fingerprints, about
//     one to 1.5 per differing item by the count difference (twice that
//     for a few), so that most end up one item apart, plus a tail for the
//     newest differences: the side holding more gives its newest
//     (count difference) items a sub-range of their own, the side holding
//     fewer an empty sub-range from just past its newest item. A node that
//     was down lacks exactly the newest records: the tails settle that in
//     one round trip (two when it starts).
//
// The responder keeps no state between messages. Whenever it learns that the
// initiator lacks an item of its own, it pushes that record at once (Respond's
// *push), without naming it in the reply: the record carries its id, and the
// initiator never asks. The initiator learns the rest: what it holds that
// the responder lacks (*have), for its caller to push.
//
// The sets may change between messages (records stored or purged while a
// session runs): each message is answered from one state, ranges are named
// by bounds, not positions, and a List's answer refers to the ids listed.
// A change makes a session take longer or miss that change; the next
// session, every interval, finds it.
//
// Measured (kring-bench, in-process, 1,000,000 items, 1 to 1,000
// differences, scattered or the newest missing, either side starting): at
// most 4 round trips and 60 bytes of frames per difference; in sync, one
// round trip of 42 bytes of frames.
//
// Versions: these bodies are protocol 2 (messages.h's kProtocolVersion).
// The split widths, the tails and leaving `pushed` out are the sender's
// choices within that grammar, so nodes from before them interoperate with
// nodes after them in both roles; initiators still accept `pushed`.
//
// Fingerprints and prefixes are keyed with a salt the initiator draws for
// each session (the session id of kring's ReconcileMessage), so that no one
// can search offline for items whose prefixes or fingerprints collide. A
// collision (2^-64 per pair of listed items; 2^-40 per compared range, 2^-24
// if a peer grinds ids) hides the differences involved for that session
// only: nothing is ever reported wrongly, and the next session, with a
// fresh salt, finds them.
//
// Wire format of a body (the `body` of ReconcileMessage; also in docs/protocol.md):
//
//   body        = [pushed] 1*range      ; bounds strictly increasing; the last bound is +infinity,
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
//               / mode 2 List          : count = n, 1 <= n <= kMaxReconcileListItems; plen:OCTET
//                                        (1..kMaxReconcilePrefixBytes); n idhash of plen octets:
//                                        the sender's ids in the range, in key order (initiator only)
//               / mode 3 Missing       : count = n, the size of the List of the same range it
//                                        answers; ceil(n/8) octets: bit i (octet i/8, bit i%8) set
//                                        when the responder lacks the List's item i; at least one
//                                        bit set, bits from n on clear (responder only)
//               / mode 4 SendList      : count 0, empty: "send your List of this range" (responder only)
//               / mode 5 Deferred      : count 0, empty, bound +infinity: the responder ran out of
//                                        room; the initiator's ranges from here on were not
//                                        answered and must be asked again (responder only)
//   pushed      = %xFF n:varint n*32OCTET ; 1 <= n <= kMaxReconcileIds: ids the responder holds, the
//                                       ; initiator lacks, and the responder pushes (responder only;
//                                       ; accepted, no longer sent: the pushes carry the ids)
//   varint      = unsigned LEB128, at most 10 octets, at most 64 bits, minimal length
//   salt        = the session id, 8 octets little-endian
//   sum         = the ids, read as 256-bit little-endian integers, added mod 2^256 (little-endian)
//   check       = Σ Mix(id) mod 2^64 (little-endian), Mix a fixed 64-bit mixing function
//   fingerprint = sum mod 2^16 (2 octets, little-endian), then the first
//                 kReconcileFingerprintBytes - 2 octets of
//                 HashParts("kring/reconcile/fingerprint/v2", salt || sum || check || varint(count))
//   idhash      = the first plen octets of HashParts("kring/reconcile/prefix", salt || id)
//
// A body has at most kMaxReconcileRanges ranges and kMaxReconcileBytes bytes.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "crypto/sodium.h"
#include "crypto/status.h"

namespace kring {

// 2 octets of plain sum (to find a single extra item by) and 3 keyed: a
// false "equal" is a 2^-40 accident, or 2^-24 for a peer that grinds ids for
// it, and lasts one session. Each octet costs about 2.5 bytes per differing
// item (the 8 octets of the first protocol cost 9 more than these 5).
inline constexpr size_t kReconcileFingerprintBytes = 5;
// Prefixes in the Lists an initiator sends: a collision needs 2^-64 luck.
inline constexpr size_t kReconcilePrefixBytes = 8;
inline constexpr size_t kMaxReconcilePrefixBytes = 16;
inline constexpr size_t kMaxReconcileListItems = 64;
inline constexpr size_t kMaxReconcileRanges = 32768;
inline constexpr size_t kMaxReconcileIds = 8192;  // records one reply makes the responder push

// The key of one record in reconciliation order: by hlc, ties broken by id.
struct ItemKey {
  uint64_t hlc = 0;
  Hash id{};
  auto operator<=>(const ItemKey&) const = default;
};

// What a range of items adds up to, in the form the protocol compares: the
// count, the sum of the ids (256-bit, mod 2^256) and the check (a sum of
// mixed ids, mod 2^64). All three are additive, so the summary of a union of
// disjoint ranges is the sum of theirs (ReconcileIndex relies on it).
struct ReconcileSummary {
  uint64_t count = 0;
  std::array<uint64_t, 4> sum{};  // little-endian limbs
  uint64_t check = 0;

  void Add(const Hash& id);
  void Remove(const Hash& id);
  void Add(const ReconcileSummary& other);
  void Remove(const ReconcileSummary& other);  // REQUIRES: `other` is part of this
  bool operator==(const ReconcileSummary&) const = default;
};

// The items one side offers a peer, as the protocol reads them: in key
// order, addressed by rank (0 .. size()-1). One message is processed against
// one unchanging state of the source; between messages it may change (the
// protocol tolerates that: a session then takes more rounds, or misses a
// change the next session finds). Implementations: ReconcileSet (a sorted
// array) and ReconcileIndex's views (protocol/reconcile_index.h).
class ReconcileSource {
 public:
  virtual ~ReconcileSource() = default;
  virtual size_t size() const = 0;
  // The item of rank i. REQUIRES: i < size()
  virtual ItemKey item(size_t i) const = 0;
  // The rank of the first item at or above `key` (size() if none).
  virtual size_t Find(const ItemKey& key) const = 0;
  // The same, knowing that the answer lies in [from, to].
  virtual size_t Find(const ItemKey& key, size_t from, size_t to) const;
  // The summary of items [begin, end). REQUIRES: begin <= end <= size()
  virtual ReconcileSummary Summarize(size_t begin, size_t end) const = 0;
  // Calls visit(rank, item) for the items [begin, end) in order until it returns false.
  virtual void Scan(size_t begin, size_t end, const std::function<bool(size_t, const ItemKey&)>& visit) const = 0;
};

// A fixed set of items with running sums, so that a range's count, sum and
// fingerprint cost O(log n). Immutable, so thread-safe to share between
// sessions. About 43 bytes per item: the keys and, every 16 items, a
// running sum. The node keeps a ReconcileIndex instead (one for all
// partners, updated in place); tests and benchmarks use both.
class ReconcileSet : public ReconcileSource {
 public:
  // Sorts and removes duplicates (cheap when already sorted and unique).
  explicit ReconcileSet(std::vector<ItemKey> items);

  size_t size() const override { return items_.size(); }
  std::span<const ItemKey> items() const { return items_; }

  ItemKey item(size_t i) const override { return items_[i]; }
  size_t Find(const ItemKey& key) const override { return Find(key, 0, items_.size()); }
  size_t Find(const ItemKey& key, size_t from, size_t to) const override;
  ReconcileSummary Summarize(size_t begin, size_t end) const override;
  void Scan(size_t begin, size_t end, const std::function<bool(size_t, const ItemKey&)>& visit) const override;

 private:
  struct Checkpoint {
    std::array<uint64_t, 4> sum{};  // little-endian limbs
    uint64_t check = 0;
  };

  ReconcileSummary Prefix(size_t end) const;
  ReconcileSummary Direct(size_t begin, size_t end) const;

  std::vector<ItemKey> items_;
  // checkpoints_[k] sums items_[0, k * stride); see reconcile.cc.
  std::vector<Checkpoint> checkpoints_;
};

// The initiator's side of one session. Not thread-safe. Either bound to one
// source for the whole session (which must outlive it), or given the source
// with each call (the node: a view of its ReconcileIndex, read-locked for
// that call; the items may change between calls).
class Reconciler {
 public:
  // `salt` keys the session's fingerprints and prefixes; the responder must
  // be given the same. Draw it at random for every session and never reuse
  // it: a session that hit a collision must not meet it again.
  Reconciler(const ReconcileSource& set, uint64_t salt);
  // For tests: Lists with prefixes of `prefix_bytes`, short enough to collide.
  // REQUIRES: 1 <= prefix_bytes <= kMaxReconcilePrefixBytes
  Reconciler(const ReconcileSource& set, uint64_t salt, size_t prefix_bytes);
  // Unbound: every call names the source.
  explicit Reconciler(uint64_t salt);
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Starts (or restarts, with the same salt) the session: the first body to send.
  Bytes Initiate();  // REQUIRES: bound to a source
  Bytes Initiate(const ReconcileSource& set);

  // Processes the responder's reply to the last body sent. Returns the next
  // body to send, or std::nullopt when the session is complete. Appends to
  // *have ids we hold that the peer lacks (ours to push), and to *need the
  // ids the reply names as pushed to us (only older responders name them:
  // the peer pushes what we lack unasked either way).
  // Corruption when the reply is malformed or answers ranges we did not ask
  // about; ResourceExhausted when it makes the session too large;
  // InvalidArgument when no body awaits a reply. On error nothing changes:
  // the caller may abandon the session (or retry with a correct reply).
  // A peer can keep a session going by never agreeing: callers cap rounds.
  // REQUIRES: have != nullptr, need != nullptr
  Result<std::optional<Bytes>> Continue(ByteSpan reply, std::vector<Hash>* have, std::vector<Hash>* need);
  Result<std::optional<Bytes>> Continue(const ReconcileSource& set, ByteSpan reply, std::vector<Hash>* have,
                                        std::vector<Hash>* need);

 private:
  struct Request;  // a range to ask about in the next body; reconcile.cc

  Bytes NextBody(const ReconcileSource& set);

  const ReconcileSource* set_ = nullptr;
  uint64_t salt_;
  size_t prefix_bytes_;
  std::vector<Request> pending_;  // sorted by range, disjoint
  std::vector<Request> sent_;     // the requests of the body awaiting a reply
  bool awaiting_reply_ = false;
};

// The responder's side: the reply to one initiator body, under the salt of
// its session. Appends to *push the ids of items we hold that the initiator
// lacks, at most kMaxReconcileIds (the rest in later replies): the caller
// must push those records to it (the initiator will not ask). Stateless: a
// peer's body costs work
// proportional to its size (and to our items in the ranges it names), and
// allocates nothing that outlives the call. The reply is at most
// kMaxReconcileBytes. Corruption when the body is malformed; *push is then
// unchanged.
// REQUIRES: push != nullptr
Result<Bytes> Respond(const ReconcileSource& set, uint64_t salt, ByteSpan body, std::vector<Hash>* push);

}  // namespace kring
