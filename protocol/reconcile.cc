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
constexpr uint8_t kPrefixFlag = 0x40;
constexpr uint8_t kShiftMask = 0x3f;
constexpr std::string_view kFingerprintContext = "kring/reconcile/fingerprint";

// A range is split into this many sub-ranges, more when the differences look
// dense: few sub-ranges waste few fingerprints on sub-ranges that agree,
// many save round trips. (Measured on 100,000 items: 4 to 16 keeps 1,000
// differences under 60 bytes each in 6-7 round trips; 16 always costs ~90.)
constexpr uint64_t kMinBranches = 4;
constexpr uint64_t kMaxBranches = 16;
// A range with at most this many items is answered with its ids rather than split.
constexpr uint64_t kIdListItems = 2;

// The initiator keeps its bodies to a quarter of the limit, and the replies
// it expects to a bit less than the limit, so that the responder rarely has
// to defer (a deferred request is sent twice).
constexpr size_t kMaxRequestBytes = kMaxReconcileBytes / 4;
constexpr size_t kExpectedReplyBudget = kMaxReconcileBytes - kMaxReconcileBytes / 8;
// Room the responder keeps for a final Deferred range (a Skip gap, then +infinity).
constexpr size_t kDeferredReserve = kMaxRecordHeadBytes + 2;
// The largest number of ranges one answer adds to a reply: a Skip gap, the
// sub-ranges of a split (or an IdList chunk and the remainder's Fingerprint).
constexpr size_t kMaxRangesPerAnswer = 1 + kMaxBranches;
// A session's own bookkeeping is capped so that a hostile responder cannot
// grow it without bound (honest sessions with 20,000 or 50,000 differences
// in 100,000 items peak at about 12,000 and 45,000 requests).
constexpr size_t kMaxPendingRequests = 1 << 18;

enum class Mode : uint8_t {
  kSkip = 0,
  kFingerprint = 1,
  kIdList = 2,
  kSum = 3,
  kSendSum = 4,
  kSendIds = 5,
  kDeferred = 6,
};
constexpr uint64_t kModeBits = 3;

enum class Sender { kInitiator, kResponder };

bool ModeAllowed(Mode mode, Sender from) {
  switch (mode) {
    case Mode::kSkip:
    case Mode::kFingerprint:
      return true;
    case Mode::kSendSum:
    case Mode::kSendIds:
      return from == Sender::kInitiator;
    case Mode::kIdList:
    case Mode::kSum:
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

// A second, non-linear digest of an id. A Sum that differs by one item gives
// that item's id as the difference of sums; the checks must then differ by
// Check(id), which a difference of several items matches with odds 2^-64
// (ids being hashes, not chosen to collide).
uint64_t Check(const Limbs& id) { return Mix64(id[0] ^ Mix64(id[1] ^ Mix64(id[2] ^ Mix64(id[3])))); }

// What a range holds, in the form the protocol compares.
struct Summary {
  uint64_t count = 0;
  Limbs sum{};
  uint64_t check = 0;

  void Add(const Hash& id) {
    Limbs l = LoadLimbs(id.data());
    AddTo(sum, l);
    check += Check(l);
    ++count;
  }
};

// ---- varints and bounds ---------------------------------------------------------

void PutVarint(Bytes& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<uint8_t>(v));
}

using Fingerprint = std::array<uint8_t, kReconcileFingerprintBytes>;

// Over the check as well as the sum: ids that are not uniformly random
// (small integers, say) have colliding sums, {1, 4} and {2, 3}, but not checks.
Fingerprint FingerprintOf(const Summary& s) {
  uint8_t digest[kSumBytes + kCheckBytes];
  std::memcpy(digest, s.sum.data(), kSumBytes);
  std::memcpy(digest + kSumBytes, &s.check, kCheckBytes);
  Bytes count;
  PutVarint(count, s.count);
  Hash h = HashParts(kFingerprintContext, {ByteSpan(digest, sizeof(digest)), ByteSpan(count)});
  Fingerprint fp;
  std::copy_n(h.begin(), fp.size(), fp.begin());
  return fp;
}

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
  ByteSpan payload;
};

