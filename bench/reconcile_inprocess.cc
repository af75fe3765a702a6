// Scenario 4, protocol bytes in-process: the library's Reconciler and Respond over ReconcileSets of the run's sizes.
//
// Counts the kring frames a session puts on a ZeroMQ connection (reconcile
// messages both ways, and the framing of the `push` messages around the
// records: the initiator pushes what it found the responder lacks, the
// responder pushes what it found the initiator lacks, unasked), exactly,
// without the transport: ZMTP and CURVE add a few dozen bytes per message,
// which the wire measurement on real nodes includes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "bench/bench.h"
#include "protocol/messages.h"
#include "protocol/reconcile.h"

namespace kring::bench {

namespace {

struct SessionCost {
  size_t reconcile_bytes = 0;  // kring frames of the reconcile messages, both ways
  size_t messages = 0;
  size_t round_trips = 0;
  std::vector<Hash> have, need;
  std::vector<Hash> pushed;  // by the responder
  double seconds = 0;  // both sides' protocol work, one thread
  bool ok = true;
};

size_t ReconcileFrameBytes(const Bytes& body, uint8_t initiator) {
  ReconcileMessage m;
  m.session = 0x0123456789abcdefULL;
  m.initiator = initiator;
  m.body.v = body;
  return EncodeMessage(Message(std::move(m))).size();
}

SessionCost Simulate(const ReconcileSet& initiator, const ReconcileSet& responder, uint64_t session) {
  SessionCost c;
  auto t0 = Clock::now();
  Reconciler rec(initiator, session);
  Bytes body = rec.Initiate();
  for (;;) {
    c.reconcile_bytes += ReconcileFrameBytes(body, 1);
    auto reply = Respond(responder, session, body, &c.pushed);
    if (!reply.ok()) {
      c.ok = false;
      break;
    }
    c.reconcile_bytes += ReconcileFrameBytes(*reply, 0);
    c.messages += 2;
    ++c.round_trips;
    auto next = rec.Continue(*reply, &c.have, &c.need);
    if (!next.ok()) {
      c.ok = false;
      break;
    }
    if (!next->has_value()) break;
    body = std::move(**next);
    if (c.round_trips > 2000) {
      c.ok = false;
      break;
    }
  }
  c.seconds = Since(t0);
  return c;
}

// Bytes of `push` framing around `n` records (the records themselves excluded).
size_t PushFramingBytes(size_t n) {
  size_t total = 0;
  for (size_t i = 0; i < n; i += kMaxRecordsPerPush) {
    size_t k = std::min(n - i, kMaxRecordsPerPush);
    PushMessage p;
    p.records.v.resize(k);
    for (auto& r : p.records.v) r.v.assign(1, 1);
    total += EncodeMessage(Message(std::move(p))).size() - k;
  }
  return total;
}

bool SameIds(std::vector<Hash> a, std::vector<Hash> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

std::vector<ItemKey> RandomKeys(size_t n, std::mt19937_64& rng) {
  std::vector<ItemKey> keys(n);
  uint64_t ms = 1735689600000;  // 2025-01-01: a year of writes
  for (size_t i = 0; i < n; ++i) {
    ms += rng() % 64;
    keys[i].hlc = MakeHlc(ms, static_cast<uint16_t>(rng() % 4));
    for (size_t b = 0; b < kHashBytes; b += 8) {
      uint64_t v = rng();
      std::memcpy(keys[i].id.data() + b, &v, 8);
    }
  }
  return keys;
}

}  // namespace

void RunReconcileInProcess(const Sizes& s, Report& r) {
  const std::string sc = "4 anti-entropy (in-process)";
  Progress("4. reconciliation protocol bytes, in-process");
  std::mt19937_64 rng(7);
  std::mt19937_64 sessions(8);  // session ids, which salt the sessions; apart, so the sets are as before
  json out = json::object();
  bool all_within = true;
  double largest_per_item = NAN;
  for (size_t n : s.inprocess_sizes) {
    std::vector<ItemKey> keys = RandomKeys(n, rng);
    ReconcileSet full(keys);
    SessionCost insync = Simulate(full, full, sessions());
    insync = Simulate(full, full, sessions());  // warm
    r.Row(sc, "N = " + std::to_string(n) + ": in-sync session, protocol bytes", static_cast<double>(insync.reconcile_bytes), "B",
          "", std::nullopt,
          std::to_string(insync.round_trips) + " round trip(s), " + std::to_string(insync.seconds * 1e6).substr(0, 6) + " us CPU");
    json per_n = {{"insync_bytes", insync.reconcile_bytes}, {"insync_round_trips", insync.round_trips},
                  {"insync_us", std::round(insync.seconds * 1e7) / 10}};
    json diffs = json::object();
    for (size_t d : s.differences) {
      if (d >= n) continue;
      // Two shapes of difference: B lacks the d newest items (a node that was
      // down, the usual case), or d items scattered over the whole history.
      json shapes = json::object();
      for (const char* shape : {"newest", "scattered"}) {
        std::vector<ItemKey> partial = keys;
        if (std::string(shape) == "scattered") std::shuffle(partial.begin(), partial.end(), rng);
        std::vector<Hash> removed;
        for (size_t i = n - d; i < n; ++i) removed.push_back(partial[i].id);
        partial.resize(n - d);
        ReconcileSet lacking(std::move(partial));
        // A starts (A finds what B lacks and pushes it); B starts (A, responding, finds what B
        // lacks and pushes it unasked).
        SessionCost from_a = Simulate(full, lacking, sessions());
        SessionCost from_b = Simulate(lacking, full, sessions());
        bool found = from_a.ok && from_b.ok && SameIds(from_a.have, removed) && from_a.need.empty() &&
                     from_a.pushed.empty() && from_b.have.empty() && SameIds(from_b.need, removed) &&
                     SameIds(from_b.pushed, removed);
        size_t a_bytes = from_a.reconcile_bytes + PushFramingBytes(d);
        size_t b_bytes = from_b.reconcile_bytes + PushFramingBytes(d);
        double a_per = static_cast<double>(a_bytes) / d, b_per = static_cast<double>(b_bytes) / d;
        bool within = a_bytes <= 64 * d + 2048 * from_a.round_trips && b_bytes <= 64 * d + 2048 * from_b.round_trips;
        all_within = all_within && within && found;
        shapes[shape] = {{"holder_starts_bytes", a_bytes},
                         {"holder_starts_reconcile_bytes", from_a.reconcile_bytes},
                         {"holder_starts_round_trips", from_a.round_trips},
                         {"lacker_starts_bytes", b_bytes},
                         {"lacker_starts_reconcile_bytes", from_b.reconcile_bytes},
                         {"lacker_starts_round_trips", from_b.round_trips},
                         {"found_all", found}};
        if (n == s.inprocess_sizes.back()) {
          largest_per_item = std::isnan(largest_per_item) ? std::max(a_per, b_per) : std::max(largest_per_item, std::max(a_per, b_per));
          r.Row(sc, "N = " + std::to_string(n) + ", d = " + std::to_string(d) + " " + shape + ": beyond the records, per item",
                std::max(a_per, b_per), "B", "<= 64 B/item + 2 KB/round", within && found,
                "A starts: " + std::to_string(int(a_per)) + " B/item in " + std::to_string(from_a.round_trips) +
                    " trips; B starts: " + std::to_string(int(b_per)) + " B/item in " + std::to_string(from_b.round_trips) +
                    " trips" + (found ? "" : "; NOT ALL FOUND"));
        }
      }
      diffs[std::to_string(d)] = shapes;
    }
    per_n["differences"] = diffs;
    out[std::to_string(n)] = per_n;
  }
  r.Set("reconcile_inprocess", out);
  r.Set("reconcile_inprocess_bytes_per_item", std::isnan(largest_per_item) ? json(nullptr) : json(std::round(largest_per_item)));
  r.Set("reconcile_inprocess_within_target", all_within);
}

}  // namespace kring::bench
