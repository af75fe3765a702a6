// Range-based set reconciliation: range summaries, the body codec, the stateless responder and the initiator's session.
#include "protocol/reconcile.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <string>

#include "crypto/primitives.h"
#include "protocol/messages.h"

namespace kring {

static_assert(std::endian::native == std::endian::little, "sums are read from ids as little-endian limbs");
static_assert(kMaxReconcileIds * kHashBytes <= kMaxReconcileBytes);

namespace {

using Limbs = std::array<uint64_t, 4>;

constexpr size_t kCheckpointStride = 16;
constexpr size_t kSumBytes = 32;
constexpr size_t kCheckBytes = 8;
constexpr size_t kMaxVarintBytes = 10;
constexpr size_t kMaxBoundBytes = 1 + kMaxVarintBytes + 1 + kHashBytes;
constexpr size_t kMaxRecordHeadBytes = kMaxBoundBytes + kMaxVarintBytes;
constexpr uint8_t kInfinityHeader = 0x80;
constexpr uint8_t kPushedMarker = 0xff;  // never a bound header
constexpr uint8_t kPrefixFlag = 0x40;
constexpr uint8_t kShiftMask = 0x3f;
constexpr std::string_view kFingerprintContext = "kring/reconcile/fingerprint/v2";
constexpr std::string_view kPrefixContext = "kring/reconcile/prefix";

// A fingerprint opens with the sum mod 2^16: a side holding exactly one item
// more than the other finds it among the items whose low id bits make up the
// difference, and confirms it with the keyed rest.
constexpr size_t kSumHintBytes = 2;
static_assert(kReconcileFingerprintBytes > kSumHintBytes && kReconcileFingerprintBytes <= kSumHintBytes + kHashBytes);
static_assert(kReconcilePrefixBytes <= kMaxReconcilePrefixBytes && kMaxReconcilePrefixBytes <= kHashBytes);

// How widely to split a range that differs. The count difference is the
// number of differences when only one side lacks items (a lower bound
// otherwise), so the side that splits picks the width from it, from the
// first reply on: about one sub-range per difference where we hold more
// items, 1.5 where we hold fewer, so that most sub-ranges differ by one
// item or none: the side one item ahead finds that item at once, and when
// that is the other side it has to send a fingerprint back first, so we
// split finer. A range down to a few differences (kFewDifferences) is split
// twice as finely: its fingerprints are few, and each round trip saved
// counts. Fewer sub-ranges would mean more round trips; more, more
// fingerprints of sub-ranges that agree. (Measured on 10 to 1,000
// differences in 1,000,000 items, scattered and newest: at most 4 round
// trips, under 64 bytes a difference.) Differences among the newest items
// (a node that was down) are settled by the tails of SplitRange below, in
// one or two round trips. At most kMaxBranches: a split of the largest
// sub-range headers still fits one reply.
constexpr uint64_t kMinBranches = 2;
constexpr uint64_t kUnknownBranches = 4;  // content differs, counts (almost) do not
constexpr uint64_t kFewDifferences = 8;
constexpr uint64_t kMaxBranches = 4096;
// When both sides hold at most this many items of a range that differs in
// more than one item, the initiator lists its items rather than split.
constexpr uint64_t kListItems = 8;
// The responder compares a List with at most this many of its own items; a
// range where it holds more is answered with its fingerprint (it changed).
constexpr uint64_t kMaxListCompare = 4 * kMaxReconcileListItems;
// Keyed hashes one body may make a side compute beyond one per range (list
// prefixes, candidates for the one extra item): bounds a peer's leverage.
constexpr size_t kHashBudget = 1 << 16;
constexpr size_t kMaxCandidates = 64;

// The initiator keeps its bodies, and the replies it expects, to a bit less
// than the limit, so that the responder rarely has to defer (a deferred
// request is sent twice).
constexpr size_t kMaxRequestBytes = kMaxReconcileBytes - kMaxReconcileBytes / 8;
constexpr size_t kExpectedReplyBudget = kMaxReconcileBytes - kMaxReconcileBytes / 8;
// Room the responder keeps for a final Deferred range (a Skip gap, then +infinity).
constexpr size_t kDeferredReserve = kMaxRecordHeadBytes + 2;
static_assert(kMaxBranches * (kMaxRecordHeadBytes + kReconcileFingerprintBytes) + kDeferredReserve <=
              kMaxReconcileBytes);
// A session's own bookkeeping is capped so that a hostile responder cannot
// grow it without bound (honest sessions with 20,000 or 50,000 differences
// in 100,000 items peak at tens of thousands of requests).
constexpr size_t kMaxPendingRequests = 1 << 18;

enum class Mode : uint8_t {
  kSkip = 0,
  kFingerprint = 1,
  kList = 2,
  kMissing = 3,
  kSendList = 4,
  kDeferred = 5,
};
constexpr uint64_t kModeBits = 3;

enum class Sender { kInitiator, kResponder };

bool ModeAllowed(Mode mode, Sender from) {
  switch (mode) {
    case Mode::kSkip:
    case Mode::kFingerprint:
      return true;
    case Mode::kList:
      return from == Sender::kInitiator;
    case Mode::kMissing:
    case Mode::kSendList:
    case Mode::kDeferred:
      return from == Sender::kResponder;
  }
  return false;
}

// ---- 256-bit sums ------------------------------------------------------------

Limbs LoadLimbs(const uint8_t* bytes) {
  Limbs l;
  std::memcpy(l.data(), bytes, sizeof(l));
  return l;
}

void AddTo(Limbs& a, const Limbs& b) {
  uint64_t carry = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    uint64_t s = a[i] + b[i];
    uint64_t c = s < a[i];
    a[i] = s + carry;
    carry = c | (a[i] < s);
  }
}

Limbs Minus(const Limbs& a, const Limbs& b) {
  Limbs r;
  uint64_t borrow = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    uint64_t d = a[i] - b[i];
    uint64_t bw = a[i] < b[i];
    r[i] = d - borrow;
    borrow = bw | (d < borrow);
  }
  return r;
}