// Decodes and checks a whole body before anything acts on it.
Status DecodeBody(ByteSpan body, Sender from, std::vector<Record>* out) {
  if (body.size() > kMaxReconcileBytes) return Status::Corruption("body over the size limit");
  if (body.empty()) return Status::Corruption("empty body");
  Reader r(body);
  Bound prev = Bound::Min();
  bool prev_was_skip = false;
  size_t ranges = 0;
  while (r.left() > 0) {
    if (prev.infinite) return Status::Corruption("range after +infinity");
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
    switch (rec.mode) {
      case Mode::kSkip:
        if (prev_was_skip) return Status::Corruption("two skips in a row");
        [[fallthrough]];
      case Mode::kSendSum:
      case Mode::kSendIds:
        if (rec.count != 0) return Status::Corruption("count on a range that has none");
        break;
      case Mode::kDeferred:
        if (rec.count != 0) return Status::Corruption("count on a range that has none");
        if (!upper.infinite) return Status::Corruption("deferred range does not reach +infinity");
        break;
      case Mode::kFingerprint:
        if (rec.count > 0) KRING_RETURN_IF_ERROR(r.Take(kReconcileFingerprintBytes, &rec.payload));
        break;
      case Mode::kIdList:
        if (rec.count > kMaxReconcileIds) return Status::Corruption("idlist over its limit");
        if (rec.count > r.left() / kHashBytes) return Status::Corruption("idlist longer than the body");
        KRING_RETURN_IF_ERROR(r.Take(rec.count * kHashBytes, &rec.payload));
        break;
      case Mode::kSum:
        KRING_RETURN_IF_ERROR(r.Take(kSumBytes + kCheckBytes, &rec.payload));
        break;
    }
    prev_was_skip = rec.mode == Mode::kSkip;
    if (!prev_was_skip) out->push_back(rec);
    prev = upper;
  }
  if (!prev.infinite) return Status::Corruption("body does not reach +infinity");
  return Status::Ok();
}

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

  // Closes the body with a Skip up to +infinity if it does not reach it yet.
  Bytes Finish() && {
    if (!last_.infinite) PutRange(Bound::Infinity(), Mode::kSkip, 0);
    return std::move(out_);
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

void PutSum(BodyWriter& w, const Summary& s) {
  uint8_t buf[kSumBytes + kCheckBytes];
  std::memcpy(buf, s.sum.data(), kSumBytes);
  std::memcpy(buf + kSumBytes, &s.check, kCheckBytes);
  w.Put(ByteSpan(buf, sizeof(buf)));
}

void PutFingerprint(BodyWriter& w, const Summary& s) {
  if (s.count > 0) w.Put(FingerprintOf(s));
}

uint64_t AbsDiff(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

}  // namespace

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

// Range queries over a ReconcileSet by bounds and by item index.
class ReconcileView {
 public:
  explicit ReconcileView(const ReconcileSet& set) : set_(set) {}

  const ItemKey& item(size_t i) const { return set_.items_[i]; }

  // The index of the first item at or above `b`.
  size_t Find(const Bound& b) const {
    if (b.infinite) return set_.items_.size();
    return static_cast<size_t>(std::lower_bound(set_.items_.begin(), set_.items_.end(), b.key) -
                               set_.items_.begin());
  }

  // The summary of items [begin, end): a checkpoint difference plus at most
  // two strides of items, so O(1) after the binary searches that found them.
  Summary Summarize(size_t begin, size_t end) const {
    if (end - begin <= kCheckpointStride) return Direct(begin, end);
    Summary hi = Prefix(end), lo = Prefix(begin);
    Summary s;
    s.count = end - begin;
    s.sum = Minus(hi.sum, lo.sum);
    s.check = hi.check - lo.check;
    return s;
  }

 private:
  Summary Direct(size_t begin, size_t end) const {
    Summary s;
    for (size_t i = begin; i < end; ++i) s.Add(set_.items_[i].id);
    return s;
  }
  Summary Prefix(size_t end) const {
    size_t k = end / kCheckpointStride;
    Summary s = Direct(k * kCheckpointStride, end);
    AddTo(s.sum, set_.checkpoints_[k].sum);
    s.check += set_.checkpoints_[k].check;
    return s;
  }

  const ReconcileSet& set_;
};

namespace {

// Splits the items [begin, end) of the range [lower, upper) into about
// `branches` sub-ranges of equal item counts and calls emit(lower, upper,
// begin, end) for each. REQUIRES: end - begin >= 1
template <class Emit>
void ForEachSubRange(const ReconcileView& view, const Bound& lower, const Bound& upper, size_t begin,
                     size_t end, uint64_t branches, Emit emit) {
  size_t n = end - begin;
  size_t k = static_cast<size_t>(std::min<uint64_t>(branches, n));
  Bound from = lower;
  size_t first = begin;
  for (size_t c = 1; c <= k; ++c) {
    size_t last = begin + n * c / k;
    Bound to = c == k ? upper : SplitBound(view.item(last - 1), view.item(last));
    emit(from, to, first, last);
    from = to;
    first = last;
  }
}

bool Matches(const Record& rec, const Summary& own) {
  if (rec.count != own.count) return false;
  if (own.count == 0) return true;
  Fingerprint fp = FingerprintOf(own);
  return std::equal(fp.begin(), fp.end(), rec.payload.begin());
}

// Our side of each range of a received body, and how widely to split the
// ranges that differ.
struct Comparison {
  struct Side {
    size_t begin, end;  // our items in the range
    Summary own;
    bool matches;       // for a Fingerprint: ours is the same
  };
  std::vector<Side> sides;
  // When every fingerprint compared differs, differences are dense (or the
  // body is the first, covering everything): split wide. Otherwise by the
  // count difference, which is at most the number of differences.
  uint64_t min_branches = kMinBranches;

  uint64_t Branches(uint64_t count_difference) const {
    return std::clamp(std::max(count_difference, min_branches), kMinBranches, kMaxBranches);
  }
};

Comparison Compare(const ReconcileView& view, const std::vector<Record>& records) {
  Comparison c;
  c.sides.reserve(records.size());
  size_t compared = 0, differing = 0;
  for (const Record& rec : records) {
    Comparison::Side side;
    side.begin = view.Find(rec.lower);
    side.end = view.Find(rec.upper);
    side.own = view.Summarize(side.begin, side.end);
    side.matches = rec.mode == Mode::kFingerprint && Matches(rec, side.own);
    if (rec.mode == Mode::kFingerprint) {
      ++compared;
      differing += !side.matches;
    }
    c.sides.push_back(side);
  }
  if (compared > 0 && differing == compared) c.min_branches = kMaxBranches;
  return c;
}

// ---- the responder ------------------------------------------------------------------

class Responder {
 public:
  explicit Responder(const ReconcileSet& set) : view_(set) {}

  Result<Bytes> Run(ByteSpan body) {
    std::vector<Record> records;
    KRING_RETURN_IF_ERROR(DecodeBody(body, Sender::kInitiator, &records));
    Comparison c = Compare(view_, records);
    for (size_t i = 0; i < records.size(); ++i) {
      const Record& rec = records[i];
      BodyWriter::Mark mark = out_.mark();
      bool fits = out_.ranges() + kMaxRangesPerAnswer + 2 <= kMaxReconcileRanges &&
                  Answer(rec, c, c.sides[i]) && out_.size() <= kLimit;
      if (!fits) {
        // Out of room: the initiator asks again for this range and the rest.
        out_.Rewind(mark);
        out_.Begin(rec.lower, Bound::Infinity(), Mode::kDeferred, 0);
        break;
      }
    }
    return std::move(out_).Finish();
  }

 private:
  static constexpr size_t kLimit = kMaxReconcileBytes - kDeferredReserve;

  // Appends the answer to one range; false if it cannot fit.
  bool Answer(const Record& rec, const Comparison& c, const Comparison::Side& side) {
    size_t begin = side.begin, end = side.end;
    const Summary& own = side.own;
    switch (rec.mode) {
      case Mode::kSendSum:
        out_.Begin(rec.lower, rec.upper, Mode::kSum, own.count);
        PutSum(out_, own);
        return true;
      case Mode::kSendIds:
        return AnswerIds(rec.lower, rec.upper, begin, end);
      case Mode::kFingerprint:
        break;
      default:
        return true;  // DecodeBody admits nothing else from an initiator
    }
    if (side.matches) return true;  // settled: the gap becomes a Skip
    uint64_t theirs = rec.count;
    // Few items on either side: the ids cost at most one id beyond the differences.
    if (theirs <= 1 || own.count <= 1) return AnswerIds(rec.lower, rec.upper, begin, end);
    uint64_t diff = AbsDiff(own.count, theirs);
    if (diff == 1) {  // probably one item apart: the Sum names it
      out_.Begin(rec.lower, rec.upper, Mode::kSum, own.count);
      PutSum(out_, own);
      return true;
    }
    if (own.count <= kIdListItems) return AnswerIds(rec.lower, rec.upper, begin, end);
    ForEachSubRange(view_, rec.lower, rec.upper, begin, end, c.Branches(diff),
                    [&](const Bound& lo, const Bound& hi, size_t b, size_t e) {
                      Summary s = view_.Summarize(b, e);
                      out_.Begin(lo, hi, Mode::kFingerprint, s.count);
                      PutFingerprint(out_, s);
                    });
    return true;
  }

  // Our ids in [lower, upper), as many as fit; the rest as a Fingerprint
  // the initiator will ask about again.
  bool AnswerIds(const Bound& lower, const Bound& upper, size_t begin, size_t end) {
    size_t room = kLimit - std::min(kLimit, out_.size() + 3 * kMaxRecordHeadBytes + kReconcileFingerprintBytes);
    size_t n = std::min({end - begin, room / kHashBytes, kMaxReconcileIds});
    if (n == 0 && end > begin) return false;
    Bound to = begin + n == end ? upper : SplitBound(view_.item(begin + n - 1), view_.item(begin + n));
    out_.Begin(lower, to, Mode::kIdList, n);
    for (size_t i = begin; i < begin + n; ++i) out_.Put(view_.item(i).id);
    if (begin + n < end) {
      Summary rest = view_.Summarize(begin + n, end);
      out_.Begin(to, upper, Mode::kFingerprint, rest.count);
      PutFingerprint(out_, rest);
    }
    return true;
  }

  ReconcileView view_;
  BodyWriter out_;
};

}  // namespace

Result<Bytes> Respond(const ReconcileSet& set, ByteSpan body) { return Responder(set).Run(body); }

// ---- the initiator --------------------------------------------------------------------

struct Reconciler::Request {
  Bound lower, upper;
  Mode mode;                 // kFingerprint, kSendSum or kSendIds
  uint64_t their_count = 0;  // for kSendIds: the size of the IdList we expect
};

namespace {

// The reply we expect to a request, to keep replies under the limit. For a
// Fingerprint a typical split (~8 bytes of bound and tag per sub-range);
// wider splits happen, and the responder defers what does not fit.
size_t ExpectedReplyBytes(Mode mode, uint64_t their_count) {
  switch (mode) {
    case Mode::kSendIds:
      return 2 * kMaxRecordHeadBytes + kHashBytes * std::min<size_t>(their_count, kMaxReconcileIds);
    case Mode::kSendSum:
      return kMaxRecordHeadBytes + kSumBytes + kCheckBytes;
    default:
      return kMinBranches * (8 + kReconcileFingerprintBytes) + 16;
  }
}

}  // namespace

Reconciler::Reconciler(const ReconcileSet& set) : set_(&set) {}
Reconciler::~Reconciler() = default;

Bytes Reconciler::Initiate() {
  pending_.clear();
  pending_.push_back(Request{Bound::Min(), Bound::Infinity(), Mode::kFingerprint});
  return NextBody();
}

Bytes Reconciler::NextBody() {
  ReconcileView view(*set_);
  BodyWriter w;
  size_t taken = 0, expected = 0;
  for (const Request& r : pending_) {
    size_t reply = ExpectedReplyBytes(r.mode, r.their_count);
    bool room = w.size() + 2 * kMaxRecordHeadBytes + kReconcileFingerprintBytes <= kMaxRequestBytes &&
                w.ranges() + 3 <= kMaxReconcileRanges && expected + reply <= kExpectedReplyBudget;
    if (taken > 0 && !room) break;
    expected += reply;
    if (r.mode == Mode::kFingerprint) {
      Summary own = view.Summarize(view.Find(r.lower), view.Find(r.upper));
      w.Begin(r.lower, r.upper, Mode::kFingerprint, own.count);
      PutFingerprint(w, own);
    } else {
      w.Begin(r.lower, r.upper, r.mode, 0);
    }
    ++taken;
  }
  sent_.assign(pending_.begin(), pending_.begin() + taken);
  pending_.erase(pending_.begin(), pending_.begin() + taken);
  awaiting_reply_ = true;
  return std::move(w).Finish();
}

Result<std::optional<Bytes>> Reconciler::Continue(ByteSpan reply, std::vector<Hash>* have,
                                                  std::vector<Hash>* need) {
  if (!awaiting_reply_) return Status::InvalidArgument("no reconciliation body awaits a reply");
  std::vector<Record> records;
  KRING_RETURN_IF_ERROR(DecodeBody(reply, Sender::kResponder, &records));

  ReconcileView view(*set_);
  Comparison c = Compare(view, records);
  std::vector<Request> next;  // requests for the ranges of this reply, in order
  std::vector<Hash> new_have, new_need;

  auto own_ids = [&](size_t begin, size_t end, std::vector<Hash>* out) {
    for (size_t i = begin; i < end; ++i) out->push_back(view.item(i).id);
  };
  // What to ask next about a range that differs, knowing both counts.
  auto plan = [&](const Bound& lower, const Bound& upper, size_t begin, size_t end, uint64_t theirs,
                  bool may_ask_sum) {
    uint64_t ours = end - begin;
    if (theirs == 0) return own_ids(begin, end, &new_have);
    if (ours <= 1 || theirs <= kIdListItems) {
      // Their ids cost at most kIdListItems ids beyond the differences.
      next.push_back(Request{lower, upper, Mode::kSendIds, theirs});
      return;
    }
    uint64_t diff = AbsDiff(ours, theirs);
    if (diff == 1 && may_ask_sum) {
      next.push_back(Request{lower, upper, Mode::kSendSum});
      return;
    }
    ForEachSubRange(view, lower, upper, begin, end, c.Branches(diff),
                    [&](const Bound& lo, const Bound& hi, size_t, size_t) {
                      next.push_back(Request{lo, hi, Mode::kFingerprint});
                    });
  };

  size_t s = 0;  // the sent request the current record answers
  std::optional<Bound> deferred_from;
  for (size_t i = 0; i < records.size(); ++i) {
    const Record& rec = records[i];
    const Comparison::Side& side = c.sides[i];
    if (rec.mode == Mode::kDeferred) {
      deferred_from = rec.lower;
      break;  // DecodeBody: it ends at +infinity, so it is the last range
    }
    // "Is this a reply to something we asked": inside one of our requests.
    while (s < sent_.size() && sent_[s].upper <= rec.lower) ++s;
    if (s == sent_.size() || rec.lower < sent_[s].lower || sent_[s].upper < rec.upper)
      return Status::Corruption("reply covers a range we did not ask about");

    size_t begin = side.begin, end = side.end;
    const Summary& own = side.own;
    switch (rec.mode) {
      case Mode::kFingerprint:
        if (!side.matches) plan(rec.lower, rec.upper, begin, end, rec.count, /*may_ask_sum=*/true);
        break;
      case Mode::kSum: {
        Limbs sum = LoadLimbs(rec.payload.data());
        uint64_t check;
        std::memcpy(&check, rec.payload.data() + kSumBytes, kCheckBytes);
        Hash id;
        if (rec.count == own.count + 1) {
          Limbs x = Minus(sum, own.sum);
          if (Check(x) == check - own.check) {
            std::memcpy(id.data(), x.data(), kHashBytes);
            new_need.push_back(id);
            break;
          }
        } else if (own.count == rec.count + 1) {
          Limbs x = Minus(own.sum, sum);
          if (Check(x) == own.check - check) {
            std::memcpy(id.data(), x.data(), kHashBytes);
            new_have.push_back(id);
            break;
          }
        } else if (rec.count == own.count && sum == own.sum && check == own.check) {
          break;
        }
        // More than one item apart: narrow it down without asking for a Sum again.
        plan(rec.lower, rec.upper, begin, end, rec.count, /*may_ask_sum=*/false);
        break;
      }
      case Mode::kIdList: {
        std::vector<Hash> theirs(rec.count);
        for (size_t i = 0; i < theirs.size(); ++i)
          std::memcpy(theirs[i].data(), rec.payload.data() + i * kHashBytes, kHashBytes);
        std::sort(theirs.begin(), theirs.end());
        if (std::adjacent_find(theirs.begin(), theirs.end()) != theirs.end())
          return Status::Corruption("idlist repeats an id");
        std::vector<bool> matched(theirs.size());
        for (size_t i = begin; i < end; ++i) {
          auto it = std::lower_bound(theirs.begin(), theirs.end(), view.item(i).id);
          if (it != theirs.end() && *it == view.item(i).id) {
            matched[it - theirs.begin()] = true;
          } else {
            new_have.push_back(view.item(i).id);
          }
        }
        for (size_t i = 0; i < theirs.size(); ++i)
          if (!matched[i]) new_need.push_back(theirs[i]);
        break;
      }
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
  if (next.size() + pending_.size() > kMaxPendingRequests)
    return Status::ResourceExhausted("reconciliation session too large");

  // Commit. The new requests lie inside the ranges just sent, which all
  // precede the requests not sent yet, so the order is kept.
  next.insert(next.end(), pending_.begin(), pending_.end());
  pending_ = std::move(next);
  sent_.clear();
  awaiting_reply_ = false;
  have->insert(have->end(), new_have.begin(), new_have.end());
  need->insert(need->end(), new_need.begin(), new_need.end());
  if (pending_.empty()) return std::optional<Bytes>();
  return std::optional<Bytes>(NextBody());
}

}  // namespace kring
