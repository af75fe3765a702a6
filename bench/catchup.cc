// Scenarios 2 and 4 on real nodes: B catches up N fragments from A, then A and B reconcile in sync and with d differences.
#include <algorithm>
#include <cmath>
#include <csignal>
#include <random>
#include <set>
#include <thread>

#include "bench/bench.h"
#include "bench/fill.h"
#include "node/store.h"
#include "protocol/reconcile.h"

namespace kring::bench {

namespace {

constexpr const char* kA = "gemeente-a";
constexpr const char* kB = "zorg-b";

void Sleep(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

// What an idle connected pair costs without reconciliation: heartbeats on
// both connections, and the event loops' CPU. Measured on an empty pair whose
// reconciliation interval is ten minutes.
struct IdleCost {
  double bytes_per_s = 0;
  double cpu_s_per_s = 0;
  bool ok = false;
};

IdleCost MeasureIdlePair(const Sizes& s) {
  IdleCost out;
  LocalCluster c(s.node_binary, 600000);
  const ClusterNode& a = c.AddNode(kA, "Gemeente A");
  const ClusterNode& b = c.AddNode(kB, "Zorg B");
  if (!c.Connect(kA, kB) || !c.Start(kA) || !c.Start(kB)) return out;
  // Both connections up (a node reports a partner connected only once a message came, and none will).
  if (WaitSeconds([&] { return SampleWire({a.sync_port, b.sync_port}).by_connection.size() >= 2; }, 15, 100) < 0) return out;
  Sleep(2.0);  // the first (and only) sessions are over
  double window = std::max(2.0, s.insync_window_s / 2);
  WireSample w0 = SampleWire({a.sync_port, b.sync_port});
  double cpu0 = SampleProc(a.pid).cpu_s + SampleProc(b.pid).cpu_s;
  auto t0 = Clock::now();
  Sleep(window);
  WireSample w1 = SampleWire({a.sync_port, b.sync_port});
  double cpu1 = SampleProc(a.pid).cpu_s + SampleProc(b.pid).cpu_s;
  double w = Since(t0);
  out.ok = w0.ok && w1.ok;
  out.bytes_per_s = static_cast<double>(WireDelta(w0, w1)) / w;
  out.cpu_s_per_s = (cpu1 - cpu0) / w;
  return out;
}

}  // namespace

void RunCatchupAndAntiEntropy(const Sizes& s, Report& r) {
  const std::string sc2 = "2 catch-up", sc4 = "4 anti-entropy";
  Progress("4. idle pair (heartbeats only, reconciliation every 10 minutes)");
  IdleCost idle = MeasureIdlePair(s);
  if (!idle.ok) r.Note("could not measure the idle pair (is `ss` installed?): wire figures include heartbeats");
  r.Row(sc4, "idle connected pair: heartbeats", idle.bytes_per_s, "B/s", "", std::nullopt,
        "both connections, both directions; subtracted below");

  LocalCluster c(s.node_binary, s.sync_interval_ms);
  ClusterNode& a = c.AddNode(kA, "Gemeente A");
  ClusterNode& b = c.AddNode(kB, "Zorg B");
  if (!c.Connect(kA, kB)) {
    r.Fail("catch-up: could not connect the nodes");
    return;
  }
  const size_t n = s.catchup_fragments;
  const size_t cases = std::max<size_t>(1, (n + s.fragments_per_case - 1) / s.fragments_per_case);
  Progress("2. filling A directly: " + std::to_string(n) + " notes of " + std::to_string(s.body_bytes) +
           " bytes for B in " + std::to_string(cases) + " cases");
  std::vector<CaseId> case_ids;
  auto t_fill = Clock::now();
  {
    auto fill = DirectFill::Open(a.data_dir);
    if (!fill.ok()) {
      r.Fail("catch-up: cannot open A in-process: " + fill.status().ToString());
      return;
    }
    for (size_t i = 0; i < cases; ++i) {
      auto id = (*fill)->CreateCase("bench household " + std::to_string(i));
      if (!id.ok() || !(*fill)->Grant(*id, kB, {"*"}).ok()) {
        r.Fail("catch-up: cannot create cases in-process");
        return;
      }
      case_ids.push_back(*id);
    }
    auto written = (*fill)->WriteNotes(case_ids, n, s.body_bytes, 2);
    if (!written.ok()) {
      r.Fail("catch-up: direct fill failed: " + written.status().ToString());
      return;
    }
  }
  double fill_s = Since(t_fill);
  r.Row(sc2, "direct fill of A (seal + store, 2 threads)", static_cast<double>(n) / fill_s, "fragments/s", "",
        std::nullopt, "node's own code in-process, batched; see BENCHMARKS.md");

  auto t_a = Clock::now();
  if (!c.Start(kA, 900000)) {
    r.Fail("catch-up: A did not start");
    return;
  }
  double a_start = Since(t_a);
  r.Row(sc2, "A start with N fragments until the API answers", a_start, "s", "", std::nullopt,
        std::to_string(n) + " fragments, " + std::to_string(cases) + " cases");

  DbWatch wa(a.data_dir);
  double record_bytes =
      static_cast<double>(wa.Scalar("SELECT AVG(LENGTH(record)) FROM (SELECT record FROM records WHERE type = 1 LIMIT 200)"));
  const int64_t expected_rows = static_cast<int64_t>(n + 2 * cases);  // the notes, each case's genesis and consent

  Progress("2. starting B: catch-up of " + std::to_string(n) + " fragments");
  auto t0 = Clock::now();
  ProcSample pa0 = SampleProc(a.pid);
  if (!c.Start(kB, 60000)) {
    r.Fail("catch-up: B did not start");
    return;
  }
  PerfRecord perf(s.perf_dir, "catchup", {a.pid, b.pid});
  DbWatch wb(b.data_dir);
  double t_first = -1, t_half = -1;
  int64_t last_rows = 0;
  auto t_last_progress = Clock::now();
  double waited = WaitSeconds([&] {
    int64_t rows = wb.MaxRowid();
    if (t_first < 0 && rows > 0 && wb.Scalar("SELECT EXISTS (SELECT 1 FROM records WHERE type = 1)") == 1)
      t_first = Since(t0);
    if (rows >= expected_rows / 2 && t_half < 0) t_half = Since(t0);
    if (rows != last_rows && Since(t_last_progress) > 10) {
      Progress("   B holds " + std::to_string(rows) + " of " + std::to_string(expected_rows) + " records");
      t_last_progress = Clock::now();
    }
    last_rows = rows;
    return rows >= expected_rows;
  }, s.catchup_timeout_s, 50);
  double elapsed = Since(t0);
  perf.Stop();
  ProcSample pa1 = SampleProc(a.pid), pb1 = SampleProc(b.pid);
  WireSample wire = SampleWire({a.sync_port, b.sync_port});  // every connection is younger than B
  int64_t held = wb.CountFragments();
  if (waited < 0 || held != static_cast<int64_t>(n)) {
    r.Note("catch-up did not complete in " + std::to_string(int(s.catchup_timeout_s)) + " s: B holds " +
           std::to_string(held) + " of " + std::to_string(n) + " fragments; the rate below is what it reached");
  }
  double rate = static_cast<double>(held) / elapsed;
  double limit = VerifyLimitPerSecond();
  double vs = limit > 0 ? rate / limit : NAN;
  const double b_cpu_us = pb1.cpu_s / static_cast<double>(std::max<int64_t>(held, 1)) * 1e6;
  r.Row(sc2, "catch-up throughput (B start to all stored)", rate, "fragments/s");
  if (t_first > 0 && elapsed - t_first > 0.5)
    r.Row(sc2, "  from the first fragment stored to the last", static_cast<double>(held) / (elapsed - t_first), "fragments/s",
          "", std::nullopt, "without the wait for the first round");
  r.Row(sc2, "catch-up / single-core Ed25519 verify limit", vs, "x", ">= 0.50 (stretch 0.65)", vs >= 0.5,
        "catchup_vs_limit: " + std::to_string(int(rate)) + "/s against " + std::to_string(int(limit)) +
            " verifies/s measured in this run" + (vs >= 0.65 ? "; stretch met" : ""));
  r.Row(sc2, "time from B's start to all N stored", elapsed, "s", "", std::nullopt,
        "first fragment stored at " + std::to_string(t_first).substr(0, 5) + " s, half at " +
            std::to_string(t_half).substr(0, 5) + " s");
  r.Row(sc2, "receiver's CPU per fragment caught up", b_cpu_us, "us", "<= 100 us", b_cpu_us <= 100,
        "receiver_cpu_us_per_fragment: B's process CPU (/proc) from its start to all stored, " +
            std::to_string(pb1.cpu_s).substr(0, 5) + " s in " + std::to_string(elapsed).substr(0, 5) + " s; sender A " +
            std::to_string(pa1.cpu_s - pa0.cpu_s).substr(0, 5) + " s; one Ed25519 verify is " +
            std::to_string(limit > 0 ? 1e6 / limit : 0.0).substr(0, 4) + " us");
  r.Set("catchup_b_cpu_us_per_fragment", std::round(b_cpu_us * 10) / 10);
  r.Set("receiver_cpu_us_per_fragment", std::round(b_cpu_us * 10) / 10);
  r.Set("sender_cpu_us_per_fragment",
        std::round((pa1.cpu_s - pa0.cpu_s) / static_cast<double>(std::max<int64_t>(held, 1)) * 1e7) / 10);
  if (wire.ok && record_bytes > 0)
    r.Row(sc2, "bytes on the wire / bytes of the records", static_cast<double>(wire.Total()) / (record_bytes * n), "x",
          "", std::nullopt, "1.0 = every record sent once; a record is " + std::to_string(int(record_bytes)) + " B");
  Api api_a(a);
  {
    Api api_b(b);
    // What the nodes counted at their sockets during catch-up (B's counters start with its process).
    SyncCounters ca = ReadSyncCounters(api_a), cb = ReadSyncCounters(api_b);
    if (ca.ok && cb.ok && record_bytes > 0) {
      double pushed = ca.push_bytes + cb.push_bytes;
      r.Row(sc2, "push bytes counted by the nodes / bytes of the records", pushed / (record_bytes * n), "x", "",
            std::nullopt,
            std::to_string(int64_t(ca.push_records + cb.push_records)) + " records pushed for " + std::to_string(n) +
                "; reconcile messages " + std::to_string(int64_t(ca.reconcile_sent + cb.reconcile_sent)) + " B in " +
                std::to_string(int64_t(ca.sessions + cb.sessions)) + " completed sessions");
      r.Set("catchup_push_records", ca.push_records + cb.push_records);
      r.Set("catchup_reconcile_bytes", ca.reconcile_sent + cb.reconcile_sent);
    } else {
      r.Note("catch-up: the nodes' sync counters could not be read from /metrics");
    }
    auto m = ReadMetrics(api_b);
    double rejected = 0;
    std::string reasons;
    json by_reason = json::object();
    for (auto& [k, v] : m)
      if (k.rfind("kring_messages_rejected_total", 0) == 0) {
        rejected += v;
        auto q = k.find('"');
        std::string reason = q == std::string::npos ? k : k.substr(q + 1, k.rfind('"') - q - 1);
        reasons += (reasons.empty() ? "" : ", ") + reason + " " + std::to_string(int64_t(v));
        by_reason[reason] = v;
      }
    r.Row(sc2, "records B rejected during catch-up", rejected, "", "", std::nullopt,
          reasons.empty() ? "none" : reasons + " (sent again by a later round)");
    r.Set("catchup_rejected", by_reason);
  }
  r.Row(sc2, "resident memory after catch-up, A", pa1.rss_mb, "MB", "", std::nullopt,
        "B: " + std::to_string(int(pb1.rss_mb)) + " MB");
  r.Set("catchup_fragments_per_s", std::round(rate));
  r.Set("catchup_vs_limit", std::round(vs * 1000) / 1000);
  r.Set("catchup_s", std::round(elapsed * 100) / 100);

  // Copies of records already stored may still be on their way (queued by
  // earlier rounds): in sync means the wire has gone quiet, not only that B
  // holds everything.
  Progress("4. waiting for the wire to go quiet");
  auto t_quiet = Clock::now();
  double quiet = WaitSeconds([&] {
    WireSample q0 = SampleWire({a.sync_port, b.sync_port});
    Sleep(1.0);
    WireSample q1 = SampleWire({a.sync_port, b.sync_port});
    return !q0.ok || WireDelta(q0, q1) < 4096;
  }, 300, 0);
  double drain = Since(t_quiet);
  r.Row(sc2, "records still arriving after all were stored", quiet < 0 ? NAN : drain, "s", "", std::nullopt,
        quiet < 0 ? "the wire did not go quiet within 5 minutes" : "until under 4 KB/s on the wire");
  r.Set("catchup_drain_s", quiet < 0 ? json(nullptr) : json(std::round(drain * 10) / 10));
  WireSample wire_all = SampleWire({a.sync_port, b.sync_port});
  if (wire_all.ok && record_bytes > 0)
    r.Row(sc2, "  bytes on the wire / bytes of the records, until quiet",
          static_cast<double>(wire_all.Total()) / (record_bytes * n), "x");

  // ---------------------------------------------------------------- 4: in sync
  // Sessions, round trips and protocol bytes as both nodes counted them at
  // their sockets (kring frames, both directions); the kernel's TCP counters
  // of the same window give the bytes with ZMTP and CURVE framing.
  Progress("4. A and B in sync with " + std::to_string(n) + " fragments: measuring rounds");
  Sleep(2.0 * s.sync_interval_ms / 1000.0);
  double insync_per_session = NAN, insync_trips = NAN;
  {
    Api api_b(b);
    SyncCounters a0 = ReadSyncCounters(api_a), b0 = ReadSyncCounters(api_b);
    WireSample w0 = SampleWire({a.sync_port, b.sync_port});
    double cpu0 = SampleProc(a.pid).cpu_s + SampleProc(b.pid).cpu_s;
    auto tw = Clock::now();
    PerfRecord perf_sync(s.perf_dir, "insync", {a.pid, b.pid});
    Sleep(s.insync_window_s);
    perf_sync.Stop();
    SyncCounters a1 = ReadSyncCounters(api_a), b1 = ReadSyncCounters(api_b);
    WireSample w1 = SampleWire({a.sync_port, b.sync_port});
    double cpu1 = SampleProc(a.pid).cpu_s + SampleProc(b.pid).cpu_s;
    double window = Since(tw);
    SyncCounters d = (a1 - a0) + (b1 - b0);
    if (!d.ok || d.sessions < 1) {
      r.Fail("in sync: no completed session counted in " + std::to_string(int(window)) + " s (or /metrics unreadable)");
    } else {
      insync_per_session = d.reconcile_sent / d.sessions;
      insync_trips = d.round_trips / d.sessions;
      double cpu_ms = ((cpu1 - cpu0) - idle.cpu_s_per_s * window) / d.sessions * 1000.0;
      r.Row(sc4, "in-sync round: protocol bytes per session, both directions", insync_per_session, "B", "<= 128 B",
            insync_per_session <= 128,
            "insync_round_protocol_bytes: kring frames counted by the nodes; " + std::to_string(int64_t(d.sessions)) +
                " sessions in " + std::to_string(int(window)) + " s, " + std::to_string(insync_trips).substr(0, 4) +
                " round trip(s) each, N = " + std::to_string(n));
      bool wire_ok = w0.ok && w1.ok;
      double wire_bytes = static_cast<double>(WireDelta(w0, w1));
      double wire_per_session = (wire_bytes - idle.bytes_per_s * window) / d.sessions;
      if (wire_ok)
        r.Row(sc4, "  same on the wire (ZMTP and CURVE framing): insync_round_bytes", wire_per_session, "B", "<= 128 B",
              wire_per_session <= 128,
              "kernel TCP counters over the same sessions, heartbeats of an idle pair subtracted (" +
                  std::to_string(int(wire_bytes / d.sessions)) + " B with them)");
      if (d.push_records > 0)
        r.Note("in sync: " + std::to_string(int64_t(d.push_records)) + " records were pushed during the in-sync window");
      r.Row(sc4, "in-sync round: CPU, both processes", cpu_ms, "ms", "", std::nullopt,
            "idle loop subtracted; set cached (no write since the last round)");
      // The figure includes the transport's framing: the wire's
      // bytes; the nodes' own count of kring frames beside it.
      r.Set("insync_round_protocol_bytes", std::round(insync_per_session * 10) / 10);
      r.Set("insync_round_bytes", wire_ok ? json(std::round(wire_per_session)) : json(nullptr));
      r.Set("insync_round_trips", std::round(insync_trips * 100) / 100);
      r.Set("insync_sessions", d.sessions);
      r.Set("insync_round_wire_bytes", wire_ok ? json(std::round(wire_per_session)) : json(nullptr));
      r.Set("insync_round_bytes_with_heartbeats", wire_ok ? json(std::round(wire_bytes / d.sessions)) : json(nullptr));
      r.Set("insync_round_cpu_ms", std::round(cpu_ms * 1000) / 1000);
    }
  }
  r.Set("insync_fragments", n);

  // ---------------------------------------------------------------- 4: d differences, both shapes
  // B is stopped, d of the fragments it holds are deleted from its database
  // (the d newest, as a node that was down lacks them, or d scattered over
  // the whole history), and B is started again: reconciliation brings them
  // back. Counted by both nodes at their sockets from B's start (A's counters
  // sampled before it; B's start at zero) until B holds them all and each
  // node has completed a session after that: every reconcile message and
  // every push, less the records' own bytes. Each node starts a session
  // when it reaches the other, so the first session of each may carry the
  // difference; every session beyond one per node is charged at the in-sync
  // cost just measured and subtracted (a session that found nothing costs
  // that). Handshakes, ZMTP and CURVE are not in these counts.
  // Never the same record twice: A does not push again, for 10 s, what
  // reconciliation sent B (kResendAfterMs in node/sync.cc), so a record
  // deleted again at once would arrive late for a reason that has nothing
  // to do with the protocol. "Newest" is therefore the d newest records not
  // deleted in an earlier step (the first step: the d newest).
  std::mt19937_64 rng(99);
  std::set<std::string> used;
  {
    // The same holds for what catch-up sent: wait until it is 10 s old.
    double since_catchup = Since(t_quiet) - drain;  // since the wire went quiet
    if (since_catchup < 10.5) Sleep(10.5 - since_catchup);
  }
  json per_shape = json::object();
  double worst_per_item = NAN;
  std::string worst_what;
  bool clamped = false;
  for (const char* shape : {"newest", "scattered"}) {
    json per_d = json::object();
    for (size_t d : s.differences) {
      if (d >= static_cast<size_t>(std::max<int64_t>(held, 1))) continue;
      Progress("4. " + std::string(shape) + ", d = " + std::to_string(d) + ": stopping B, deleting, starting B");
      c.Stop(kB);
      std::vector<std::string> all = wb.FragmentIdsByHlc(), ids;
      if (std::string(shape) == "scattered") std::shuffle(all.begin(), all.end(), rng);
      else std::reverse(all.begin(), all.end());
      for (const std::string& id : all) {
        if (ids.size() == d) break;
        if (used.insert(id).second) ids.push_back(id);
      }
      std::vector<RecordId> rids;
      double record_sum = 0;
      for (const std::string& h : ids) {
        RecordId id{};
        if (!FromHex(h, id)) continue;
        rids.push_back(id);
        record_sum += static_cast<double>(wa.Scalar("SELECT LENGTH(record) FROM records WHERE id = ?", h));
      }
      {
        auto store_b = Store::Open(DatabasePath(b.data_dir));
        if (!store_b.ok() || !(*store_b)->DeleteRecords(rids).ok()) {
          r.Fail("anti-entropy: cannot delete fragments from B's database");
          return;
        }
      }
      SyncCounters a0 = ReadSyncCounters(api_a);
      auto td = Clock::now();
      if (!c.Start(kB, 60000)) {
        r.Fail("anti-entropy: B did not start again");
        return;
      }
      Api api_b(b);
      double got = WaitSeconds([&] {
        for (const std::string& id : ids)
          if (!wb.HasRecord(id)) return false;
        return true;
      }, 60, 20);
      double t_done = Since(td);
      // Each node completes a session started after B held them all.
      SyncCounters a_done = ReadSyncCounters(api_a), b_done = ReadSyncCounters(api_b);
      WaitSeconds([&] {
        return ReadSyncCounters(api_a).sessions >= a_done.sessions + 2 && ReadSyncCounters(api_b).sessions >= b_done.sessions + 2;
      }, 10 + 4.0 * s.sync_interval_ms / 1000.0, 50);
      SyncCounters a1 = ReadSyncCounters(api_a), b1 = ReadSyncCounters(api_b);
      if (got < 0) {
        r.Note("d = " + std::to_string(d) + " (" + shape + "): B did not get every difference back within 60 s");
        continue;
      }
      SyncCounters w = (a1 - a0) + b1;  // B's counters started at zero with its process
      if (!w.ok) {
        r.Note("d = " + std::to_string(d) + " (" + shape + "): sync counters unreadable");
        continue;
      }
      double extra_sessions = std::max(0.0, w.sessions - 2);
      double charged = std::isnan(insync_per_session) ? 0 : extra_sessions * insync_per_session;
      double overhead = w.reconcile_sent + w.push_bytes - record_sum - charged;
      if (overhead < 0) {
        clamped = true;
        overhead = 0;
      }
      double per_item = overhead / static_cast<double>(d);
      // What the difference added to an in-sync pair's sessions: every session charged at the in-sync cost.
      double marginal = std::max(0.0, w.reconcile_sent + w.push_bytes - record_sum -
                                          (std::isnan(insync_per_session) ? 0 : w.sessions * insync_per_session)) /
                        static_cast<double>(d);
      double trips = w.round_trips - (std::isnan(insync_trips) ? 0 : extra_sessions * insync_trips);
      per_d[std::to_string(d)] = {{"reconcile_bytes", w.reconcile_sent},
                                  {"push_bytes", w.push_bytes},
                                  {"records_pushed", w.push_records},
                                  {"record_bytes", record_sum},
                                  {"sessions", w.sessions},
                                  {"round_trips", w.round_trips},
                                  {"insync_charged_bytes", std::round(charged)},
                                  {"overhead_bytes", std::round(overhead)},
                                  {"overhead_per_item", std::round(per_item * 10) / 10},
                                  {"marginal_per_item", std::round(marginal * 10) / 10},
                                  {"seconds_to_all", std::round(t_done * 1000) / 1000}};
      if (std::isnan(worst_per_item) || per_item > worst_per_item) {
        worst_per_item = per_item;
        worst_what = std::string(shape) + ", d = " + std::to_string(d);
      }
      r.Row(sc4, std::string(shape) + ", d = " + std::to_string(d) + ": protocol bytes beyond the records, per item",
            per_item, "B", "<= 64 B", per_item <= 64,
            std::to_string(int64_t(w.reconcile_sent)) + " B reconcile + " +
                std::to_string(int64_t(w.push_bytes - record_sum)) + " B push framing and resends, " +
                std::to_string(int64_t(w.sessions)) + " sessions (" + std::to_string(int64_t(charged)) +
                " B charged as in sync), " + std::to_string(int64_t(trips)) + " round trip(s) beyond in-sync ones; " +
                std::to_string(int(marginal)) + " B/item beyond all sessions' in-sync cost; " +
                std::to_string(int64_t(w.push_records)) + " records pushed; all at B " +
                std::to_string(t_done).substr(0, 4) + " s after its start");
    }
    per_shape[shape] = per_d;
  }
  if (clamped) r.Note("anti-entropy: a difference cost less than the in-sync sessions charged to it; counted as 0");
  if (!std::isnan(worst_per_item))
    r.Row(sc4, "on the wire, worst shape and d: per item", worst_per_item, "B", "<= 64 B", worst_per_item <= 64,
          "reconcile_wire_bytes_per_item (" + worst_what + ", N = " + std::to_string(n) + ")");
  r.Set("reconcile_wire", per_shape);
  r.Set("reconcile_wire_bytes_per_item", std::isnan(worst_per_item) ? json(nullptr) : json(std::round(worst_per_item)));
  r.Set("reconcile_wire_worst", worst_what);
  r.Set("differences_largest", s.differences.back());

  // ---------------------------------------------------------------- the set a round needs, rebuilt
  c.Stop(kA);
  c.Stop(kB);
  auto store = Store::Open(DatabasePath(a.data_dir));
  if (store.ok()) {
    double best = 1e9;
    size_t items = 0;
    for (int k = 0; k < 3; ++k) {
      auto t = Clock::now();
      auto keys = (*store)->ItemsFor(kB);
      if (!keys.ok()) break;
      ReconcileSet set(std::move(*keys));
      items = set.size();
      best = std::min(best, Since(t));
    }
    r.Row(sc4, "one partner's key set read from SQLite", best * 1000, "ms", "", std::nullopt,
          std::to_string(items) + " keys; what each round after a write cost before the shared index; now only "
          "partners beyond the index's 64 views");
    r.Set("set_rebuild_ms", std::round(best * 10000) / 10);
  }
}

}  // namespace kring::bench
