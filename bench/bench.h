// kring-bench's shared pieces: sizes, the report, observing node processes, their API, their databases and the wire.
//
// The benchmark drives real kring-node processes on loopback (examples/cluster.h)
// through their HTTP API and their sync port. What it observes without
// touching the node: the node's database file, opened read-only (as the
// multi-process tests do), /proc for CPU time and resident memory, and the
// kernel's TCP counters of the sync connections (`ss -ti`).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include "examples/cluster.h"

struct sqlite3;
namespace httplib {
class Client;
}

namespace kring::bench {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Every size a scenario uses; --quick replaces them with small ones.
struct Sizes {
  bool quick = false;
  int sync_interval_ms = 1000;        // the node's default
  // 1. primitives
  double primitive_seconds = 1.0;     // per primitive
  size_t sqlite_batch = 512;          // rows per transaction (a push carries at most 512 records)
  // 2 + 4 (one cluster: B catches up, then A and B are in sync)
  size_t catchup_fragments = 100000;
  size_t body_bytes = 4000;           // JSON body of a catch-up note (a note holds at most 4,000 characters)
  size_t fragments_per_case = 100;
  std::vector<size_t> differences = {1, 10, 100, 1000};
  std::vector<size_t> inprocess_sizes = {1000, 100000, 1000000};
  double insync_window_s = 20;
  // 3
  size_t latency_writes = 1000;
  size_t latency_cases = 50;
  // 5
  int converge_nodes = 10;
  size_t converge_cases = 1000;
  size_t converge_writes_per_case = 2;
  // 6
  size_t scale_fragments = 1000000;
  size_t scale_body_bytes = 64;
  size_t scale_fragments_per_case = 100;
  // Partners connected to the node at scale, each granted every case (so it
  // may hold most records and the node keeps reconciliation state for it).
  int scale_partners = 10;
  // 7
  size_t withdrawals = 100;
  size_t withdraw_fragments_per_case = 5;
  size_t flood_fragments = 30000;     // 8: F's backlog pushed to B during the flood (3,000 under --quick)
  // Per-scenario wall-clock limits: a scenario that cannot finish reports what it reached.
  double catchup_timeout_s = 900;
  double converge_timeout_s = 120;
  std::string perf_dir;  // when set: `perf record --call-graph dwarf` of the node processes during measured phases
  std::string node_binary;

  static Sizes Quick();
  json ToJson() const;
};

// The figures of a run: a human table and one JSON object.
class Report {
 public:
  // One table row. `target` is the target in words ("" for none);
  // `met` says whether the figure meets it (nullopt: no target or not measured).
  void Row(const std::string& scenario, const std::string& metric, double value, const std::string& unit,
           const std::string& target = "", std::optional<bool> met = std::nullopt, const std::string& note = "");
  void Text(const std::string& scenario, const std::string& metric, const std::string& value,
            const std::string& note = "");
  // A key of the final JSON object.
  void Set(const std::string& key, json value) { json_[key] = std::move(value); }
  // The JSON object so far (the figures scenarios set).
  const json& Values() const { return json_; }
  void Note(const std::string& line) { notes_.push_back(line); }
  // A scenario that could not run (set-up failed): noted, and the program exits 1.
  void Fail(const std::string& line) {
    notes_.push_back("FAILED: " + line);
    ++failures_;
  }
  int failures() const { return failures_; }
  // Prints the table, the notes and, as the very last line, the JSON object.
  void Print(double wall_seconds) const;

 private:
  struct Line {
    std::string scenario, metric, value, target, verdict, note;
  };
  std::vector<Line> lines_;
  std::vector<std::string> notes_;
  json json_ = json::object();
  int failures_ = 0;
};

// Progress on stderr, so that stdout ends with the JSON line.
void Progress(const std::string& what);

double Since(Clock::time_point t0);  // seconds
// The q-quantile (0..1) of `v` (nearest rank); NaN when empty.
double Quantile(std::vector<double> v, double q);

// CPU seconds (user + system) and resident memory of a process, from /proc.
struct ProcSample {
  double cpu_s = 0;
  double rss_mb = 0;
  double peak_rss_mb = 0;
};
ProcSample SampleProc(pid_t pid);

// Bytes on the sync connections of a cluster, from the kernel's TCP counters
// (`ss -ti`): for every established connection whose server end is one of
// `listen_ports`, bytes the server end received and bytes it sent (acked).
// TCP payload: ZMTP framing, CURVE boxes and kring frames; no IP/TCP headers.
struct WireSample {
  bool ok = false;  // ss ran and parsed
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_connection;  // "lport-rport" -> (received, sent)
  uint64_t Total() const;
};
WireSample SampleWire(const std::vector<int>& listen_ports);
// Bytes exchanged between two samples; connections opened in between count from zero.
uint64_t WireDelta(const WireSample& before, const WireSample& after);

// A keep-alive API client for one node, acting as a professional of the
// "demo" client system (the token LocalCluster issued). One per thread.
class Api {
 public:
  explicit Api(const ClusterNode& node);
  ~Api();
  HttpReply Call(const std::string& method, const std::string& path, const std::optional<json>& body = std::nullopt);

