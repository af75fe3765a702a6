// Scenario 3: a professional's system writes one item at A's API; how long until B's API shows it.
#include <cmath>
#include <thread>

#include "bench/bench.h"

namespace kring::bench {

namespace {
constexpr const char* kA = "gemeente-a";
constexpr const char* kB = "zorg-b";
}  // namespace

void RunLatency(const Sizes& s, Report& r) {
  const std::string sc = "3 write-to-visible";
  Progress("3. write-to-visible latency: " + std::to_string(s.latency_writes) + " writes");
  LocalCluster c(s.node_binary, s.sync_interval_ms);
  ClusterNode& a = c.AddNode(kA, "Gemeente A");
  ClusterNode& b = c.AddNode(kB, "Zorg B");
  if (!c.Connect(kA, kB) || !c.Start(kA) || !c.Start(kB)) {
    r.Fail("latency: nodes did not start");
    return;
  }
  Api api_a(a), api_b(b);
  std::vector<std::string> cases;
  for (size_t i = 0; i < s.latency_cases; ++i) {
    std::string id = ApiCreateCase(api_a, "huishouden " + std::to_string(i));
    if (id.empty() || ApiGrant(api_a, id, kB, {"*"}).empty()) {
      r.Fail("latency: cannot open cases at A");
      return;
    }
    cases.push_back(id);
  }
  DbWatch wb(b.data_dir);
  if (WaitSeconds([&] { return wb.ControlRecords() >= static_cast<int64_t>(2 * cases.size()); }, 30, 50) < 0) {
    r.Fail("latency: B did not learn the cases");
    return;
  }

  const std::string text =
      "Gesprek met mevrouw gehad over de schulden en de huur; afspraak met de schuldhulp staat op dinsdag. "
      "Zoon gaat mee. Volgende stap: formulieren invullen en inleveren bij de gemeente.";
  struct Pass {
    std::vector<double> ack_ms, stored_ms, visible_ms, read_ms;
    size_t retries = 0, failures = 0;
  };
  // One write at a time: write at A; meanwhile watch B's database, then read
  // B's plan until it shows the write. `keep_alive`: both systems hold one HTTP
  // connection open (as most HTTP client libraries do); otherwise every
  // request opens a new connection (LocalCluster::Call).
  auto run_pass = [&](bool keep_alive, size_t writes) {
    Pass p;
    const size_t warmup = std::min<size_t>(10, writes / 10);
    auto call = [&](const std::string& org, Api& api, const std::string& method, const std::string& path,
                    const std::optional<json>& body) {
      return keep_alive ? api.Call(method, path, body) : c.Call(org, method, path, body);
    };
    int64_t last_rowid = wb.MaxRowid();
    for (size_t i = 0; i < writes + warmup; ++i) {
      const std::string& case_id = cases[i % cases.size()];
      auto t0 = Clock::now();
      // The write runs on its own thread: B may show the item before A's
      // answer reaches the writer, and that is what is measured.
      HttpReply w;
      double ack = -1;
      std::thread writer([&] {
        w = call(kA, api_a, "POST", "/v1/cases/" + case_id + "/items", json{{"kind", "note"}, {"data", {{"text", text}}}});
        ack = Since(t0);
      });
      // Stored at B: a new fragment row, watched in B's database so that waiting does not load its API.
      std::string version;
      double stored = -1;
      while (Since(t0) < 10) {
        int64_t rowid = 0;
        version = wb.FragmentAfter(last_rowid, &rowid);
        if (!version.empty()) {
          stored = Since(t0);
          last_rowid = rowid;
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      // Readable at B's API: the plan read that shows it.
      double visible = -1, read = 0;
      while (stored >= 0 && Since(t0) < 10) {
        auto tr = Clock::now();
        auto plan = call(kB, api_b, "GET", "/v1/cases/" + case_id + "/plan", std::nullopt);
        read = Since(tr);
        if (plan.status == 200 && plan.raw.find(version) != std::string::npos) {
          visible = Since(t0);
          break;
        }
        ++p.retries;
      }
      writer.join();
      if (w.status != 201 || visible < 0 || w.body["version"] != version) {
        ++p.failures;
        last_rowid = wb.MaxRowid();
        continue;
      }
      if (i < warmup) continue;
      p.ack_ms.push_back(ack * 1000);
      p.stored_ms.push_back(stored * 1000);
      p.visible_ms.push_back(visible * 1000);
      p.read_ms.push_back(read * 1000);
    }
    return p;
  };
  PerfRecord perf(s.perf_dir, "latency", {a.pid, b.pid});
  Pass ka = run_pass(true, s.latency_writes);
  perf.Stop();
  Progress("3. the same with a new connection per request");
  Pass fresh = run_pass(false, std::max<size_t>(10, s.latency_writes / 4));
  const auto& visible_ms = ka.visible_ms;
  const auto& ack_ms = ka.ack_ms;
  const auto& stored_ms = ka.stored_ms;
  const auto& read_ms = ka.read_ms;
  size_t retries = ka.retries + fresh.retries, failures = ka.failures + fresh.failures;
  double p50 = Quantile(visible_ms, 0.5), p99 = Quantile(visible_ms, 0.99);
  r.Row(sc, "write at A to readable at B, p50", p50, "ms", "<= 5 ms", p50 <= 5,
        std::to_string(visible_ms.size()) + " writes, one at a time, " + std::to_string(cases.size()) +
            " cases, keep-alive HTTP clients");
  r.Row(sc, "write at A to readable at B, p99", p99, "ms", "<= 10 ms", p99 <= 10);
  r.Row(sc, "  A's API answers the writer, p50", Quantile(ack_ms, 0.5), "ms", "", std::nullopt,
        "p99 " + std::to_string(Quantile(ack_ms, 0.99)).substr(0, 5) + " ms");
  r.Row(sc, "  stored in B's database, p50", Quantile(stored_ms, 0.5), "ms", "", std::nullopt,
        "p99 " + std::to_string(Quantile(stored_ms, 0.99)).substr(0, 5) + " ms");
  r.Row(sc, "  B's plan read that shows it, p50", Quantile(read_ms, 0.5), "ms", "", std::nullopt,
        "p99 " + std::to_string(Quantile(read_ms, 0.99)).substr(0, 5) + " ms");
  double f50 = Quantile(fresh.visible_ms, 0.5), f99 = Quantile(fresh.visible_ms, 0.99);
  r.Row(sc, "same, a new HTTP connection per request, p50", f50, "ms", "<= 5 ms", f50 <= 5,
        std::to_string(fresh.visible_ms.size()) + " writes; p99 " + std::to_string(f99).substr(0, 5) + " ms; A answers in " +
            std::to_string(Quantile(fresh.ack_ms, 0.5)).substr(0, 4) + " ms, stored at B at " +
            std::to_string(Quantile(fresh.stored_ms, 0.5)).substr(0, 4) + " ms, B's plan read " +
            std::to_string(Quantile(fresh.read_ms, 0.5)).substr(0, 4) + " ms");
  r.Set("write_visible_new_connection_p50_ms", std::round(f50 * 100) / 100);
  r.Set("write_visible_new_connection_p99_ms", std::round(f99 * 100) / 100);
  if (failures || retries)
    r.Note("latency: " + std::to_string(failures) + " write(s) failed or never became visible; " +
           std::to_string(retries) + " plan read(s) did not show a stored item yet");
  r.Set("write_visible_p50_ms", std::round(p50 * 100) / 100);
  r.Set("write_visible_p99_ms", std::round(p99 * 100) / 100);
  r.Set("write_ack_p50_ms", std::round(Quantile(ack_ms, 0.5) * 100) / 100);
  r.Set("latency_writes", visible_ms.size());
}

}  // namespace kring::bench
