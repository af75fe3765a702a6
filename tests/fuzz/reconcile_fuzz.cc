// libFuzzer target for set reconciliation: hostile bodies to both sides, and whole sessions that must find the differences.
//
// The first input byte picks what the rest is:
//   0: a body from an initiator, answered by Respond against a fixed set;
//   1: a reply to an initiator's first body, and, if accepted, the reply to
//      whatever that initiator sends next;
//   2: a description of two sets; a whole session between them must end
//      within bounded rounds, with every body under kMaxReconcileBytes, and
//      find exactly the ids one holds and the other lacks.
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

const ReconcileSet& Fixed() {
  static const ReconcileSet set(FixedItems(1, 300));
  return set;
}

void HostileInitiatorBody(ByteSpan in) {
  kring::Result<Bytes> reply = kring::Respond(Fixed(), in);
  if (reply.ok()) Require(reply->size() <= kring::kMaxReconcileBytes);
}

void HostileReply(ByteSpan in) {
  ReconcileSet mine(FixedItems(2, 250));
  Reconciler r(mine);
  r.Initiate();
  std::vector<Hash> have, need;
  auto next = r.Continue(in, &have, &need);
  if (!next.ok() || !next->has_value()) return;
  Require((*next)->size() <= kring::kMaxReconcileBytes);
  // What the initiator sends next must itself be a valid body.
  Require(kring::Respond(Fixed(), **next).ok());
}

// Each group of 3 bytes is one item: which sides hold it, its hlc, an id byte.
void Session(ByteSpan in) {
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

  Reconciler r(sa);
  std::vector<Hash> have, need;
  std::optional<Bytes> body = r.Initiate();
  for (int round = 0; body; ++round) {
    Require(round < 64);
    Require(body->size() <= kring::kMaxReconcileBytes);
    kring::Result<Bytes> reply = kring::Respond(sb, *body);
    Require(reply.ok());
    Require(reply->size() <= kring::kMaxReconcileBytes);
    auto next = r.Continue(*reply, &have, &need);
    Require(next.ok());
    body = std::move(*next);
  }
  std::sort(have.begin(), have.end());
  std::sort(need.begin(), need.end());
  std::sort(only_a.begin(), only_a.end());
  std::sort(only_b.begin(), only_b.end());
  Require(have == only_a);
  Require(need == only_b);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ByteSpan in(data + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      HostileInitiatorBody(in);
      break;
    case 1:
      HostileReply(in);
      break;
    default:
      Session(in);
      break;
  }
  return 0;
}
