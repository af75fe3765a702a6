// Scenario 7: a consent withdrawn at the regie node; how long until the withdrawn node has purged what it held.
#include <cmath>
#include <thread>

#include "bench/bench.h"

namespace kring::bench {

namespace {
constexpr const char* kA = "gemeente-a";
constexpr const char* kB = "zorg-b";
}  // namespace

void RunWithdrawal(const Sizes& s, Report& r) {
  const std::string sc = "7 withdrawal";
  Progress("7. withdrawal propagation: " + std::to_string(s.withdrawals) + " withdrawals");
  LocalCluster c(s.node_binary, s.sync_interval_ms);
  ClusterNode& a = c.AddNode(kA, "Gemeente A");
  ClusterNode& b = c.AddNode(kB, "Zorg B");
  if (!c.Connect(kA, kB) || !c.Start(kA) || !c.Start(kB)) {
    r.Fail("withdrawal: nodes did not start");
    return;
  }
  Api api_a(a), api_b(b);
  struct Case {
    std::string id, consent;
  };
  std::vector<Case> cases;
  for (size_t i = 0; i < s.withdrawals; ++i) {
    Case cs;
    cs.id = ApiCreateCase(api_a, "huishouden " + std::to_string(i));
    if (!cs.id.empty()) cs.consent = ApiGrant(api_a, cs.id, kB, {"*"});
    bool ok = !cs.consent.empty();
    for (size_t k = 0; ok && k < s.withdraw_fragments_per_case; ++k)
      ok = !ApiNote(api_a, cs.id, k % 2 ? "finances" : "", "afspraak " + std::to_string(k)).empty();
    if (!ok) {
      r.Fail("withdrawal: cannot set up the cases at A");
      return;
    }
    cases.push_back(cs);
  }
  DbWatch wb(b.data_dir);
  const int64_t total = static_cast<int64_t>(s.withdrawals * s.withdraw_fragments_per_case);
  if (WaitSeconds([&] { return wb.CountFragments() == total; }, 60, 50) < 0) {
    r.Fail("withdrawal: B did not receive the notes");
    return;
  }
  std::vector<double> purge_ms, ack_ms;
  size_t failures = 0;
  PerfRecord perf(s.perf_dir, "withdraw", {a.pid, b.pid});
  for (const Case& cs : cases) {
    auto t0 = Clock::now();
    // The withdrawal runs on its own thread: B may purge before A's answer reaches the caller.
    HttpReply w;
    double ack = -1;
    std::thread caller([&] {
      w = api_a.Call("POST", "/v1/cases/" + cs.id + "/consents/" + cs.consent + "/withdraw");
      ack = Since(t0);
    });
    double purged = -1;
    while (Since(t0) < 10) {
      if (wb.FragmentsOfCase(cs.id) == 0) {
        purged = Since(t0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    caller.join();
    if (w.status != 200 || purged < 0) {
      ++failures;
      continue;
    }
    ack_ms.push_back(ack * 1000);
    purge_ms.push_back(purged * 1000);
  }
  perf.Stop();
  // The purge is in B's own access log (written after the purge's checkpoint).
  bool logged = false;
  WaitSeconds([&] {
    auto log = api_b.Call("GET", "/v1/cases/" + cases.back().id + "/access-log");
    logged = log.status == 200 && log.raw.find("\"purge\"") != std::string::npos;
    return logged;
  }, 5, 100);
  double p50 = Quantile(purge_ms, 0.5), p99 = Quantile(purge_ms, 0.99);
  r.Row(sc, "withdrawal at A to purged at B, p50", p50, "ms", "<= 100 ms", p50 <= 100,
        std::to_string(purge_ms.size()) + " withdrawals of " + std::to_string(s.withdraw_fragments_per_case) +
            " fragments each; purge seen in B's database");
  r.Row(sc, "withdrawal at A to purged at B, p99", p99, "ms");
  r.Row(sc, "  A's API answers the caller, p50", Quantile(ack_ms, 0.5), "ms");
  r.Text(sc, "purge recorded in B's access log", logged ? "yes" : "NO");
  if (failures) r.Note("withdrawal: " + std::to_string(failures) + " withdrawal(s) failed or were not purged within 10 s");
  r.Set("withdraw_purge_p50_ms", std::round(p50 * 100) / 100);
  r.Set("withdraw_purge_p99_ms", std::round(p99 * 100) / 100);
  r.Set("withdrawals", purge_ms.size());
}

}  // namespace kring::bench