uint64_t Mix64(uint64_t x) {  // the splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// A second, non-linear digest of an id: ids that are not uniformly random
// (small integers, say) have colliding sums, {1, 4} and {2, 3}, but not checks.
uint64_t Check(const Limbs& id) { return Mix64(id[0] ^ Mix64(id[1] ^ Mix64(id[2] ^ Mix64(id[3])))); }

using Summary = ReconcileSummary;

Summary Without(Summary s, const Hash& id) {
  s.Remove(id);
  return s;
}

// The low 16 bits of an id read as a number, which add up to a range's sum mod 2^16.
uint16_t SumHint(const Hash& id) { return static_cast<uint16_t>(id[0] | id[1] << 8); }

// ---- varints, fingerprints and prefixes ----------------------------------------------

void PutVarint(Bytes& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

using Fingerprint = std::array<uint8_t, kReconcileFingerprintBytes>;
using SaltBytes = std::array<uint8_t, 8>;

SaltBytes SaltOf(uint64_t salt) {
  SaltBytes b;
  std::memcpy(b.data(), &salt, b.size());
  return b;
}

// Over the check as well as the sum; keyed, so that a collision found for
// one session is worth nothing in the next.
Fingerprint FingerprintOf(const Summary& s, const SaltBytes& salt) {
  uint8_t digest[kSumBytes + kCheckBytes];
  std::memcpy(digest, s.sum.data(), kSumBytes);
  std::memcpy(digest + kSumBytes, &s.check, kCheckBytes);
  Bytes count;
  PutVarint(count, s.count);
  Hash h = HashParts(kFingerprintContext, {ByteSpan(salt), ByteSpan(digest, sizeof(digest)), ByteSpan(count)});
  Fingerprint fp;
  std::memcpy(fp.data(), s.sum.data(), kSumHintBytes);
  std::copy_n(h.begin(), fp.size() - kSumHintBytes, fp.begin() + kSumHintBytes);
  return fp;
}

using Prefix = std::array<uint8_t, kMaxReconcilePrefixBytes>;  // zero-padded past its length

Prefix PrefixOf(const Hash& id, const SaltBytes& salt, size_t len) {
  Hash h = HashParts(kPrefixContext, {ByteSpan(salt), ByteSpan(id)});
  Prefix p{};
  std::copy_n(h.begin(), len, p.begin());
  return p;
}

// ---- bounds ------------------------------------------------------------------------

// A point of the key space: an item key, or +infinity past every key.
struct Bound {
  ItemKey key;
  bool infinite = false;

  static Bound Min() { return Bound{}; }
  static Bound Infinity() { return Bound{ItemKey{}, true}; }

  friend std::strong_ordering operator<=>(const Bound& a, const Bound& b) {
    if (a.infinite || b.infinite) return a.infinite <=> b.infinite;
    return a.key <=> b.key;
  }
  friend bool operator==(const Bound& a, const Bound& b) { return (a <=> b) == 0; }
};

// The bound between two adjacent items, prev < bound <= cur, that is
// cheapest to encode: the hlc with the most trailing zero bits, or, when the
// hlcs are equal, the shortest id prefix that still separates them.
Bound SplitBound(const ItemKey& prev, const ItemKey& cur) {
  Bound b;
  if (prev.hlc < cur.hlc) {
    int z = std::bit_width(prev.hlc ^ cur.hlc) - 1;  // the highest bit where they differ is set in cur
    b.key.hlc = (cur.hlc >> z) << z;
    return b;
  }
  b.key.hlc = cur.hlc;
  size_t i = 0;
  while (prev.id[i] == cur.id[i]) ++i;  // prev < cur, so they differ before the end
  std::copy_n(cur.id.begin(), i + 1, b.key.id.begin());
  return b;
}

// ---- decoding ------------------------------------------------------------------------

// Reads a body from untrusted bytes; advances only on success.
class Reader {
 public:
  explicit Reader(ByteSpan in) : p_(in.data()), end_(in.data() + in.size()) {}
  size_t left() const { return static_cast<size_t>(end_ - p_); }

  Status Byte(uint8_t* out) {
    if (p_ == end_) return Status::Corruption("truncated");
    *out = *p_++;
    return Status::Ok();
  }

  Status Take(size_t n, ByteSpan* out) {
    if (n > left()) return Status::Corruption("truncated");
    *out = ByteSpan(p_, n);
    p_ += n;
    return Status::Ok();
  }

  Status Varint(uint64_t* out) {
    uint64_t v = 0;
    const uint8_t* q = p_;
    for (size_t i = 0; i < kMaxVarintBytes; ++i) {
      if (q == end_) return Status::Corruption("truncated varint");
      uint8_t b = *q++;
      if (i == kMaxVarintBytes - 1 && b > 1) return Status::Corruption("varint over 64 bits");
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) {
        if (b == 0 && i > 0) return Status::Corruption("varint not minimal");
        *out = v;
        p_ = q;
        return Status::Ok();
      }
    }
    return Status::Corruption("varint over 64 bits");
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

Status ReadBound(Reader& r, const Bound& prev, Bound* out) {
  uint8_t header;
  KRING_RETURN_IF_ERROR(r.Byte(&header));
  if (header == kInfinityHeader) {
    *out = Bound::Infinity();
    return Status::Ok();
  }
  if (header & 0x80) return Status::Corruption("bad bound header");
  unsigned shift = header & kShiftMask;
  uint64_t m;
  KRING_RETURN_IF_ERROR(r.Varint(&m));
  if (m == 0 ? shift != 0 : (m & 1) == 0) return Status::Corruption("bound not canonical");
  if (m > (UINT64_MAX >> shift) || (m << shift) > UINT64_MAX - prev.key.hlc)
    return Status::Corruption("bound hlc overflows");
  Bound b;
  b.key.hlc = prev.key.hlc + (m << shift);
  if (header & kPrefixFlag) {
    uint8_t len;
    KRING_RETURN_IF_ERROR(r.Byte(&len));
    if (len == 0 || len > kHashBytes) return Status::Corruption("bad bound prefix length");
    ByteSpan prefix;
    KRING_RETURN_IF_ERROR(r.Take(len, &prefix));
    if (prefix.back() == 0) return Status::Corruption("bound not canonical");
    std::copy(prefix.begin(), prefix.end(), b.key.id.begin());
  }
  *out = b;
  return Status::Ok();
}

// One non-Skip range of a decoded body; the payload points into the body.
struct Record {
  Bound lower, upper;
  Mode mode;
  uint64_t count;
  ByteSpan payload;         // a fingerprint, a List's prefixes or a Missing bitmap
  size_t prefix_bytes = 0;  // of a List
};

bool BitSet(ByteSpan bitmap, size_t i) { return (bitmap[i / 8] >> (i % 8)) & 1; }

Status ReadPayload(Reader& r, Record* rec) {
  switch (rec->mode) {
    case Mode::kSkip:
    case Mode::kSendList:
    case Mode::kDeferred:
      if (rec->count != 0) return Status::Corruption("count on a range that has none");
      if (rec->mode == Mode::kDeferred && !rec->upper.infinite)
        return Status::Corruption("deferred range does not reach +infinity");
      return Status::Ok();
    case Mode::kFingerprint:
      if (rec->count == 0) return Status::Ok();
      return r.Take(kReconcileFingerprintBytes, &rec->payload);
    case Mode::kList: {
      if (rec->count == 0) return Status::Corruption("empty list");
      if (rec->count > kMaxReconcileListItems) return Status::Corruption("list over its limit");
      uint8_t len = 0;
      KRING_RETURN_IF_ERROR(r.Byte(&len));
      if (len == 0 || len > kMaxReconcilePrefixBytes) return Status::Corruption("bad list prefix length");
      if (rec->count > r.left() / len) return Status::Corruption("list longer than the body");
      rec->prefix_bytes = len;
      return r.Take(rec->count * len, &rec->payload);
    }
    case Mode::kMissing: {
      if (rec->count == 0 || rec->count > kMaxReconcileListItems) return Status::Corruption("missing over its limit");
      KRING_RETURN_IF_ERROR(r.Take((rec->count + 7) / 8, &rec->payload));
      if (rec->count % 8 != 0 && (rec->payload.back() >> (rec->count % 8)) != 0)
        return Status::Corruption("missing bitmap not canonical");
      if (std::all_of(rec->payload.begin(), rec->payload.end(), [](uint8_t b) { return b == 0; }))
        return Status::Corruption("missing names no item");
      return Status::Ok();
    }
  }
  return Status::Corruption("unknown mode");
}

// Decodes and checks a whole body before anything acts on it: a reply's
// pushed ids into *pushed, the ranges other than Skips into *out.
Status DecodeBody(ByteSpan body, Sender from, std::vector<Hash>* pushed, std::vector<Record>* out) {
  if (body.size() > kMaxReconcileBytes) return Status::Corruption("body over the size limit");
  if (body.empty()) return Status::Corruption("empty body");
  Reader r(body);
  if (body[0] == kPushedMarker) {
    if (from == Sender::kInitiator) return Status::Corruption("pushed ids not allowed in this direction");
    uint8_t marker;
    uint64_t n;
    KRING_RETURN_IF_ERROR(r.Byte(&marker));
    KRING_RETURN_IF_ERROR(r.Varint(&n));
    if (n == 0 || n > kMaxReconcileIds) return Status::Corruption("pushed ids over their limit");
    if (n > r.left() / kHashBytes) return Status::Corruption("pushed ids longer than the body");
    pushed->resize(n);
    for (Hash& id : *pushed) {
      ByteSpan b;
      KRING_RETURN_IF_ERROR(r.Take(kHashBytes, &b));
      std::copy(b.begin(), b.end(), id.begin());
    }
  }
  Bound prev = Bound::Min();
  bool prev_was_skip = false;
  size_t ranges = 0;
  while (!prev.infinite) {
    if (r.left() == 0) return Status::Corruption("body does not reach +infinity");
    if (++ranges > kMaxReconcileRanges) return Status::Corruption("too many ranges");
    Bound upper;
    KRING_RETURN_IF_ERROR(ReadBound(r, prev, &upper));
    if (!(prev < upper)) return Status::Corruption("ranges not increasing");
    uint64_t tag;
    KRING_RETURN_IF_ERROR(r.Varint(&tag));
    uint64_t mode_bits = tag & ((1u << kModeBits) - 1);
    if (mode_bits > static_cast<uint64_t>(Mode::kDeferred)) return Status::Corruption("unknown mode");
    Record rec{prev, upper, static_cast<Mode>(mode_bits), tag >> kModeBits, {}};
    if (!ModeAllowed(rec.mode, from)) return Status::Corruption("mode not allowed in this direction");
    if (rec.mode == Mode::kSkip && prev_was_skip) return Status::Corruption("two skips in a row");
    KRING_RETURN_IF_ERROR(ReadPayload(r, &rec));
    prev_was_skip = rec.mode == Mode::kSkip;
    if (!prev_was_skip) out->push_back(rec);
    prev = upper;
  }
  if (r.left() > 0) return Status::Corruption("range after +infinity");
  return Status::Ok();
}

// ---- encoding ------------------------------------------------------------------------

// Builds a body range by range; a gap before a range becomes a Skip.
class BodyWriter {
 public:
  struct Mark {
    size_t bytes, ranges;
    Bound last;
  };

  size_t size() const { return out_.size(); }
  size_t ranges() const { return ranges_; }
  Mark mark() const { return {out_.size(), ranges_, last_}; }
  void Rewind(const Mark& m) {
    out_.resize(m.bytes);
    ranges_ = m.ranges;
    last_ = m.last;
  }

  // Starts the range [lower, upper); the caller appends its payload.
  // REQUIRES: last bound written <= lower < upper, mode != kSkip
  void Begin(const Bound& lower, const Bound& upper, Mode mode, uint64_t count) {
    assert(last_ <= lower && lower < upper && mode != Mode::kSkip);
    if (last_ < lower) PutRange(lower, Mode::kSkip, 0);
    PutRange(upper, mode, count);
  }
  void Put(ByteSpan bytes) { out_.insert(out_.end(), bytes.begin(), bytes.end()); }
  void PutByte(uint8_t b) { out_.push_back(b); }

  // Closes the body with a Skip up to +infinity if it does not reach it
  // yet, after the pushed ids, if any.
  Bytes Finish(std::span<const Hash> pushed) && {
    if (!last_.infinite) PutRange(Bound::Infinity(), Mode::kSkip, 0);
    if (pushed.empty()) return std::move(out_);
    Bytes body;
    body.reserve(1 + kMaxVarintBytes + pushed.size() * kHashBytes + out_.size());
    body.push_back(kPushedMarker);
    PutVarint(body, pushed.size());
    for (const Hash& id : pushed) body.insert(body.end(), id.begin(), id.end());
    body.insert(body.end(), out_.begin(), out_.end());
    return body;
  }

 private:
  void PutRange(const Bound& upper, Mode mode, uint64_t count) {
    PutBound(upper);
    PutVarint(out_, (count << kModeBits) | static_cast<uint64_t>(mode));
    last_ = upper;
    ++ranges_;
  }

  void PutBound(const Bound& b) {
    if (b.infinite) {
      out_.push_back(kInfinityHeader);
      return;
    }
    uint64_t delta = b.key.hlc - last_.key.hlc;  // last_ < b, so last_ is finite and not above
    unsigned shift = delta == 0 ? 0 : std::countr_zero(delta);
    size_t len = kHashBytes;
    while (len > 0 && b.key.id[len - 1] == 0) --len;
    out_.push_back(static_cast<uint8_t>(shift | (len > 0 ? kPrefixFlag : 0)));
    PutVarint(out_, delta >> shift);
    if (len > 0) {
      out_.push_back(static_cast<uint8_t>(len));
      out_.insert(out_.end(), b.key.id.begin(), b.key.id.begin() + len);
    }
  }

  Bytes out_;
  Bound last_ = Bound::Min();
  size_t ranges_ = 0;
};

void PutFingerprint(BodyWriter& w, const Summary& s, const SaltBytes& salt) {
  if (s.count > 0) w.Put(FingerprintOf(s, salt));
}

uint64_t AbsDiff(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

// How many sub-ranges to split a range into where we hold `ours` items and
// the other side `theirs`.
uint64_t Branches(uint64_t ours, uint64_t theirs) {
  uint64_t diff = AbsDiff(ours, theirs);
  // Differing content with (almost) equal counts: items missing on both sides, how many unknown.
  if (diff <= 1) return kUnknownBranches;
  uint64_t ways = ours > theirs ? diff : (3 * diff + 1) / 2;
  if (diff <= kFewDifferences) ways *= 2;
  return std::clamp(ways, kMinBranches, kMaxBranches);
}

}  // namespace

// ---- summaries ---------------------------------------------------------------------

void ReconcileSummary::Add(const Hash& id) {
  Limbs l = LoadLimbs(id.data());
  AddTo(sum, l);
  check += Check(l);
  ++count;
}

void ReconcileSummary::Remove(const Hash& id) {
  Limbs l = LoadLimbs(id.data());
  sum = Minus(sum, l);
  check -= Check(l);
  --count;
}

void ReconcileSummary::Add(const ReconcileSummary& o) {
  AddTo(sum, o.sum);
  check += o.check;
  count += o.count;
}

void ReconcileSummary::Remove(const ReconcileSummary& o) {
  sum = Minus(sum, o.sum);
  check -= o.check;
  count -= o.count;
}

size_t ReconcileSource::Find(const ItemKey& key, size_t, size_t) const { return Find(key); }

// ---- ReconcileSet -----------------------------------------------------------------

ReconcileSet::ReconcileSet(std::vector<ItemKey> items) : items_(std::move(items)) {
  if (!std::is_sorted(items_.begin(), items_.end())) std::sort(items_.begin(), items_.end());
  items_.erase(std::unique(items_.begin(), items_.end()), items_.end());
  checkpoints_.reserve(items_.size() / kCheckpointStride + 1);
  Summary acc;
  for (size_t i = 0; i <= items_.size(); ++i) {
    if (i % kCheckpointStride == 0) checkpoints_.push_back(Checkpoint{acc.sum, acc.check});
    if (i < items_.size()) acc.Add(items_[i].id);
  }
}

size_t ReconcileSet::Find(const ItemKey& key, size_t from, size_t to) const {
  return static_cast<size_t>(std::lower_bound(items_.begin() + from, items_.begin() + to, key) - items_.begin());
}

// A checkpoint difference plus at most two strides of items, so O(1) after
// the binary searches that found the range.
ReconcileSummary ReconcileSet::Summarize(size_t begin, size_t end) const {
  if (end - begin <= kCheckpointStride) return Direct(begin, end);
  Summary hi = Prefix(end), lo = Prefix(begin);
  Summary s;
  s.count = end - begin;
  s.sum = Minus(hi.sum, lo.sum);
  s.check = hi.check - lo.check;
  return s;
}

void ReconcileSet::Scan(size_t begin, size_t end, const std::function<bool(size_t, const ItemKey&)>& visit) const {
  for (size_t i = begin; i < end; ++i)
    if (!visit(i, items_[i])) return;
}

ReconcileSummary ReconcileSet::Direct(size_t begin, size_t end) const {
  Summary s;
  for (size_t i = begin; i < end; ++i) s.Add(items_[i].id);
  return s;
}

ReconcileSummary ReconcileSet::Prefix(size_t end) const {
  size_t k = end / kCheckpointStride;
  Summary s = Direct(k * kCheckpointStride, end);
  AddTo(s.sum, checkpoints_[k].sum);
  s.check += checkpoints_[k].check;
  return s;
}

namespace {

// Range queries by bounds and by rank over a source, for one message.
class ReconcileView {
 public:
  explicit ReconcileView(const ReconcileSource& source) : source_(source) {}

  ItemKey item(size_t i) const { return source_.item(i); }
  size_t size() const { return source_.size(); }

  // The rank of the first item at or above `b`.
  size_t Find(const Bound& b) const { return b.infinite ? source_.size() : source_.Find(b.key); }
  // The same, knowing that it lies in [from, to].
  size_t Find(const Bound& b, size_t from, size_t to) const {
    return b.infinite ? to : source_.Find(b.key, from, to);
  }
  Summary Summarize(size_t begin, size_t end) const { return source_.Summarize(begin, end); }
  void Scan(size_t begin, size_t end, const std::function<bool(size_t, const ItemKey&)>& visit) const {
    if (begin < end) source_.Scan(begin, end, visit);
  }

 private:
  const ReconcileSource& source_;
};

}  // namespace

namespace {

// Splits the items [begin, end) of the range [lower, upper) into about
// `branches` sub-ranges of about equal item counts and calls emit(lower,
// upper, begin, end) for each. Each bound is the cheapest to encode within a
// quarter of a sub-range of the even split: an hlc with more trailing zero
// bits, so about one byte of magnitude instead of two or three.
// REQUIRES: end - begin >= 1
template <class Emit>
void ForEachSubRange(const ReconcileView& view, const Bound& lower, const Bound& upper, size_t begin,
                     size_t end, uint64_t branches, Emit emit) {
  size_t n = end - begin;
  size_t k = static_cast<size_t>(std::min<uint64_t>(branches, n));
  size_t slack = n / k / 4;
  Bound from = lower;
  size_t first = begin;
  for (size_t c = 1; c <= k; ++c) {
    size_t last = end;
    Bound to = upper;
    if (c < k) {
      // Some key in (item(lo), item(hi)] leaves at least one item to this
      // sub-range and to each of the ones after it.
      size_t ideal = begin + n * c / k;
      size_t lo = std::max(first, ideal - 1 - std::min(slack, ideal - 1));
      size_t hi = std::min(end - (k - c), ideal + slack);
      to = SplitBound(view.item(lo), view.item(hi));
      last = view.Find(to, lo + 1, hi + 1);
    }
    emit(from, to, first, last);
    from = to;
    first = last;
  }
}

// Splits a range that differs, where we hold `ours` items [begin, end) and
// the peer `theirs`: about Branches() sub-ranges of equal item counts, and
// a tail for the most recent differences, which is where a node that was
// down is missing records (newest in hlc order):
//   - holding more, our newest ours - theirs items get a sub-range of their
//     own: if the peer lacks exactly those, it holds none of that range
//     (its count 0 settles it at once) and all the others agree;
//   - holding fewer, an empty sub-range from just past our newest item: the
//     peer's newer items land there, and our count 0 makes it send or take
//     them all at once.
// With differences elsewhere a tail costs one more sub-range per split.
template <class Emit>
void SplitRange(const ReconcileView& view, const Bound& lower, const Bound& upper, size_t begin, size_t end,
                uint64_t ours, uint64_t theirs, Emit emit) {
  uint64_t k = std::min<uint64_t>({Branches(ours, theirs), end - begin, kMaxBranches - 1});
  if (ours > theirs && ours - theirs < end - begin) {
    size_t tail = end - static_cast<size_t>(ours - theirs);
    Bound cut = SplitBound(view.item(tail - 1), view.item(tail));
    ForEachSubRange(view, lower, cut, begin, tail, std::min<uint64_t>(k, tail - begin), emit);
    emit(cut, upper, tail, end);
    return;
  }
  if (ours < theirs) {
    ItemKey last = view.item(end - 1);
    Bound cut;
    cut.key.hlc = last.hlc + 1;  // past every key with our newest item's hlc
    if (last.hlc != UINT64_MAX && cut < upper) {
      ForEachSubRange(view, lower, cut, begin, end, k, emit);
      emit(cut, upper, end, end);
      return;
    }
  }
  ForEachSubRange(view, lower, upper, begin, end, k, emit);
}

// Our items in a range the peer sent, and what they sum to.
struct Side {
  size_t begin, end;
  Summary own;
  bool same = false;  // for a Fingerprint: the peer's is ours
};

// Our side of each range of a body.
struct Comparison {
  std::vector<Side> sides;
};

Comparison Compare(const ReconcileView& view, const std::vector<Record>& records, const SaltBytes& salt) {
  Comparison c;
  c.sides.reserve(records.size());
  for (const Record& rec : records) {
    Side s;
    s.begin = view.Find(rec.lower);
    s.end = view.Find(rec.upper);
    s.own = view.Summarize(s.begin, s.end);
    if (rec.mode == Mode::kFingerprint) {
      s.same = rec.count == s.own.count;
      if (s.same && s.own.count > 0) {
        Fingerprint fp = FingerprintOf(s.own, salt);
        s.same = std::equal(fp.begin(), fp.end(), rec.payload.begin());
      }
    }
    c.sides.push_back(s);
  }
  return c;
}

// What one side does with the other's fingerprint of a range.
enum class Step {
  kSettled,      // the same items
  kAllOurs,      // they hold none of the range: all our items in it are extra
  kOneOfOurs,    // they lack exactly one of our items, found
  kFingerprint,  // send our fingerprint back: they are one item ahead, or we hold too few to split
  kList,         // both hold few: compare lists
  kSplit,        // split our items into sub-ranges with fingerprints
};

// Keyed hashes a side computes for one body, beyond one per range.
class HashBudget {
 public:
  bool Spend(size_t n) {
    if (n > left_) return false;
    left_ -= n;
    return true;
  }

 private:
  size_t left_ = kHashBudget;
};

// The one item of ours the peer lacks in a range where we hold one more: the
// item whose removal gives their fingerprint. Only the items whose low bits
// make up the difference of the sums are tried. Returns `side.end` if none.
size_t FindExtra(const ReconcileView& view, const Side& side, ByteSpan their_fp, const SaltBytes& salt,
                 HashBudget& budget) {
  uint16_t theirs = static_cast<uint16_t>(their_fp[0] | their_fp[1] << 8);
  uint16_t want = static_cast<uint16_t>(static_cast<uint16_t>(side.own.sum[0]) - theirs);
  size_t tried = 0, found = side.end;
  view.Scan(side.begin, side.end, [&](size_t i, const ItemKey& item) {
    if (SumHint(item.id) != want) return true;
    if (++tried > kMaxCandidates || !budget.Spend(1)) return false;
    Fingerprint fp = FingerprintOf(Without(side.own, item.id), salt);
    if (!std::equal(fp.begin(), fp.end(), their_fp.begin())) return true;
    found = i;
    return false;
  });
  return found;
}

// Decides the step for the peer's Fingerprint `rec`; for kOneOfOurs sets *extra.
Step Decide(const ReconcileView& view, const Record& rec, const Side& side, const SaltBytes& salt,
            HashBudget& budget, size_t* extra) {
  uint64_t ours = side.own.count, theirs = rec.count;
  if (side.same) return Step::kSettled;
  if (theirs == 0) return Step::kAllOurs;
  if (ours == theirs + 1) {
    *extra = FindExtra(view, side, rec.payload, salt, budget);
    if (*extra != side.end) return Step::kOneOfOurs;
  }
  // The side one item ahead finds it, and only a side holding items can split.
  if (ours == 0 || theirs == ours + 1) return Step::kFingerprint;
  if (ours <= kListItems && theirs <= kListItems) return Step::kList;
  if (ours < 2) return Step::kFingerprint;
  return Step::kSplit;
}

// ---- the responder ------------------------------------------------------------------

class Responder {
 public:
  Responder(const ReconcileSource& set, uint64_t salt) : view_(set), salt_(SaltOf(salt)) {}

  Result<Bytes> Run(ByteSpan body, std::vector<Hash>* push) {
    std::vector<Record> records;
    KRING_RETURN_IF_ERROR(DecodeBody(body, Sender::kInitiator, nullptr, &records));
    Comparison c = Compare(view_, records, salt_);
    for (size_t i = 0; i < records.size(); ++i) {
      const Record& rec = records[i];
      BodyWriter::Mark mark = out_.mark();
      size_t pushed = pushed_.size();
      bool fits = Answer(rec, c.sides[i]) && size() <= kLimit && out_.ranges() + 2 <= kMaxReconcileRanges;
      if (!fits) {
        // Out of room: the initiator asks again for this range and the rest.
        out_.Rewind(mark);
        pushed_.resize(pushed);
        out_.Begin(rec.lower, Bound::Infinity(), Mode::kDeferred, 0);
        break;
      }
    }
    push->insert(push->end(), pushed_.begin(), pushed_.end());
    // The pushed records carry their ids: the reply does not name them
    // (protocol 2 responders did, in `pushed`; initiators still accept that).
    return std::move(out_).Finish({});
  }

 private:
  static constexpr size_t kLimit = kMaxReconcileBytes - kDeferredReserve;

  size_t size() const {
    return out_.size();
  }

  // Appends the answer to one range; false if it cannot fit.
  bool Answer(const Record& rec, const Side& side) {
    if (rec.mode == Mode::kList) return AnswerList(rec, side);
    size_t extra = 0;
    switch (Decide(view_, rec, side, salt_, budget_, &extra)) {
      case Step::kSettled:
        return true;
      case Step::kAllOurs:
        return PushAll(rec.upper, side.begin, side.end);
      case Step::kOneOfOurs:
        if (pushed_.size() >= kMaxReconcileIds) return false;
        pushed_.push_back(view_.item(extra).id);
        return true;
      case Step::kFingerprint:
        out_.Begin(rec.lower, rec.upper, Mode::kFingerprint, side.own.count);
        PutFingerprint(out_, side.own, salt_);
        return true;
      case Step::kList:
        out_.Begin(rec.lower, rec.upper, Mode::kSendList, 0);
        return true;
      case Step::kSplit:
        SplitRange(view_, rec.lower, rec.upper, side.begin, side.end, side.own.count, rec.count,
                        [&](const Bound& lo, const Bound& hi, size_t b, size_t e) {
                          Summary s = view_.Summarize(b, e);
                          out_.Begin(lo, hi, Mode::kFingerprint, s.count);
                          PutFingerprint(out_, s, salt_);
                        });
        return true;
    }
    return false;
  }

  // Pushes our items [begin, end) of a range ending at `upper`, up to
  // kMaxReconcileIds in one reply; the rest goes back as a fingerprint the
  // initiator will answer again.
  bool PushAll(const Bound& upper, size_t begin, size_t end) {
    if (size() + 3 * kMaxRecordHeadBytes + kReconcileFingerprintBytes > kLimit) return false;
    size_t n = std::min(end - begin, kMaxReconcileIds - pushed_.size());
    if (n == 0) return false;
    view_.Scan(begin, begin + n, [&](size_t, const ItemKey& item) {
      pushed_.push_back(item.id);
      return true;
    });
    if (begin + n < end) {
      Summary rest = view_.Summarize(begin + n, end);
      out_.Begin(SplitBound(view_.item(begin + n - 1), view_.item(begin + n)), upper, Mode::kFingerprint, rest.count);
      PutFingerprint(out_, rest, salt_);
    }
    return true;
  }

  // Pushes our items whose prefixes the List lacks, and names the List's
  // items we lack. A range where we hold many items (the set changed since
  // our last answer) gets our fingerprint instead: the initiator splits it.
  bool AnswerList(const Record& rec, const Side& side) {
    size_t ours = side.end - side.begin;
    if (ours > kMaxListCompare || !budget_.Spend(ours)) {
      out_.Begin(rec.lower, rec.upper, Mode::kFingerprint, side.own.count);
      PutFingerprint(out_, side.own, salt_);
      return true;
    }
    if (pushed_.size() + ours > kMaxReconcileIds) return false;  // deferred to the next reply
    size_t len = rec.prefix_bytes, n = rec.count;
    std::vector<std::pair<Prefix, size_t>> theirs(n);
    for (size_t i = 0; i < n; ++i) {
      theirs[i].first = Prefix{};
      std::copy_n(rec.payload.begin() + i * len, len, theirs[i].first.begin());
      theirs[i].second = i;
    }
    std::sort(theirs.begin(), theirs.end());
    std::vector<bool> matched(n);
    view_.Scan(side.begin, side.end, [&](size_t, const ItemKey& item) {
      Prefix p = PrefixOf(item.id, salt_, len);
      auto [first, last] = std::equal_range(theirs.begin(), theirs.end(), std::pair<Prefix, size_t>(p, 0),
                                            [](const auto& a, const auto& b) { return a.first < b.first; });
      if (first == last) pushed_.push_back(item.id);
      for (auto it = first; it != last; ++it) matched[it->second] = true;
      return true;
    });
    Bytes bitmap((n + 7) / 8);
    for (size_t i = 0; i < n; ++i)
      if (!matched[i]) bitmap[i / 8] |= static_cast<uint8_t>(1 << (i % 8));
    if (std::find(matched.begin(), matched.end(), false) != matched.end()) {
      out_.Begin(rec.lower, rec.upper, Mode::kMissing, n);
      out_.Put(bitmap);
    }
    return true;
  }

  ReconcileView view_;
  SaltBytes salt_;
  HashBudget budget_;
  BodyWriter out_;
  std::vector<Hash> pushed_;
};

}  // namespace

Result<Bytes> Respond(const ReconcileSource& set, uint64_t salt, ByteSpan body, std::vector<Hash>* push) {
  return Responder(set, salt).Run(body, push);
}

// ---- the initiator --------------------------------------------------------------------

struct Reconciler::Request {
  Bound lower, upper;
  Mode mode;                  // kFingerprint or kList
  size_t expected_reply = 0;  // bytes
  // A List sent: the ids listed, in order, which the responder's Missing
  // bitmap refers to (our items may change before the reply comes).
  std::vector<Hash> listed;
};

namespace {

// Bytes we expect in reply to requests about ranges that differ in `diff`
// items in all, `their_extra` of them the responder's, split `ways` ways
// among the requests: about half the differences are settled at once (an
// id pushed for an extra of theirs, a fingerprint back for one of ours),
// the rest split further. The responder defers what does not fit, so an
// estimate only needs to be right on average.
size_t ExpectedReplyBytes(uint64_t their_extra, uint64_t diff, uint64_t ways = 1) {
  constexpr uint64_t kSubRangeBytes = 12;  // a typical bound, tag and fingerprint
  uint64_t bytes = kHashBytes / 2 * their_extra + kSubRangeBytes * diff;
  return static_cast<size_t>(std::min<uint64_t>(bytes / ways + 2, kMaxReconcileBytes));
}

}  // namespace

Reconciler::Reconciler(const ReconcileSource& set, uint64_t salt)
    : Reconciler(set, salt, kReconcilePrefixBytes) {}

Reconciler::Reconciler(const ReconcileSource& set, uint64_t salt, size_t prefix_bytes)
    : set_(&set), salt_(salt), prefix_bytes_(prefix_bytes) {
  assert(prefix_bytes >= 1 && prefix_bytes <= kMaxReconcilePrefixBytes);
}

Reconciler::Reconciler(uint64_t salt) : salt_(salt), prefix_bytes_(kReconcilePrefixBytes) {}

Reconciler::~Reconciler() = default;

Bytes Reconciler::Initiate() {
  assert(set_ != nullptr);
  return Initiate(*set_);
}

Bytes Reconciler::Initiate(const ReconcileSource& set) {
  pending_.clear();
  pending_.push_back(Request{Bound::Min(), Bound::Infinity(), Mode::kFingerprint, ExpectedReplyBytes(0, 1), {}});
  return NextBody(set);
}

Bytes Reconciler::NextBody(const ReconcileSource& set) {
  ReconcileView view(set);
  SaltBytes salt = SaltOf(salt_);
  BodyWriter w;
  size_t taken = 0, expected = 0;
  for (Request& r : pending_) {
    size_t begin = view.Find(r.lower), end = view.Find(r.upper);
    size_t record = 2 * kMaxRecordHeadBytes + 1 +
                    (r.mode == Mode::kList ? (end - begin) * prefix_bytes_ : kReconcileFingerprintBytes);
    bool room = w.size() + record <= kMaxRequestBytes && w.ranges() + 3 <= kMaxReconcileRanges &&
                expected + r.expected_reply <= kExpectedReplyBudget;
    if (taken > 0 && !room) break;
    expected += r.expected_reply;
    if (r.mode == Mode::kList) {
      w.Begin(r.lower, r.upper, Mode::kList, end - begin);
      w.PutByte(static_cast<uint8_t>(prefix_bytes_));
      r.listed.clear();
      view.Scan(begin, end, [&](size_t, const ItemKey& item) {
        Prefix p = PrefixOf(item.id, salt, prefix_bytes_);
        w.Put(ByteSpan(p.data(), prefix_bytes_));
        r.listed.push_back(item.id);
        return true;
      });
    } else {
      Summary own = view.Summarize(begin, end);
      w.Begin(r.lower, r.upper, Mode::kFingerprint, own.count);
      PutFingerprint(w, own, salt);
    }
    ++taken;
  }
  sent_.assign(pending_.begin(), pending_.begin() + taken);
  pending_.erase(pending_.begin(), pending_.begin() + taken);
  awaiting_reply_ = true;
  return std::move(w).Finish({});
}

Result<std::optional<Bytes>> Reconciler::Continue(ByteSpan reply, std::vector<Hash>* have,
                                                  std::vector<Hash>* need) {
  assert(set_ != nullptr);
  return Continue(*set_, reply, have, need);
}

Result<std::optional<Bytes>> Reconciler::Continue(const ReconcileSource& set, ByteSpan reply,
                                                  std::vector<Hash>* have, std::vector<Hash>* need) {
  if (!awaiting_reply_) return Status::InvalidArgument("no reconciliation body awaits a reply");
  std::vector<Record> records;
  std::vector<Hash> new_need;  // the ids the responder pushes
  KRING_RETURN_IF_ERROR(DecodeBody(reply, Sender::kResponder, &new_need, &records));

  ReconcileView view(set);
  SaltBytes salt = SaltOf(salt_);
  HashBudget budget;
  std::vector<Request> next;  // requests for the ranges of this reply, in order
  std::vector<Hash> new_have;
  auto ask = [&](const Request& r) {
    if (next.size() + pending_.size() >= kMaxPendingRequests) return false;
    next.push_back(r);
    return true;
  };
  auto exhausted = [] { return Status::ResourceExhausted("reconciliation session too large"); };

  Comparison c = Compare(view, records, salt);
  size_t s = 0;  // the sent request the current record answers
  std::optional<Bound> deferred_from;
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& rec = records[i];
    if (rec.mode == Mode::kDeferred) {
      deferred_from = rec.lower;
      break;  // DecodeBody: it ends at +infinity, so it is the last range
    }
    // "Is this a reply to something we asked": inside one of our requests.
    while (s < sent_.size() && sent_[s].upper <= rec.lower) ++s;
    if (s == sent_.size() || rec.lower < sent_[s].lower || sent_[s].upper < rec.upper)
      return Status::Corruption("reply covers a range we did not ask about");

    const Side& side = c.sides[i];
    uint64_t ours = side.own.count;
    switch (rec.mode) {
      case Mode::kFingerprint: {
        uint64_t theirs = rec.count;
        size_t extra = 0;
        switch (Decide(view, rec, side, salt, budget, &extra)) {
          case Step::kSettled:
            break;
          case Step::kAllOurs:
            view.Scan(side.begin, side.end, [&](size_t, const ItemKey& item) {
              new_have.push_back(item.id);
              return true;
            });
            break;
          case Step::kOneOfOurs:
            new_have.push_back(view.item(extra).id);
            break;
          case Step::kFingerprint: {
            uint64_t their_extra = theirs > ours ? theirs - ours : 0;
            size_t expected = ExpectedReplyBytes(their_extra, AbsDiff(ours, theirs));
            if (!ask({rec.lower, rec.upper, Mode::kFingerprint, expected, {}})) return exhausted();
            break;
          }
          case Step::kList:
            if (!ask({rec.lower, rec.upper, Mode::kList, ExpectedReplyBytes(theirs, theirs), {}})) return exhausted();
            break;
          case Step::kSplit: {
            uint64_t diff = std::max<uint64_t>(AbsDiff(ours, theirs), 1);
            uint64_t k = std::min(Branches(ours, theirs), ours);
            size_t expected = ExpectedReplyBytes(theirs > ours ? theirs - ours : 0, diff, k);
            bool ok = true;
            SplitRange(view, rec.lower, rec.upper, side.begin, side.end, ours, theirs,
                            [&](const Bound& lo, const Bound& hi, size_t, size_t) {
                              ok = ok && ask({lo, hi, Mode::kFingerprint, expected, {}});
                            });
            if (!ok) return exhausted();
            break;
          }
        }
        break;
      }
      case Mode::kMissing: {
        const Request& asked = sent_[s];
        if (asked.mode != Mode::kList || asked.lower != rec.lower || asked.upper != rec.upper ||
            rec.count != asked.listed.size())
          return Status::Corruption("missing does not answer a list of ours");
        // The ids as listed: our items in the range may have changed since.
        for (size_t j = 0; j < rec.count; ++j)
          if (BitSet(rec.payload, j)) new_have.push_back(asked.listed[j]);
        break;
      }
      case Mode::kSendList:
        // With nothing to list, our empty fingerprint makes the responder push
        // all it holds; with too many (we stored more there since our last
        // body, or the responder asks for more than it should), our
        // fingerprint makes it split the range.
        if (!ask({rec.lower, rec.upper, ours == 0 || ours > kMaxReconcileListItems ? Mode::kFingerprint : Mode::kList,
                  ExpectedReplyBytes(kListItems, kListItems), {}}))
          return exhausted();
        break;
      default:
        break;  // DecodeBody admits nothing else from a responder
    }
  }

  // Requests the responder had no room to answer are asked again unchanged.
  if (deferred_from) {
    size_t first = sent_.size();
    for (size_t i = 0; i < sent_.size(); ++i) {
      if (sent_[i].lower >= *deferred_from) {
        first = i;
        break;
      }
      if (*deferred_from < sent_[i].upper) return Status::Corruption("deferral splits a request");
    }
    next.insert(next.end(), sent_.begin() + first, sent_.end());
  }
  if (next.size() + pending_.size() > kMaxPendingRequests) return exhausted();

  // Commit. The new requests lie inside the ranges just sent, which all
  // precede the requests not sent yet, so the order is kept.
  next.insert(next.end(), pending_.begin(), pending_.end());
  pending_ = std::move(next);
  sent_.clear();
  awaiting_reply_ = false;
  have->insert(have->end(), new_have.begin(), new_have.end());
  need->insert(need->end(), new_need.begin(), new_need.end());
  if (pending_.empty()) return std::optional<Bytes>();
  return std::optional<Bytes>(NextBody(set));
}

}  // namespace kring
