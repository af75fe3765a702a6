// Scenario 8: partner F floods node B at its budget (a backlog pushed as fast as B takes it) while honest partner H writes one note at a time.
#include <algorithm>
#include <cmath>
#include <thread>

#include "bench/bench.h"
#include "bench/fill.h"

namespace kring::bench {

namespace {
constexpr const char* kB = "zorg-b";
constexpr const char* kF = "flood-f";
constexpr const char* kH = "wijkteam-h";
constexpr size_t kQuickFloodFragments = 3000;
constexpr size_t kFloodBodyBytes = 1000;
constexpr size_t kFloodFragmentsPerCase = 100;
constexpr size_t kHonestCases = 10;
}  // namespace

void RunFlood(const Sizes& s, Report& r) {
  const std::string sc = "8 flood";
  const size_t n = s.quick ? std::min(kQuickFloodFragments, s.flood_fragments) : s.flood_fragments;
  LocalCluster c(s.node_binary, s.sync_interval_ms);
  ClusterNode& b = c.AddNode(kB, "Zorg B");
  ClusterNode& f = c.AddNode(kF, "Flood F");
  ClusterNode& h = c.AddNode(kH, "Wijkteam H");
  if (!c.Connect(kF, kB) || !c.Connect(kH, kB)) {
    r.Fail("flood: could not connect the nodes");
    return;
  }
  // F's backlog for B, written with the node's own code while F is stopped:
  // once F runs, it pushes all of it to B as fast as B takes it (its budget).
  Progress("8. flood: filling F directly with " + std::to_string(n) + " notes of " + std::to_string(kFloodBodyBytes) +
           " bytes for B");
  {
    auto fill = DirectFill::Open(f.data_dir);
    if (!fill.ok()) {
      r.Fail("flood: cannot open F in-process: " + fill.status().ToString());
      return;
    }
    std::vector<CaseId> cases;
    for (size_t i = 0; i < std::max<size_t>(1, n / kFloodFragmentsPerCase); ++i) {
      auto id = (*fill)->CreateCase("huishouden " + std::to_string(i));
      if (!id.ok() || !(*fill)->Grant(*id, kB, {"*"}).ok()) {
        r.Fail("flood: cannot open cases at F");
        return;
      }
      cases.push_back(*id);
    }
    auto notes = (*fill)->WriteNotes(cases, n, kFloodBodyBytes, 2);
    if (!notes.ok()) {
      r.Fail("flood: cannot fill F: " + notes.status().ToString());
      return;
    }
  }
  if (!c.Start(kB) || !c.Start(kH)) {
    r.Fail("flood: nodes did not start");
    return;
  }
  Api api_b(b), api_h(h);
  std::vector<std::string> cases;
  for (size_t i = 0; i < kHonestCases; ++i) {
    std::string id = ApiCreateCase(api_h, "gezin " + std::to_string(i));
    if (id.empty() || ApiGrant(api_h, id, kB, {"*"}).empty()) {
      r.Fail("flood: cannot open cases at H");
      return;
    }
    cases.push_back(id);
  }
  DbWatch wb(b.data_dir);
  if (WaitSeconds([&] { return wb.ControlRecords() >= static_cast<int64_t>(2 * cases.size()); }, 30, 50) < 0) {
    r.Fail("flood: B did not learn H's cases");
    return;
  }
  const int64_t base = wb.MaxRowid();
  auto flooding = [&] { return wb.MaxRowid() < base + static_cast<int64_t>(n); };  // rows are never updated

  Progress("8. flood: F pushes its backlog to B; H writes one note at a time");
  if (!c.Start(kF)) {
    r.Fail("flood: F did not start");
    return;
  }
  auto t_flood = Clock::now();
  // The flood is under way once B stores F's notes.
  if (WaitSeconds([&] { return wb.MaxRowid() >= base + static_cast<int64_t>(std::min<size_t>(n / 10, 500)); }, 30, 10) < 0) {
    r.Fail("flood: B stored nothing of F's");
    return;
  }
  PerfRecord perf(s.perf_dir, "flood", {b.pid, f.pid, h.pid});
  std::vector<double> visible_ms, stored_ms;
  size_t failures = 0, after = 0, i = 0;
  double queue_max = 0;
  while (flooding() && Since(t_flood) < s.catchup_timeout_s) {
    const std::string& case_id = cases[i++ % cases.size()];
    auto t0 = Clock::now();
    std::string version = ApiNote(api_h, case_id, "", "Gesprek gehad; afspraak met de schuldhulp staat op dinsdag.");
    double stored = -1, visible = -1;
    while (!version.empty() && Since(t0) < 10) {
      if (stored < 0 && wb.HasRecord(version)) stored = Since(t0);
      if (stored >= 0) {
        auto plan = api_b.Call("GET", "/v1/cases/" + case_id + "/plan");
        if (plan.status == 200 && plan.raw.find(version) != std::string::npos) {
          visible = Since(t0);
          break;
        }
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
    if (visible < 0) {
      ++failures;
      continue;
    }
    if (!flooding()) {
      ++after;  // ended after the flood: not counted
      break;
    }
    visible_ms.push_back(visible * 1000);
    stored_ms.push_back(stored * 1000);
    if (i % 10 == 0) {
      auto m = ReadMetrics(api_b);
      auto it = m.find(std::string("kring_ingest_queue_pushes{partner=\"") + kF + "\"}");
      if (it != m.end()) queue_max = std::max(queue_max, it->second);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a professional's pace, not a second flood
  }
  perf.Stop();
  if (WaitSeconds([&] { return !flooding(); }, s.catchup_timeout_s, 50) < 0)
    r.Note("flood: B did not store all of F's notes in " + std::to_string(static_cast<int>(s.catchup_timeout_s)) + " s");
  const double flood_s = Since(t_flood);
  double p50 = Quantile(visible_ms, 0.5), p99 = Quantile(visible_ms, 0.99);
  r.Row(sc, "honest write at H to readable at B during the flood, p50", p50, "ms", "", std::nullopt,
        std::to_string(visible_ms.size()) + " writes one at a time while F pushed " + std::to_string(n) +
            " notes of " + std::to_string(kFloodBodyBytes) + " B as fast as B took them");
  r.Row(sc, "honest write at H to readable at B during the flood, p99", p99, "ms", "<= 20 ms", p99 <= 20,
        "stored at B p99 " + std::to_string(Quantile(stored_ms, 0.99)).substr(0, 5) + " ms; F's queue at B up to " +
            std::to_string(static_cast<int>(queue_max)) + " push(es)");
  r.Row(sc, "F's backlog stored at B", static_cast<double>(n) / flood_s, "fragments/s", "", std::nullopt,
        std::to_string(n) + " in " + std::to_string(flood_s).substr(0, 5) + " s, beside H's writes");
  {
    auto m = ReadMetrics(api_b);
    auto it = m.find("kring_messages_rejected_total{reason=\"ingest_queue_full\"}");
    const double dropped = it == m.end() ? 0 : it->second;
    r.Set("flood_records_dropped", dropped);
    if (dropped > 0)
      r.Note("flood: B dropped " + std::to_string(static_cast<int>(dropped)) +
             " record(s) pushed over a partner's budget (ingest_queue_full); reconciliation brought them again");
  }
  if (failures) r.Note("flood: " + std::to_string(failures) + " honest write(s) failed or were not readable at B within 10 s");
  r.Set("flood_honest_p50_ms", std::round(p50 * 100) / 100);
  r.Set("flood_honest_p99_ms", std::round(p99 * 100) / 100);
  r.Set("flood_honest_writes", visible_ms.size());
  r.Set("flood_fragments", n);
  r.Set("flood_fragments_per_s", std::round(static_cast<double>(n) / flood_s));
}

}  // namespace kring::bench
