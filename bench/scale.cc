// Scenario 6: one node holding a million fragments: memory, database size, start-up and a plan read.
#include <cmath>
#include <thread>

#include "bench/bench.h"
#include "bench/fill.h"
#include "node/store.h"
#include "protocol/reconcile.h"

namespace kring::bench {

namespace {
constexpr const char* kA = "gemeente-a";
constexpr const char* kB = "zorg-b";
}  // namespace

void RunScale(const Sizes& s, Report& r) {
  const std::string sc = "6 one node at scale";
  const size_t n = s.scale_fragments;
  const size_t cases = std::max<size_t>(1, n / s.scale_fragments_per_case);
  Progress("6. scale: filling A directly with " + std::to_string(n) + " notes in " + std::to_string(cases) + " cases");
  LocalCluster c(s.node_binary, s.sync_interval_ms);
  ClusterNode& a = c.AddNode(kA, "Gemeente A");
  c.AddNode(kB, "Zorg B");  // a partner, never started: every note is sealed to it as well
  if (!c.Connect(kA, kB)) {
    r.Fail("scale: cannot connect the nodes");
    return;
  }
  std::vector<CaseId> case_ids;
  auto t_fill = Clock::now();
  double cases_s = 0;
  {
    auto fill = DirectFill::Open(a.data_dir);
    if (!fill.ok()) {
      r.Fail("scale: cannot open A in-process: " + fill.status().ToString());
      return;
    }
    for (size_t i = 0; i < cases; ++i) {
      auto id = (*fill)->CreateCase("huishouden " + std::to_string(i));
      if (!id.ok() || !(*fill)->Grant(*id, kB, {"*"}).ok()) {
        r.Fail("scale: cannot create cases in-process");
        return;
      }
      case_ids.push_back(*id);
    }
    cases_s = Since(t_fill);
    Progress("   " + std::to_string(cases) + " cases in " + std::to_string(cases_s).substr(0, 5) + " s; sealing notes");
    auto written = (*fill)->WriteNotes(case_ids, n, s.scale_body_bytes, 2);
    if (!written.ok()) {
      r.Fail("scale: direct fill failed: " + written.status().ToString());
      return;
    }
  }
  double fill_s = Since(t_fill);
  r.Row(sc, "direct fill: cases (Node::CreateCase + RecordConsent)", static_cast<double>(cases) / cases_s, "cases/s",
        "", std::nullopt, "each a few durable commits");
  r.Row(sc, "direct fill: notes (seal + store, 2 threads)", static_cast<double>(n) / (fill_s - cases_s), "fragments/s");

  uint64_t db_bytes = DatabaseBytes(a.data_dir);
  double per_fragment = static_cast<double>(db_bytes) / static_cast<double>(n);
  r.Row(sc, "database size per fragment", per_fragment, "B", "", std::nullopt,
        std::to_string(db_bytes / (1024 * 1024)) + " MB for " + std::to_string(n) + " fragments of " +
            std::to_string(s.scale_body_bytes) + " B bodies, sealed to 2 organisations; no access log");

  // A node that has run before: the first start after the fill rechecks
  // every case for the partner added before it (kring-node does this once
  // after partners change, in the background); the measured start is a restart.
  Progress("6. first start of A: the one-off recheck for its partner");
  auto t_first = Clock::now();
  if (!c.Start(kA, 1800000)) {
    r.Fail("scale: A did not start within 30 minutes");
    return;
  }
  double first_start = Since(t_first);
  double sweep = WaitSeconds([&] { return c.Log(kA).find("case(s) for the current partners") != std::string::npos; },
                             1800, 200);
  r.Row(sc, "first start after the fill: until the API answers", first_start, "s", "", std::nullopt,
        "then every case rechecked for the partner in the background: " +
            (sweep < 0 ? std::string("not done in 30 minutes") : std::to_string(sweep).substr(0, 5) + " s"));
  c.Stop(kA);
  Progress("6. starting A with " + std::to_string(n) + " fragments");
  auto t0 = Clock::now();
  if (!c.Start(kA, 1800000)) {
    r.Fail("scale: A did not start within 30 minutes");
    return;
  }
  double cold = Since(t0);
  ProcSample p0 = SampleProc(a.pid);
  r.Row(sc, "start until the API answers", cold, "s", "<= 2 s", cold <= 2,
        "kring-node run to the first 200 from /v1/health");
  // A few rounds (the partner is never up: A builds no reconciliation set for it).
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * s.sync_interval_ms));
  Api api(a);
  auto timed = [&](const std::string& path, bool keep_alive, HttpReply* out) {
    auto t = Clock::now();
    *out = keep_alive ? api.Call("GET", path) : c.Call(kA, "GET", path);
    return Since(t) * 1000;
  };
  HttpReply reply;
  double health_ms = timed("/v1/health", false, &reply);
  r.Row(sc, "GET /v1/health", health_ms, "ms", "", std::nullopt, reply.status == 200 ? "counts the fragments" : "failed");
  double metrics_ms = timed("/metrics", false, &reply);
  r.Row(sc, "GET /metrics", metrics_ms, "ms");
  std::vector<double> read_ms, read_fresh_ms;
  size_t items = 0;
  for (int i = 0; i < 41; ++i) {
    bool keep_alive = i % 2 == 0;
    std::string path = "/v1/cases/" + CaseIdToHex(case_ids[static_cast<size_t>(i / 2) % case_ids.size()]) + "/plan";
    double ms = timed(path, keep_alive, &reply);
    if (i == 0) continue;  // warms the cache
    (keep_alive ? read_ms : read_fresh_ms).push_back(ms);
    if (reply.status == 200) items = reply.body["items"].size();
  }
  ProcSample p1 = SampleProc(a.pid);
  double plan_p50 = Quantile(read_fresh_ms, 0.5);
  r.Row(sc, "plan read of one case, p50", plan_p50, "ms", "", std::nullopt,
        std::to_string(items) + " items, new connection per request; p99 " +
            std::to_string(Quantile(read_fresh_ms, 0.99)).substr(0, 5) + " ms");
  r.Row(sc, "plan read of one case, keep-alive client, p50", Quantile(read_ms, 0.5), "ms", "", std::nullopt,
        "p99 " + std::to_string(Quantile(read_ms, 0.99)).substr(0, 5) + " ms");
  r.Row(sc, "resident memory", p1.rss_mb, "MB", "<= 200 MB", p1.rss_mb <= 200,
        "after start, one round and 41 plan reads; right after start " + std::to_string(int(p0.rss_mb)) +
            " MB, peak " + std::to_string(int(p1.peak_rss_mb)) + " MB");
  // What a reconciliation round costs after any change: the partner's set rebuilt from SQLite.
  c.Stop(kA);
  if (auto store = Store::Open(DatabasePath(a.data_dir)); store.ok()) {
    auto t = Clock::now();
    auto keys = (*store)->ItemsFor(kB);
    if (keys.ok()) {
      ReconcileSet set(std::move(*keys));
      double ms = Since(t) * 1000;
      r.Row(sc, "reconciliation set for one partner, rebuilt from SQLite", ms, "ms", "", std::nullopt,
            std::to_string(set.size()) + " keys; SyncEngine::SetFor does this each round after any change");
      r.Set("scale_set_rebuild_ms", std::round(ms));
    }
  }
  r.Set("cold_start_s", std::round(cold * 100) / 100);
  r.Set("rss_mb", std::round(p1.rss_mb));
  r.Set("peak_rss_mb", std::round(p1.peak_rss_mb));
  r.Set("db_bytes_per_fragment", std::round(per_fragment));
  r.Set("plan_read_p50_ms", std::round(plan_p50 * 100) / 100);
  r.Set("plan_read_keepalive_p50_ms", std::round(Quantile(read_ms, 0.5) * 100) / 100);
  r.Set("metrics_ms", std::round(metrics_ms * 10) / 10);
  r.Set("health_ms", std::round(health_ms * 10) / 10);
  r.Set("scale_fragments", n);
}

}  // namespace kring::bench
