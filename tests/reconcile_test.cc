// Tests of range-based set reconciliation: exact differences, round trips and bytes, hostile bodies.
#include "protocol/reconcile.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>

#include "protocol/hlc.h"
#include "protocol/messages.h"

namespace kring {
namespace {

// Records written over about a month, a few per millisecond at most.
ItemKey RandomItem(std::mt19937_64& rng) {
  constexpr uint64_t kStartMillis = 1'700'000'000'000;
  constexpr uint64_t kMonthMillis = 30ull * 24 * 3600 * 1000;
  ItemKey k;
  k.hlc = MakeHlc(kStartMillis + rng() % kMonthMillis, static_cast<uint16_t>(rng() % 4));
  for (size_t i = 0; i < k.id.size(); i += 8) {
    uint64_t w = rng();
    std::copy_n(reinterpret_cast<const uint8_t*>(&w), 8, k.id.begin() + i);
  }
  return k;
}

std::vector<ItemKey> RandomItems(std::mt19937_64& rng, size_t n) {
  std::vector<ItemKey> v(n);
  for (ItemKey& k : v) k = RandomItem(rng);
  return v;
}

// Two sets sharing `common` items; `only_a` items only in a, `only_b` only in b.
struct SetPair {
  std::vector<ItemKey> a, b;
  std::vector<Hash> only_a, only_b;
};

SetPair MakePair(uint64_t seed, size_t common, size_t only_a, size_t only_b) {
  std::mt19937_64 rng(seed);
  SetPair p;
  p.a = RandomItems(rng, common);
  p.b = p.a;
  for (size_t i = 0; i < only_a; ++i) {
    p.a.push_back(RandomItem(rng));
    p.only_a.push_back(p.a.back().id);
  }
  for (size_t i = 0; i < only_b; ++i) {
    p.b.push_back(RandomItem(rng));
    p.only_b.push_back(p.b.back().id);
  }
  return p;
}

struct Session {
  std::vector<Hash> have, need;
  size_t rounds = 0;         // initiator body + reply
  size_t bytes = 0;          // every body both ways
  size_t largest_body = 0;
  size_t first_round_bytes = 0;
};

// Runs a whole session in memory: `a` initiates, `b` responds.
Session Reconcile(const ReconcileSet& a, const ReconcileSet& b) {
  Session s;
  Reconciler r(a);
  std::optional<Bytes> body = r.Initiate();
  while (body) {
    REQUIRE(s.rounds < 1000);
    Result<Bytes> reply = Respond(b, *body);
    REQUIRE_MESSAGE(reply.ok(), reply.status().ToString());
    ++s.rounds;
    s.bytes += body->size() + reply->size();
    s.largest_body = std::max({s.largest_body, body->size(), reply->size()});
    if (s.rounds == 1) s.first_round_bytes = s.bytes;
    Result<std::optional<Bytes>> next = r.Continue(*reply, &s.have, &s.need);
    REQUIRE_MESSAGE(next.ok(), next.status().ToString());
    body = std::move(*next);
  }
  return s;
}

std::vector<Hash> Sorted(std::vector<Hash> v) {
  std::sort(v.begin(), v.end());
  return v;
}

void CheckFinds(const SetPair& p, const Session& s) {
  CHECK(Sorted(s.have) == Sorted(p.only_a));
  CHECK(Sorted(s.need) == Sorted(p.only_b));
}

TEST_CASE("two empty sets reconcile in one round trip") {
  ReconcileSet empty({});
  Session s = Reconcile(empty, empty);
  CHECK(s.rounds == 1);
  CHECK(s.have.empty());
  CHECK(s.need.empty());
  CHECK(s.bytes <= 4);
}

TEST_CASE("an initiator with no items learns every id the responder holds") {
  SetPair p = MakePair(1, 0, 0, 3000);
  Session s = Reconcile(ReconcileSet(p.a), ReconcileSet(p.b));
  CheckFinds(p, s);
  CHECK(s.rounds == 1);
  CHECK(s.bytes <= 3000 * kHashBytes + 64);
}

TEST_CASE("an initiator facing an empty responder pushes everything it holds") {
  SetPair p = MakePair(2, 0, 3000, 0);
  Session s = Reconcile(ReconcileSet(p.a), ReconcileSet(p.b));
  CheckFinds(p, s);
  CHECK(s.rounds == 1);
  CHECK(s.bytes <= 64);
}

TEST_CASE("identical sets of 100,000 items reconcile in one round trip of under 64 bytes") {
  SetPair p = MakePair(3, 100'000, 0, 0);
  ReconcileSet a(p.a), b(p.b);
  Session s = Reconcile(a, b);
  MESSAGE("in sync: " << s.bytes << " bytes in " << s.rounds << " round trip");
  CHECK(s.rounds == 1);
  CHECK(s.bytes <= 64);
  CHECK(s.have.empty());
  CHECK(s.need.empty());
}

TEST_CASE("random differences on both sides are found exactly") {
  struct Case {
    size_t common, only_a, only_b;
  };
  for (const Case& c : {Case{10, 1, 1}, Case{100, 0, 7}, Case{1000, 13, 0}, Case{5000, 40, 60},
                        Case{20'000, 500, 300}, Case{300, 300, 300}, Case{1, 2000, 2000}}) {
    for (uint64_t seed = 10; seed < 14; ++seed) {
      CAPTURE(c.common);
      CAPTURE(c.only_a);
      CAPTURE(c.only_b);
      CAPTURE(seed);
      SetPair p = MakePair(seed, c.common, c.only_a, c.only_b);
      CheckFinds(p, Reconcile(ReconcileSet(p.a), ReconcileSet(p.b)));
    }
  }
}

TEST_CASE("items sharing one hlc are told apart by their ids") {
  for (uint64_t seed = 20; seed < 24; ++seed) {
    CAPTURE(seed);
    SetPair p = MakePair(seed, 3000, 30, 20);
    for (auto* v : {&p.a, &p.b})
      for (ItemKey& k : *v) k.hlc = MakeHlc(1'700'000'000'000, 7);
    CheckFinds(p, Reconcile(ReconcileSet(p.a), ReconcileSet(p.b)));
  }
}

TEST_CASE("ids sharing long prefixes under one hlc are told apart") {
  std::mt19937_64 rng(25);
  std::vector<ItemKey> a, b;
  for (int i = 0; i < 600; ++i) {
    ItemKey k{42, {}};
    k.id[31] = static_cast<uint8_t>(i);
    k.id[30] = static_cast<uint8_t>(i >> 8);
    (rng() % 10 == 0 ? a : rng() % 10 == 0 ? b : a).push_back(k);
    if (rng() % 10 > 1) b.push_back(k);
  }
  SetPair p{a, b, {}, {}};
  std::set<ItemKey> sa(a.begin(), a.end()), sb(b.begin(), b.end());
  for (const ItemKey& k : sa)
    if (!sb.count(k)) p.only_a.push_back(k.id);
  for (const ItemKey& k : sb)
    if (!sa.count(k)) p.only_b.push_back(k.id);
  CheckFinds(p, Reconcile(ReconcileSet(a), ReconcileSet(b)));
}

TEST_CASE("a set given unsorted and with duplicates reconciles like the sorted set") {
  SetPair p = MakePair(30, 500, 5, 5);
  std::vector<ItemKey> shuffled = p.a;
  shuffled.insert(shuffled.end(), p.a.begin(), p.a.begin() + 100);
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(31));
  ReconcileSet a(shuffled);
  CHECK(a.size() == p.a.size());
  CHECK(std::is_sorted(a.items().begin(), a.items().end()));
  CheckFinds(p, Reconcile(a, ReconcileSet(p.b)));
}

TEST_CASE("bytes exchanged stay within 64 per differing item plus 2 KB beyond the ids") {
  constexpr size_t kItems = 100'000;
  for (size_t d : {1, 10, 100, 1000}) {
    SUBCASE(("d = " + std::to_string(d)).c_str()) {
      for (uint64_t seed = 40; seed < 43; ++seed) {
        // Each differing item is missing on one side, chosen at random.
        std::mt19937_64 rng(seed);
        size_t only_a = 0;
        for (size_t i = 0; i < d; ++i) only_a += rng() % 2;
        SetPair p = MakePair(seed, kItems - d, only_a, d - only_a);
        Session s = Reconcile(ReconcileSet(p.a), ReconcileSet(p.b));
        CheckFinds(p, s);
        size_t overhead = s.bytes - d * kHashBytes;
        MESSAGE("N=" << kItems << " d=" << d << " seed=" << seed << ": " << s.bytes << " bytes, " << overhead
                     << " beyond the ids (" << overhead / d << " per item), " << s.rounds << " round trips");
        CHECK(s.bytes >= d * kHashBytes);
        CHECK(overhead <= 64 * d + 2048);
        CHECK(s.rounds <= 8);
      }
    }
  }
}

TEST_CASE("twenty thousand missing items complete with every body under the limit") {
  SetPair p = MakePair(50, 30'000, 0, 20'000);
  Session s = Reconcile(ReconcileSet(p.a), ReconcileSet(p.b));
  CheckFinds(p, s);
  MESSAGE("20,000 missing of 50,000: " << s.bytes << " bytes in " << s.rounds << " round trips, largest body "
                                       << s.largest_body);
  CHECK(s.largest_body <= kMaxReconcileBytes);
  CHECK(s.rounds > 1);

  SetPair q = MakePair(51, 1000, 20'000, 10'000);
  Session t = Reconcile(ReconcileSet(q.a), ReconcileSet(q.b));
  CheckFinds(q, t);
  MESSAGE("20,000 + 10,000 differences: " << t.bytes << " bytes in " << t.rounds << " round trips");
  CHECK(t.largest_body <= kMaxReconcileBytes);
}

// ---- hostile bodies ----------------------------------------------------------------

TEST_CASE("every truncated prefix of an initiator body is rejected") {
  SetPair p = MakePair(60, 2000, 40, 40);
  ReconcileSet a(p.a), b(p.b);
  Reconciler r(a);
  Bytes body = r.Initiate();
  std::vector<Hash> have, need;
  // The second body has many ranges of several kinds.
  Result<Bytes> reply = Respond(b, body);
  REQUIRE(reply.ok());
  Result<std::optional<Bytes>> next = r.Continue(*reply, &have, &need);
  REQUIRE(next.ok());
  REQUIRE(next->has_value());
  for (const Bytes& full : {body, **next}) {
    REQUIRE(Respond(b, full).ok());
    for (size_t n = 0; n < full.size(); ++n) {
      Result<Bytes> res = Respond(b, ByteSpan(full.data(), n));
      CHECK_MESSAGE(res.status().code() == Status::Code::kCorruption, "prefix of ", n, " bytes");
    }
  }
}

TEST_CASE("every truncated prefix of a reply is rejected and leaves the session as it was") {
  SetPair p = MakePair(61, 2000, 0, 200);
  ReconcileSet a(p.a), b(p.b);
  Reconciler r(a);
  Bytes reply = *Respond(b, r.Initiate());
  REQUIRE(reply.size() > 100);
  std::vector<Hash> have, need;
  for (size_t n = 0; n < reply.size(); ++n) {
    Result<std::optional<Bytes>> res = r.Continue(ByteSpan(reply.data(), n), &have, &need);
    CHECK_MESSAGE(res.status().code() == Status::Code::kCorruption, "prefix of ", n, " bytes");
  }
  CHECK(have.empty());
  CHECK(need.empty());
  // The session still completes with the whole reply.
  Result<std::optional<Bytes>> res = r.Continue(reply, &have, &need);
  REQUIRE(res.ok());
}

// Hand-built bodies. A bound at hlc = previous + 2^z is {z, 1}; +infinity is 0x80.
// Tags: (count << 3) | mode with Skip 0, Fingerprint 1, IdList 2, Sum 3, SendSum 4, SendIds 5, Deferred 6.

TEST_CASE("an idlist claiming more ids than the bytes left is rejected") {
  ReconcileSet a(MakePair(70, 10, 0, 0).a);
  Reconciler r(a);
  r.Initiate();
  std::vector<Hash> have, need;
  // +infinity, IdList of 1,000 ids (a two-byte tag), then one id.
  constexpr uint64_t kTag = (1000 << 3) | 2;
  Bytes reply = {0x80, static_cast<uint8_t>((kTag & 0x7f) | 0x80), static_cast<uint8_t>(kTag >> 7)};
  reply.resize(reply.size() + kHashBytes, 0xab);
  Result<std::optional<Bytes>> res = r.Continue(reply, &have, &need);
  CHECK(res.status().code() == Status::Code::kCorruption);
  CHECK(res.status().message() == "idlist longer than the body");

  Bytes huge = {0x80, 0xfa, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};  // IdList of ~2^61 ids
  res = r.Continue(huge, &have, &need);
  CHECK(res.status().message() == "idlist over its limit");
}

TEST_CASE("ranges whose bounds do not increase are rejected") {
  ReconcileSet b(MakePair(71, 100, 0, 0).a);
  // [0, 2^20) SendSum, then a bound with delta 0 (the same key), then +infinity.
  Bytes same = {20, 1, 4, 0x00, 0x00, 4, 0x80, 0};
  Result<Bytes> res = Respond(b, same);
  CHECK(res.status().message() == "ranges not increasing");
  // The very first range may not be empty either.
  Bytes empty_first = {0x00, 0x00, 4, 0x80, 0};
  CHECK(Respond(b, empty_first).status().message() == "ranges not increasing");
  // Nothing after +infinity.
  Bytes after_end = {0x80, 4, 20, 1, 4};
  CHECK(Respond(b, after_end).status().message() == "range after +infinity");
}

TEST_CASE("malformed varints and bounds are rejected") {
  ReconcileSet b(MakePair(72, 100, 0, 0).a);
  struct Case {
    Bytes body;
    const char* message;
  };
  for (const Case& c : {
           Case{{0x80, 0x84, 0x00}, "varint not minimal"},
           Case{{0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, "varint over 64 bits"},
           Case{{0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00}, "varint over 64 bits"},
           Case{{0x81, 4}, "bad bound header"},
           Case{{20, 2, 4, 0x80, 0}, "bound not canonical"},     // even magnitude
           Case{{63, 3, 4, 0x80, 0}, "bound hlc overflows"},     // 3 << 63
           Case{{0x40, 0, 33, 4, 0x80, 0}, "bad bound prefix length"},
           Case{{0x40, 0, 2, 7, 0, 4, 0x80, 0}, "bound not canonical"},  // prefix ends in zero
           Case{{0x80, 2}, "mode not allowed in this direction"},
           Case{{0x80, 7}, "unknown mode"},
           Case{{0x80, 4 | 8}, "count on a range that has none"},
           Case{{20, 1, 0, 0x80, 0}, "two skips in a row"},
           Case{{20, 1, 4}, "body does not reach +infinity"},
           Case{{}, "empty body"},
       }) {
    CAPTURE(c.message);
    Result<Bytes> res = Respond(b, c.body);
    CHECK(res.status().code() == Status::Code::kCorruption);
    CHECK(res.status().message() == c.message);
  }
}

TEST_CASE("a reply about a range the initiator did not ask about is rejected") {
  SetPair p = MakePair(73, 1000, 10, 10);
  ReconcileSet a(p.a), b(p.b);
  Reconciler r(a);
  Bytes first = r.Initiate();
  std::vector<Hash> have, need;
  Result<std::optional<Bytes>> second = r.Continue(*Respond(b, first), &have, &need);
  REQUIRE(second.ok());
  REQUIRE(second->has_value());
  // The second body asks about parts of the key space only; this answers all of it.
  Result<std::optional<Bytes>> res = r.Continue(Bytes{0x80, 1}, &have, &need);
  CHECK(res.status().code() == Status::Code::kCorruption);
  CHECK(res.status().message() == "reply covers a range we did not ask about");
  // "All settled" is a fine answer to anything.
  res = r.Continue(Bytes{0x80, 0x00}, &have, &need);
  REQUIRE(res.ok());
  CHECK(!res->has_value());
  // No body awaits a reply once the session is complete.
  CHECK(r.Continue(Bytes{0x80, 0x00}, &have, &need).status().code() == Status::Code::kInvalidArgument);
}

TEST_CASE("a deferred reply makes the initiator ask the same again") {
  SetPair p = MakePair(74, 1000, 0, 0);
  ReconcileSet a(p.a);
  Reconciler r(a);
  Bytes first = r.Initiate();
  std::vector<Hash> have, need;
  Result<std::optional<Bytes>> again = r.Continue(Bytes{0x80, 6}, &have, &need);
  REQUIRE(again.ok());
  REQUIRE(again->has_value());
  CHECK(**again == first);
}

TEST_CASE("a responder short of room defers the rest and stays under the limit") {
  std::mt19937_64 rng(75);
  std::vector<ItemKey> items = RandomItems(rng, 100'000);
  for (ItemKey& k : items) k.hlc = rng() % (200ull << 20);
  ReconcileSet b(items);
  // 200 ranges of 2^20 hlc each, every one asking for all its ids (3.2 MB in all).
  Bytes body;
  for (int i = 0; i < 200; ++i) body.insert(body.end(), {20, 1, 5});
  body.insert(body.end(), {0x80, 5});
  Result<Bytes> reply = Respond(b, body);
  REQUIRE(reply.ok());
  CHECK(reply->size() <= kMaxReconcileBytes);
  CHECK(reply->size() > kMaxReconcileBytes / 2);
  CHECK(Bytes(reply->end() - 2, reply->end()) == Bytes{0x80, 6});
}

TEST_CASE("random bytes never crash the responder or the initiator") {
  ReconcileSet set(MakePair(80, 500, 0, 0).a);
  std::mt19937_64 rng(81);
  std::vector<Hash> have, need;
  for (int i = 0; i < 20'000; ++i) {
    Bytes junk(rng() % 64);
    for (uint8_t& byte : junk) byte = static_cast<uint8_t>(rng());
    (void)Respond(set, junk);
    Reconciler r(set);
    r.Initiate();
    (void)r.Continue(junk, &have, &need);
  }
  // Valid bodies with one byte flipped.
  SetPair p = MakePair(82, 500, 20, 20);
  ReconcileSet a(p.a), b(p.b);
  Reconciler r(a);
  Bytes body = r.Initiate();
  Bytes reply = *Respond(b, body);
  for (size_t i = 0; i < reply.size(); ++i) {
    for (uint8_t flip : {0x01, 0x80, 0xff}) {
      Bytes bent = reply;
      bent[i] ^= flip;
      Reconciler fresh(a);
      fresh.Initiate();
      std::vector<Hash> h, n;
      Result<std::optional<Bytes>> res = fresh.Continue(bent, &h, &n);
      if (res.ok() && res->has_value()) (void)Respond(b, **res);
    }
  }
}

}  // namespace
}  // namespace kring
