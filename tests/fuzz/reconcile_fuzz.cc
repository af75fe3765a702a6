// libFuzzer target for set reconciliation: hostile bodies to both sides, and whole sessions that must find the differences.
//
// The first input byte picks what the rest is:
//   0: a body from an initiator, answered by Respond against a fixed set;
//      what it pushes must be items of that set;
//   1: a reply to an initiator's first body, and, if accepted, the reply to
//      whatever that initiator sends next;
//   2: a description of two sets; a whole session between them must end
//      within bounded rounds, with every body under kMaxReconcileBytes, and
//      find exactly the ids one holds and the other lacks (the responder
//      pushes its own, unnamed);
//   3: the same with one-octet list prefixes, which collide: the session may
//      miss differences, but never names an id that is not one.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "protocol/messages.h"
#include "protocol/reconcile.h"

namespace {

using kring::Bytes;
using kring::ByteSpan;
using kring::Hash;
using kring::ItemKey;
using kring::ReconcileSet;
using kring::Reconciler;

void Require(bool ok) {
  if (!ok) std::abort();
}

// Items with hlcs crowded into few values, so bounds need id prefixes too.
std::vector<ItemKey> FixedItems(uint64_t seed, size_t n) {
  std::vector<ItemKey> v(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t x = seed + i * 0x9e3779b97f4a7c15ull;
    v[i].hlc = (x >> 40) % 64;
    for (size_t j = 0; j < v[i].id.size(); ++j) {
      x ^= x >> 29;
      x *= 0xbf58476d1ce4e5b9ull;
      v[i].id[j] = static_cast<uint8_t>(x >> 56);
    }
  }
  return v;
}

constexpr uint64_t kSalt = 0x0123456789abcdefULL;

const ReconcileSet& Fixed() {
  static const ReconcileSet set(FixedItems(1, 300));
  return set;
}

bool Holds(const ReconcileSet& set, const Hash& id) {
  return std::any_of(set.items().begin(), set.items().end(), [&](const ItemKey& k) { return k.id == id; });
}

void HostileInitiatorBody(ByteSpan in) {
  std::vector<Hash> pushed;
  kring::Result<Bytes> reply = kring::Respond(Fixed(), kSalt, in, &pushed);
  if (!reply.ok()) {
    Require(pushed.empty());
    return;
  }
  Require(reply->size() <= kring::kMaxReconcileBytes);
  for (const Hash& id : pushed) Require(Holds(Fixed(), id));
}

void HostileReply(ByteSpan in) {
  ReconcileSet mine(FixedItems(2, 250));
  Reconciler r(mine, kSalt);
  r.Initiate();
  std::vector<Hash> have, need, pushed;
  auto next = r.Continue(in, &have, &need);
  if (!next.ok() || !next->has_value()) return;
  Require((*next)->size() <= kring::kMaxReconcileBytes);
  // What the initiator sends next must itself be a valid body.
  Require(kring::Respond(Fixed(), kSalt, **next, &pushed).ok());
}

// Each group of 3 bytes is one item: which sides hold it, its hlc, an id byte.
void Session(ByteSpan in, size_t prefix_bytes) {
  std::vector<ItemKey> a, b;
  for (size_t i = 0; i + 3 <= in.size(); i += 3) {
    ItemKey k;
    k.hlc = in[i + 1] % 8;
    k.id[0] = in[i + 2];
    k.id[31] = static_cast<uint8_t>(i / 3);  // distinct ids however the bytes fall
    k.id[30] = static_cast<uint8_t>(i / 3 >> 8);
    uint8_t sides = in[i] % 3;
    if (sides != 1) a.push_back(k);
    if (sides != 0) b.push_back(k);
  }
  ReconcileSet sa(a), sb(b);
  std::vector<Hash> only_a, only_b;
  for (const ItemKey& k : sa.items())
    if (!std::binary_search(sb.items().begin(), sb.items().end(), k)) only_a.push_back(k.id);
  for (const ItemKey& k : sb.items())
    if (!std::binary_search(sa.items().begin(), sa.items().end(), k)) only_b.push_back(k.id);

  Reconciler r(sa, kSalt, prefix_bytes);
  std::vector<Hash> have, need, pushed;
  std::optional<Bytes> body = r.Initiate();
  for (int round = 0; body; ++round) {
    Require(round < 64);
    Require(body->size() <= kring::kMaxReconcileBytes);
    kring::Result<Bytes> reply = kring::Respond(sb, kSalt, *body, &pushed);
    Require(reply.ok());
    Require(reply->size() <= kring::kMaxReconcileBytes);
    auto next = r.Continue(*reply, &have, &need);
    Require(next.ok());
    body = std::move(*next);
  }
  std::sort(have.begin(), have.end());
  std::sort(need.begin(), need.end());
  std::sort(pushed.begin(), pushed.end());
  std::sort(only_a.begin(), only_a.end());
  std::sort(only_b.begin(), only_b.end());
  Require(need.empty());  // responders push without naming what they push
  if (prefix_bytes == kring::kReconcilePrefixBytes) {
    Require(have == only_a);
    Require(pushed == only_b);
  } else {
    Require(std::includes(only_a.begin(), only_a.end(), have.begin(), have.end()));
    Require(std::includes(only_b.begin(), only_b.end(), pushed.begin(), pushed.end()));
    Require(std::adjacent_find(have.begin(), have.end()) == have.end());
    Require(std::adjacent_find(pushed.begin(), pushed.end()) == pushed.end());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ByteSpan in(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      HostileInitiatorBody(in);
      break;
    case 1:
      HostileReply(in);
      break;
    case 2:
      Session(in, kring::kReconcilePrefixBytes);
      break;
    default:
      Session(in, 1);
      break;
  }
  return 0;
}