 private:
  std::unique_ptr<httplib::Client> cli_;
  std::string token_;
};

// GET /metrics, as "name{labels}" -> value.
std::map<std::string, double> ReadMetrics(Api& api);

// A node's sync counters from /metrics (node/sync.h SyncStats), counted by
// the node where messages meet its ZeroMQ socket: kring message frames
// (envelope and body), without ZMTP and CURVE framing or handshakes.
// Per process: they start at zero when the node starts.
struct SyncCounters {
  bool ok = false;
  double sessions = 0;            // kring_reconcile_sessions_total
  double round_trips = 0;         // kring_reconcile_round_trips_total
  double reconcile_sent = 0;      // kring_reconcile_bytes_sent_total
  double reconcile_received = 0;  // kring_reconcile_bytes_received_total
  double push_bytes = 0;          // kring_push_bytes_sent_total
  double push_records = 0;        // kring_push_records_sent_total
  SyncCounters operator-(const SyncCounters& o) const;
  SyncCounters operator+(const SyncCounters& o) const;
};
SyncCounters ReadSyncCounters(Api& api);

// The steps the benchmark takes through a node's API.
std::string ApiCreateCase(Api& api, const std::string& label);
std::string ApiGrant(Api& api, const std::string& case_id, const std::string& grantee, const std::vector<std::string>& domains);
// A note; returns the version id (hex) or "" on failure.
std::string ApiNote(Api& api, const std::string& case_id, const std::string& domain, const std::string& text);

// A node's database, opened read-only from the benchmark process (WAL: the
// node keeps writing). Cheap indexed queries only, so polling it does not
// load the node.
class DbWatch {
 public:
  explicit DbWatch(const std::string& data_dir);
  ~DbWatch();
  DbWatch(const DbWatch&) = delete;
  DbWatch& operator=(const DbWatch&) = delete;
  bool ok() const { return db_ != nullptr; }
  bool HasRecord(const std::string& id_hex);
  // The id (hex) of the first fragment stored after row `rowid`, and its row; "" if none.
  std::string FragmentAfter(int64_t rowid, int64_t* found_rowid);
  // Fragments held of one case (indexed by case).
  int64_t FragmentsOfCase(const std::string& case_hex);
  // Ids (hex) of every fragment held.
  std::vector<std::string> FragmentIds();
  // The same, oldest first (by hlc, then id: the order of reconciliation keys).
  std::vector<std::string> FragmentIdsByHlc();
  int64_t CountFragments();   // full scan: only outside measured phases
  int64_t MaxRowid();         // O(log n): rows ever stored (records are never updated)
  int64_t ControlRecords();   // control records held (types 2..6)
  // SQLite's data_version: changes when another connection (the node) commits. Cheap: no disk read.
  int64_t DataVersion();
  // The first column of the first row of `sql`, with `hex_param` bound as a blob to ?1 when given; -1 on error.
  int64_t Scalar(const char* sql, const std::string& hex_param = "");

 private:
  sqlite3* db_ = nullptr;
};

// Size in bytes of the node's database files (main + WAL).
uint64_t DatabaseBytes(const std::string& data_dir);

// Polls `pred` every `poll_ms` until true or `timeout_s`; returns seconds waited or -1 on timeout.
double WaitSeconds(const std::function<bool()>& pred, double timeout_s, int poll_ms = 20);

// `perf record --call-graph dwarf` of `pids` into DIR/NAME.data while alive; Stop() ends it. No-op when dir is empty.
class PerfRecord {
 public:
  PerfRecord(const std::string& dir, const std::string& name, const std::vector<pid_t>& pids);
  ~PerfRecord();
  void Stop();

 private:
  pid_t pid_ = -1;
};

// --- scenarios (one file each) ---
void RunPrimitives(const Sizes& s, Report& r);
void RunCatchupAndAntiEntropy(const Sizes& s, Report& r);
void RunReconcileInProcess(const Sizes& s, Report& r);
void RunLatency(const Sizes& s, Report& r);
void RunConvergence(const Sizes& s, Report& r);
void RunScale(const Sizes& s, Report& r);
void RunWithdrawal(const Sizes& s, Report& r);
void RunFlood(const Sizes& s, Report& r);

// Issue 15's targets table: each figure's JSON key, its value from this run
// (when a scenario that runs set it), the target and a verdict; also under
// "targets" in the JSON. Call after the scenarios.
void RunTargets(const Sizes& s, Report& r);

// The Ed25519 single-core limit measured by RunPrimitives (0 before it ran).
double VerifyLimitPerSecond();
void SetVerifyLimitPerSecond(double v);

}  // namespace kring::bench
