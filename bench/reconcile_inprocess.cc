// Scenario 4, protocol bytes in-process: the library's Reconciler and Respond over ReconcileSets of the run's sizes, and the shared index's cost.
//
// Counts the kring frames a session puts on a ZeroMQ connection (reconcile
// messages both ways, and the framing of the `push` messages around the
// records: the initiator pushes what it found the responder lacks, the
// responder pushes what it found the initiator lacks, unasked), exactly,
// without the transport: ZMTP and CURVE add 35 bytes per message (counted
// in insync_round_inprocess_bytes; insync_round_bytes is measured on the wire).
//
// Both shapes of difference (the newest d missing: a node that was down;
// d scattered over the whole history), both who-starts cases; the headline
// figures are the worst of all of them at the largest N.
//
// The index (protocol/reconcile_index.h): built from 1,000,000 keys (the
// largest N) with 10 partner views, then the CPU time of storing and
// purging records one at a time (recon_change_cpu_us), and its bytes per
// record. The node's own build reads SQLite too: it logs that time at start.
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "bench/bench.h"
#include "protocol/messages.h"
#include "protocol/reconcile.h"
#include "protocol/reconcile_index.h"

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

// ZMTP's frame header (2 bytes) and CURVE's MESSAGE box (command name 8,
// nonce 8, flags 1, MAC 16) around each one-part message.
constexpr size_t kTransportBytesPerMessage = 35;

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The shared index at the largest N: build time, bytes per record, CPU per change.
void MeasureIndex(const std::vector<ItemKey>& keys, Report& r, const std::string& sc) {
  const std::vector<std::string> partners = {"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"};
  std::mt19937_64 rng(9);
  // Audiences as cases have them: this node and three to ten partners.
  auto audience = [&] {
    std::vector<std::string> a = {"self"};
    size_t n = 3 + rng() % 8;
    for (size_t i = 0; i < n; ++i) a.push_back(partners[(i * 3 + rng() % 3) % partners.size()]);
    return a;
  };
  ReconcileIndex index("self");
  index.SetPartners(partners);
  size_t next = 0;
  auto t0 = Clock::now();
  index.Reset([&](ReconcileIndex::Entry* e) {
    if (next == keys.size()) return false;
    e->key = keys[next++];
    e->audience = audience();
    return true;
  });
  double build_s = Since(t0);  // with drawing the audiences, as the node's build reads them
  size_t bytes = 0;
  {
    auto lock = index.ReadLock();
    bytes = index.MemoryBytes();
  }
  // Store 20,000 records one commit each (the newest, as writes arrive, and
  // one in four older: a partner's backlog), then purge 5,000.
  const size_t stores = 20000, purges = 5000;
  std::vector<std::vector<ReconcileIndex::RowChange>> batches;
  std::vector<ItemKey> added;
  uint64_t hlc = keys.empty() ? 1 : keys.back().hlc;
  for (size_t i = 0; i < stores; ++i) {
    ItemKey k;
    k.hlc = i % 4 == 0 && !keys.empty() ? keys[rng() % keys.size()].hlc : ++hlc;
    for (size_t b = 0; b < kHashBytes; b += 8) {
      uint64_t v = rng();
      std::memcpy(k.id.data() + b, &v, 8);
    }
    std::vector<ReconcileIndex::RowChange> rows;
    for (const std::string& org : audience()) rows.push_back({k, org, true});
    batches.push_back(std::move(rows));
    added.push_back(k);
  }
  double c0 = ThreadCpuSeconds();
  for (const auto& b : batches) index.Apply(b);
  double store_us = (ThreadCpuSeconds() - c0) * 1e6 / static_cast<double>(stores);
  std::vector<std::vector<ReconcileIndex::RowChange>> purge_batches;
  for (size_t i = 0; i < purges; ++i) {
    std::vector<ReconcileIndex::RowChange> rows;
    for (const auto& row : batches[i * 3]) rows.push_back({row.key, row.org, false});
    purge_batches.push_back(std::move(rows));
  }
  c0 = ThreadCpuSeconds();
  for (const auto& b : purge_batches) index.Apply(b);
  double purge_us = (ThreadCpuSeconds() - c0) * 1e6 / static_cast<double>(purges);
  double per_record = keys.empty() ? 0 : static_cast<double>(bytes) / static_cast<double>(keys.size());
  std::string n = std::to_string(keys.size());
  r.Row(sc, "index, N = " + n + ", 10 partners: CPU per record stored", store_us, "us", "<= 50 us, no rebuild",
        store_us <= 50, "purged: " + std::to_string(purge_us).substr(0, 5) + " us per record; one commit each");
  r.Row(sc, "index, N = " + n + ", 10 partners: memory per record", per_record, "B", "", std::nullopt,
        "for all partners together (a ReconcileSet: 43 B per record per partner)");
  r.Row(sc, "index, N = " + n + ": build from sorted keys in memory", build_s * 1e3, "ms", "", std::nullopt,
        "the node reads them from SQLite first: it logs the whole build at start");
  r.Set("recon_change_cpu_us", std::round(store_us * 100) / 100);
  r.Set("recon_purge_cpu_us", std::round(purge_us * 100) / 100);
  r.Set("recon_index_bytes_per_record", std::round(per_record * 10) / 10);
  r.Set("recon_index_build_ms", std::round(build_s * 1e4) / 10);
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
  size_t worst_trips = 0, insync_round = 0;
  std::string worst_where, worst_trips_where;
  for (size_t n : s.inprocess_sizes) {
    std::vector<ItemKey> keys = RandomKeys(n, rng);
    if (n == s.inprocess_sizes.back()) MeasureIndex(keys, r, sc);
    ReconcileSet full(keys);
    SessionCost insync = Simulate(full, full, sessions());
    insync = Simulate(full, full, sessions());  // warm
    r.Row(sc, "N = " + std::to_string(n) + ": in-sync session, protocol bytes", static_cast<double>(insync.reconcile_bytes), "B",
          "", std::nullopt,
          std::to_string(insync.round_trips) + " round trip(s), " + std::to_string(insync.seconds * 1e6).substr(0, 6) + " us CPU");
    json per_n = {{"insync_bytes", insync.reconcile_bytes}, {"insync_round_trips", insync.round_trips},
                  {"insync_us", std::round(insync.seconds * 1e7) / 10}};
    if (n == s.inprocess_sizes.back()) insync_round = insync.reconcile_bytes + insync.messages * kTransportBytesPerMessage;
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
                     from_a.pushed.empty() && from_b.have.empty() && SameIds(from_b.pushed, removed);
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
          std::string where = "d = " + std::to_string(d) + " " + shape;
          if (std::isnan(largest_per_item) || std::max(a_per, b_per) > largest_per_item) {
            largest_per_item = std::max(a_per, b_per);
            worst_where = where + (a_per >= b_per ? ", holder starts" : ", lacker starts");
          }
          size_t trips = std::max(from_a.round_trips, from_b.round_trips);
          if (trips > worst_trips) {
            worst_trips = trips;
            worst_trips_where = where + (from_a.round_trips >= from_b.round_trips ? ", holder starts" : ", lacker starts");
          }
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
  const std::string largest = std::to_string(s.inprocess_sizes.back());
  if (!std::isnan(largest_per_item)) {
    r.Row(sc, "N = " + largest + ", worst of d, shapes and who starts: bytes per difference", largest_per_item, "B",
          "<= 64 B/item", largest_per_item <= 64, worst_where);
    r.Row(sc, "N = " + largest + ", worst of d, shapes and who starts: round trips", static_cast<double>(worst_trips), "",
          "<= 4", worst_trips <= 4, worst_trips_where);
    r.Set("reconcile_overhead_bytes_per_item", std::round(largest_per_item * 10) / 10);
    r.Set("reconcile_round_trips", worst_trips);
  }
  r.Row(sc, "N = " + largest + ": in-sync round, kring frames and ZMTP/CURVE framing", static_cast<double>(insync_round),
        "B", "<= 128 B", insync_round <= 128, "35 B of transport framing per message");
  r.Set("insync_round_inprocess_bytes", insync_round);
  r.Set("reconcile_inprocess", out);
  r.Set("reconcile_inprocess_bytes_per_item", std::isnan(largest_per_item) ? json(nullptr) : json(std::round(largest_per_item)));
  r.Set("reconcile_inprocess_within_target", all_within);
}

}  // namespace kring::bench
