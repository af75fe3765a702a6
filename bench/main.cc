// kring-bench: measures kring against the limits of its primitives, with real node processes on loopback.
//
// Prints a table of figures with the targets, then, as the last line
// of output, one JSON object with every figure and the sizes used. Progress
// goes to stderr. Exits 0 when every scenario ran (whether or not a figure
// meets its target), 1 when one could not be set up, 2 on bad flags.
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/utsname.h>
#include <thread>

#include <CLI/CLI.hpp>
#include <sodium.h>
#include <sqlite3.h>

#include "bench/bench.h"
#include "build_commit.h"  // KRING_BUILD_COMMIT: the source tree kring-bench and kring-node were built from
#include "crypto/sodium.h"
#include "node/log.h"

#ifndef KRING_NODE_BINARY
#define KRING_NODE_BINARY "kring-node"
#endif

namespace kring::bench {
namespace {

kring::bench::json Machine() {
  std::string cpu;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  std::ifstream load("/proc/loadavg");
  std::string loadavg;
  std::getline(load, loadavg);
  utsname u{};
  uname(&u);
  return {{"cpu", cpu},
          {"source_commit", KRING_BUILD_COMMIT},
          {"cores", std::thread::hardware_concurrency()},
          {"kernel", std::string(u.release)},
          {"loadavg_at_start", loadavg},
          {"libsodium", sodium_version_string()},
          {"sqlite", sqlite3_libversion()}};
}

int Main(int argc, char** argv) {
  InitSodium();
  SetLogLevel(LogLevel::kWarn);  // the in-process fills use the node's code, which logs every case it opens
  bool quick = false;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--quick") quick = true;
  Sizes s = quick ? Sizes::Quick() : Sizes();
  s.node_binary = KRING_NODE_BINARY;

  CLI::App app{"kring-bench: real kring-node processes on loopback, measured against the limits of their primitives.\n"
               "Prints a table, then one JSON line. Sizes default to the full run; --quick makes them small."};
  std::string only;
  app.add_flag("--quick", quick, "Small sizes: everything in under two minutes (the CI smoke test)");
  app.add_option("--node", s.node_binary, "Path of the kring-node executable")->capture_default_str();
  app.add_option("--only", only, "Comma-separated scenarios: primitives,catchup,reconcile,latency,converge,scale,withdraw,flood");
  app.add_option("--sync-interval-ms", s.sync_interval_ms, "The nodes' reconciliation interval")->capture_default_str();
  app.add_option("--catchup-fragments", s.catchup_fragments, "2/4: fragments B catches up, then holds in sync with A")->capture_default_str();
  app.add_option("--body-bytes", s.body_bytes, "2/4: JSON body of each catch-up note (at most 4011)")->capture_default_str();
  app.add_option("--fragments-per-case", s.fragments_per_case, "2/4: fragments per case")->capture_default_str();
  app.add_option("--differences", s.differences, "4: numbers of differences to reconcile")->delimiter(',');
  app.add_option("--inprocess-sizes", s.inprocess_sizes, "4: set sizes for the in-process protocol measurement")->delimiter(',');
  app.add_option("--insync-window-s", s.insync_window_s, "4: seconds of in-sync rounds measured")->capture_default_str();
  app.add_option("--latency-writes", s.latency_writes, "3: writes timed")->capture_default_str();
  app.add_option("--converge-nodes", s.converge_nodes, "5: nodes")->capture_default_str();
  app.add_option("--converge-cases", s.converge_cases, "5: cases")->capture_default_str();
  app.add_option("--converge-writes-per-case", s.converge_writes_per_case, "5: writes per case")->capture_default_str();
  app.add_option("--scale-fragments", s.scale_fragments, "6: fragments in one node")->capture_default_str();
  app.add_option("--scale-body-bytes", s.scale_body_bytes, "6: JSON body of each note")->capture_default_str();
  app.add_option("--scale-partners", s.scale_partners,
                 "6: partners connected to the node at scale, each granted every case (0: one partner, never started)")
      ->capture_default_str();
  app.add_option("--withdrawals", s.withdrawals, "7: withdrawals timed")->capture_default_str();
  app.add_option("--catchup-timeout-s", s.catchup_timeout_s, "2: give up on catch-up after this long")->capture_default_str();
  app.add_option("--perf", s.perf_dir, "Record `perf record --call-graph dwarf` profiles of the nodes into DIR during measured phases");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (s.differences.empty() || s.inprocess_sizes.empty() || s.converge_nodes < 2) {
    std::fprintf(stderr, "kring-bench: --differences and --inprocess-sizes need values; --converge-nodes at least 2\n");
    return 2;
  }
  std::set<std::string> run;
  const std::vector<std::string> all = {"primitives", "catchup", "reconcile", "latency", "converge", "scale", "withdraw", "flood"};
  if (only.empty()) {
    run.insert(all.begin(), all.end());
  } else {
    std::stringstream ss(only);
    std::string x;
    while (std::getline(ss, x, ',')) {
      if (std::find(all.begin(), all.end(), x) == all.end()) {
        std::fprintf(stderr, "kring-bench: unknown scenario '%s'\n", x.c_str());
        return 2;
      }
      run.insert(x);
    }
  }
  if (s.converge_nodes != 10) Progress("note: --converge-nodes " + std::to_string(s.converge_nodes));

  auto t0 = Clock::now();
  Report r;
  r.Set("machine", Machine());
  // The verify limit is the yardstick of catch-up: measure it whenever catch-up runs.
  if (run.count("primitives") || run.count("catchup")) RunPrimitives(s, r);
  if (run.count("catchup")) RunCatchupAndAntiEntropy(s, r);
  if (run.count("reconcile")) RunReconcileInProcess(s, r);
  if (run.count("latency")) RunLatency(s, r);
  if (run.count("converge")) RunConvergence(s, r);
  if (run.count("scale")) RunScale(s, r);
  if (run.count("withdraw")) RunWithdrawal(s, r);
  if (run.count("flood")) RunFlood(s, r);
  RunTargets(s, r);
  r.Set("sizes", s.ToJson());
  {
    std::ifstream load("/proc/loadavg");
    std::string loadavg;
    std::getline(load, loadavg);
    r.Set("loadavg_at_end", loadavg);
  }
  r.Set("scenarios_failed", r.failures());
  r.Print(Since(t0));
  return r.failures() > 0 ? 1 : 0;
}

}  // namespace
}  // namespace kring::bench

int main(int argc, char** argv) { return kring::bench::Main(argc, argv); }
