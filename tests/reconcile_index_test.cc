// Tests of the shared reconciliation index: random changes checked against rebuilt ReconcileSets, and whole sessions over views.
#include "protocol/reconcile_index.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>

namespace kring {
namespace {

const std::string kSelf = "self";
const std::vector<std::string> kOrgs = {"self", "p1", "p2", "p3", "p4", "p5"};

ItemKey RandomKey(std::mt19937_64& rng, uint64_t hlc_range) {
  ItemKey k;
  k.hlc = 1'000'000 + rng() % hlc_range;  // crowded hlcs: ties broken by id
  for (size_t i = 0; i < k.id.size(); i += 8) {
    uint64_t w = rng();
    std::copy_n(reinterpret_cast<const uint8_t*>(&w), 8, k.id.begin() + i);
  }
  return k;
}

// The reference: every item's audience, as the database holds it.
using Model = std::map<ItemKey, std::set<std::string>>;

ReconcileSet SetFor(const Model& m, const std::string& partner) {
  std::vector<ItemKey> v;
  for (const auto& [k, orgs] : m)
    if (orgs.count(partner) && orgs.count(kSelf)) v.push_back(k);
  return ReconcileSet(std::move(v));
}

// Compares a view with the set rebuilt from the model: size, ranks, items,
// summaries of random ranges and scans.
void CheckView(const ReconcileIndex& index, const Model& m, const std::string& partner, std::mt19937_64& rng) {
  CAPTURE(partner);
  auto lock = index.ReadLock();
  std::optional<ReconcileIndex::View> view = index.ViewFor(partner);
  REQUIRE(view.has_value());
  ReconcileSet want = SetFor(m, partner);
  REQUIRE(view->size() == want.size());
  size_t n = want.size();
  for (int t = 0; t < 40; ++t) {
    ItemKey probe = RandomKey(rng, 5000);
    CHECK(view->Find(probe) == want.Find(probe));
    if (n == 0) continue;
    size_t i = rng() % n;
    CHECK(view->item(i) == want.item(i));
    CHECK(view->Find(want.item(i)) == i);
    size_t a = rng() % (n + 1), b = rng() % (n + 1);
    if (a > b) std::swap(a, b);
    if (t % 4 == 0) b = std::min(n, a + rng() % 40);  // short ranges too (summed item by item)
    CHECK(view->Summarize(a, b) == want.Summarize(a, b));
    std::vector<ItemKey> got;
    view->Scan(a, b, [&](size_t rank, const ItemKey& k) {
      CHECK(rank == a + got.size());
      got.push_back(k);
      return got.size() < 50;
    });
    CHECK(got.size() == std::min<size_t>(b - a, 50));
    for (size_t j = 0; j < got.size(); ++j) CHECK(got[j] == want.item(a + j));
  }
  CHECK(view->Summarize(0, n) == want.Summarize(0, n));
}

std::vector<std::string> RandomAudience(std::mt19937_64& rng) {
  std::vector<std::string> a;
  for (const std::string& o : kOrgs)
    if (rng() % 3 != 0) a.push_back(o);
  if (a.empty()) a.push_back(kOrgs[rng() % kOrgs.size()]);
  return a;
}

TEST_CASE("random stores, purges and readdressing keep every view equal to a rebuilt set") {
  for (uint64_t seed : {1u, 2u, 3u}) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    ReconcileIndex index(kSelf);
    index.SetPartners({"p1", "p2", "p3", "p4"});  // p5 has no view
    Model model;
    std::vector<ItemKey> keys;
    for (int round = 0; round < 30; ++round) {
      std::vector<ReconcileIndex::RowChange> changes;
      int ops = 1 + static_cast<int>(rng() % 400);
      for (int o = 0; o < ops; ++o) {
        int what = static_cast<int>(rng() % 10);
        if (what < 6 || keys.empty()) {  // store a record: its audience rows
          // Mostly the newest (appends), sometimes older (a partner's backlog).
          ItemKey k = RandomKey(rng, rng() % 4 == 0 ? 5000 : 1);
          k.hlc = rng() % 4 == 0 ? k.hlc : 1'010'000 + static_cast<uint64_t>(round * 1000 + o);
          if (model.count(k)) continue;
          keys.push_back(k);
          for (const std::string& org : RandomAudience(rng)) {
            changes.push_back({k, org, true});
            model[k].insert(org);
          }
        } else if (what < 8) {  // purge: all its rows go
          ItemKey k = keys[rng() % keys.size()];
          auto it = model.find(k);
          if (it == model.end()) continue;
          for (const std::string& org : it->second) changes.push_back({k, org, false});
          model.erase(it);
        } else {  // readdress: one row in or out
          ItemKey k = keys[rng() % keys.size()];
          std::string org = kOrgs[rng() % kOrgs.size()];
          bool add = rng() % 2 == 0;
          changes.push_back({k, org, add});
          if (add) {
            model[k].insert(org);
          } else if (model.count(k)) {
            model[k].erase(org);
            if (model[k].empty()) model.erase(k);
          }
        }
      }
      index.Apply(changes);
      {
        auto lock = index.ReadLock();
        CHECK(index.items() == model.size());
      }
      for (const char* p : {"p1", "p2", "p3", "p4"}) CheckView(index, model, p, rng);
    }
    auto lock = index.ReadLock();
    CHECK_FALSE(index.ViewFor("p5").has_value());
    CHECK_FALSE(index.ViewFor("self").has_value());
  }
}

TEST_CASE("a large index: appends, splits at every level, and a purge of most of it") {
  std::mt19937_64 rng(11);
  ReconcileIndex index(kSelf);
  index.SetPartners({"p1", "p2"});
  Model model;
  std::vector<ItemKey> keys;
  // 40,000 items: three levels of 128-item leaves under 64-child nodes.
  for (int batch = 0; batch < 40; ++batch) {
    std::vector<ReconcileIndex::RowChange> changes;
    for (int i = 0; i < 1000; ++i) {
      ItemKey k = RandomKey(rng, 5000);
      k.hlc = batch % 3 == 0 ? k.hlc : 2'000'000 + static_cast<uint64_t>(batch * 1000 + i);  // appends, and scattered
      keys.push_back(k);
      std::vector<std::string> aud = i % 7 == 0 ? std::vector<std::string>{"self", "p2"}
                                                : std::vector<std::string>{"p1", "p2", "self"};
      for (const std::string& org : aud) {
        changes.push_back({k, org, true});
        model[k].insert(org);
      }
    }
    index.Apply(changes);
  }
  CheckView(index, model, "p1", rng);
  CheckView(index, model, "p2", rng);
  // Purge 95 %: under-full leaves are compacted.
  std::shuffle(keys.begin(), keys.end(), rng);
  std::vector<ReconcileIndex::RowChange> purge;
  for (size_t i = 0; i < keys.size() * 95 / 100; ++i) {
    for (const std::string& org : model[keys[i]]) purge.push_back({keys[i], org, false});
    model.erase(keys[i]);
  }
  size_t before = 0;
  {
    auto lock = index.ReadLock();
    before = index.MemoryBytes();
  }
  index.Apply(purge);
  CheckView(index, model, "p1", rng);
  CheckView(index, model, "p2", rng);
  auto lock = index.ReadLock();
  CHECK(index.items() == model.size());
  CHECK(index.MemoryBytes() < before / 4);
}

TEST_CASE("Reset builds what the same changes build; SetPartners recomputes the views") {
  std::mt19937_64 rng(5);
  Model model;
  std::vector<ReconcileIndex::Entry> entries;
  for (int i = 0; i < 5000; ++i) {
    ItemKey k = RandomKey(rng, 100000);
    std::vector<std::string> aud = RandomAudience(rng);
    for (const auto& o : aud) model[k].insert(o);
    entries.push_back({k, aud});
  }
  ReconcileIndex index(kSelf);
  index.SetPartners({"p1"});
  index.Reset(entries);
  CheckView(index, model, "p1", rng);
  index.SetPartners({"p3", "p2", "p1"});
  CheckView(index, model, "p1", rng);
  CheckView(index, model, "p2", rng);
  CheckView(index, model, "p3", rng);
  index.SetPartners({"p2"});
  CheckView(index, model, "p2", rng);
  {
    auto lock = index.ReadLock();
    CHECK_FALSE(index.ViewFor("p1").has_value());
  }
  // At most kMaxViews partners get a view (the node reads the others' sets from the database).
  std::vector<std::string> many;
  for (size_t i = 0; i < ReconcileIndex::kMaxViews + 6; ++i) many.push_back("q" + std::to_string(1000 + i));
  index.SetPartners(many);
  auto lock = index.ReadLock();
  CHECK(index.ViewFor(many[ReconcileIndex::kMaxViews - 1]).has_value());
  CHECK_FALSE(index.ViewFor(many[ReconcileIndex::kMaxViews]).has_value());
}

// A whole session where one side reads a view of the index and the other a set.
struct Outcome {
  std::vector<Hash> have, need, pushed;
  bool ok = true;
};

Outcome Session(const ReconcileSource& a, const ReconcileSource& b, uint64_t salt) {
  Outcome o;
  Reconciler r(salt);
  std::optional<Bytes> body = r.Initiate(a);
  for (int rounds = 0; body && rounds < 100; ++rounds) {
    auto reply = Respond(b, salt, *body, &o.pushed);
    if (!reply.ok()) return Outcome{{}, {}, {}, false};
    auto next = r.Continue(a, *reply, &o.have, &o.need);
    if (!next.ok()) return Outcome{{}, {}, {}, false};
    body = std::move(*next);
  }
  return o;
}

std::vector<Hash> Sorted(std::vector<Hash> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST_CASE("sessions over index views find exactly the differences, both ways") {
  std::mt19937_64 rng(21);
  ReconcileIndex index(kSelf);
  index.SetPartners({"p1", "p2"});
  Model model;
  std::vector<ReconcileIndex::RowChange> changes;
  for (int i = 0; i < 20000; ++i) {
    ItemKey k = RandomKey(rng, 1'000'000);
    for (const char* org : {"self", "p1", i % 5 == 0 ? "p3" : "p2"}) {
      changes.push_back({k, org, true});
      model[k].insert(org);
    }
  }
  index.Apply(changes);
  ReconcileSet full = SetFor(model, "p1");
  // The partner lacks 300 scattered items; it holds 200 we lack.
  std::vector<ItemKey> theirs(full.items().begin(), full.items().end());
  std::shuffle(theirs.begin(), theirs.end(), rng);
  std::vector<Hash> they_lack, we_lack;
  for (int i = 0; i < 300; ++i) {
    they_lack.push_back(theirs.back().id);
    theirs.pop_back();
  }
  for (int i = 0; i < 200; ++i) {
    theirs.push_back(RandomKey(rng, 1'000'000));
    we_lack.push_back(theirs.back().id);
  }
  ReconcileSet partner(theirs);
  auto lock = index.ReadLock();
  auto view = index.ViewFor("p1");
  REQUIRE(view);
  Outcome ours = Session(*view, partner, 77);
  REQUIRE(ours.ok);
  CHECK(Sorted(ours.have) == Sorted(they_lack));
  CHECK(Sorted(ours.pushed) == Sorted(we_lack));  // pushed by the partner, unnamed
  CHECK(ours.need.empty());
  Outcome from_them = Session(partner, *view, 78);
  REQUIRE(from_them.ok);
  CHECK(Sorted(from_them.have) == Sorted(we_lack));
  CHECK(Sorted(from_them.pushed) == Sorted(they_lack));
}

TEST_CASE("a session tolerates the initiator's set changing between messages") {
  // Items stored and purged on our side mid-session: the session still ends,
  // names only real differences of some state, and the next session finds the rest.
  std::mt19937_64 rng(31);
  ReconcileIndex index(kSelf);
  index.SetPartners({"p1"});
  Model model;
  auto store = [&](const ItemKey& k) {
    index.Apply({{k, "self", true}, {k, "p1", true}});
    model[k] = {"self", "p1"};
  };
  for (int i = 0; i < 3000; ++i) store(RandomKey(rng, 100000));
  std::vector<ItemKey> theirs;
  for (const auto& [k, o] : model)
    if (rng() % 50 != 0) theirs.push_back(k);
  for (int i = 0; i < 40; ++i) theirs.push_back(RandomKey(rng, 100000));
  ReconcileSet partner(theirs);
  Reconciler r(99);
  std::optional<Bytes> body;
  {
    auto lock = index.ReadLock();
    body = r.Initiate(*index.ViewFor("p1"));
  }
  std::vector<Hash> have, need, pushed;
  int rounds = 0;
  while (body && rounds++ < 200) {
    auto reply = Respond(partner, 99, *body, &pushed);
    REQUIRE(reply.ok());
    for (int i = 0; i < 20; ++i) store(RandomKey(rng, 100000));  // new records meanwhile
    auto lock = index.ReadLock();
    auto next = r.Continue(*index.ViewFor("p1"), *reply, &have, &need);
    REQUIRE(next.ok());
    body = std::move(*next);
  }
  CHECK(rounds < 200);
  std::set<Hash> ours, partner_ids;
  for (const auto& [k, o] : model) ours.insert(k.id);
  for (const auto& k : theirs) partner_ids.insert(k.id);
  for (const Hash& h : have) CHECK((ours.count(h) && !partner_ids.count(h)));
  for (const Hash& h : need) CHECK(partner_ids.count(h));
  // A fresh session over the final state finds every difference.
  auto lock = index.ReadLock();
  Outcome fresh = Session(*index.ViewFor("p1"), partner, 100);
  REQUIRE(fresh.ok);
  std::vector<Hash> want_have;
  for (const Hash& h : ours)
    if (!partner_ids.count(h)) want_have.push_back(h);
  CHECK(Sorted(fresh.have) == Sorted(want_have));
}

}  // namespace
}  // namespace kring
