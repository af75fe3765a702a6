// The report, and observing nodes from outside: /proc, the kernel's TCP counters, read-only SQLite, the API.
#include <algorithm>
#include <cmath>
#include <csignal>
#include <fcntl.h>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <httplib.h>
#include <sqlite3.h>

#include "bench/bench.h"
#include "crypto/sodium.h"

namespace kring::bench {

// ------------------------------------------------------------------ sizes

Sizes Sizes::Quick() {
  Sizes s;
  s.quick = true;
  s.primitive_seconds = 0.3;
  s.catchup_fragments = 400;
  s.fragments_per_case = 20;
  s.differences = {1, 100};
  s.inprocess_sizes = {1000, 10000};
  s.insync_window_s = 4;
  s.latency_writes = 100;
  s.latency_cases = 10;
  s.converge_cases = 60;
  s.scale_fragments = 3000;
  s.scale_fragments_per_case = 50;
  s.scale_partners = 2;
  s.withdrawals = 10;
  s.withdraw_fragments_per_case = 2;
  s.catchup_timeout_s = 60;
  s.converge_timeout_s = 30;
  return s;
}

json Sizes::ToJson() const {
  return {{"quick", quick},
          {"sync_interval_ms", sync_interval_ms},
          {"catchup_fragments", catchup_fragments},
          {"catchup_body_bytes", body_bytes},
          {"fragments_per_case", fragments_per_case},
          {"insync_fragments", catchup_fragments},
          {"insync_window_s", insync_window_s},
          {"differences", differences},
          {"inprocess_sizes", inprocess_sizes},
          {"latency_writes", latency_writes},
          {"converge_nodes", converge_nodes},
          {"converge_cases", converge_cases},
          {"converge_writes_per_case", converge_writes_per_case},
          {"scale_fragments", scale_fragments},
          {"scale_body_bytes", scale_body_bytes},
          {"scale_partners", scale_partners},
          {"withdrawals", withdrawals}};
}

// ------------------------------------------------------------------ report

namespace {

std::string Format(double v) {
  if (std::isnan(v)) return "n/a";
  char buf[64];
  double a = std::fabs(v);
  if (a >= 1e6) std::snprintf(buf, sizeof buf, "%.3g", v);
  else if (a >= 100 || v == std::floor(v)) std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (a >= 10) std::snprintf(buf, sizeof buf, "%.1f", v);
  else std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

}  // namespace

void Report::Row(const std::string& scenario, const std::string& metric, double value, const std::string& unit,
                 const std::string& target, std::optional<bool> met, const std::string& note) {
  std::string verdict = met ? (*met ? "met" : "MISSED") : "";
  lines_.push_back({scenario, metric, Format(value) + (unit.empty() ? "" : " " + unit), target, verdict, note});
}

void Report::Text(const std::string& scenario, const std::string& metric, const std::string& value,
                  const std::string& note) {
  lines_.push_back({scenario, metric, value, "", "", note});
}

void Report::Print(double wall_seconds) const {
  size_t w[5] = {8, 6, 5, 6, 7};
  for (const Line& l : lines_) {
    w[0] = std::max(w[0], l.scenario.size());
    w[1] = std::max(w[1], l.metric.size());
    w[2] = std::max(w[2], l.value.size());
    w[3] = std::max(w[3], l.target.size());
    w[4] = std::max(w[4], l.verdict.size());
  }
  auto row = [&](const std::string& a, const std::string& b, const std::string& c, const std::string& d,
                 const std::string& e, const std::string& f) {
    std::printf("%-*s  %-*s  %*s  %-*s  %-*s  %s\n", int(w[0]), a.c_str(), int(w[1]), b.c_str(), int(w[2]), c.c_str(),
                int(w[3]), d.c_str(), int(w[4]), e.c_str(), f.c_str());
  };
  std::printf("\n");
  row("scenario", "metric", "value", "target", "verdict", "note");
  row(std::string(w[0], '-'), std::string(w[1], '-'), std::string(w[2], '-'), std::string(w[3], '-'),
      std::string(w[4], '-'), "----");
  std::string last;
  for (const Line& l : lines_) {
    row(l.scenario == last ? "" : l.scenario, l.metric, l.value, l.target, l.verdict, l.note);
    last = l.scenario;
  }
  std::printf("\n");
  for (const std::string& n : notes_) std::printf("note: %s\n", n.c_str());
  std::printf("wall time: %.1f s\n", wall_seconds);
  json out = json_;
  out["wall_s"] = std::round(wall_seconds * 10) / 10;
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);
}

// ------------------------------------------------------------------ targets

void RunTargets(const Sizes& s, Report& r) {
  const std::string sc = "0 targets (issue 15)";
  struct Target {
    const char* key;
    const char* what;
    const char* unit;
    const char* target;
    double limit;
    bool at_most;          // value <= limit meets it; else value >= limit
    std::string size;      // the size it was measured at
    const char* producer;  // the scenario that sets it
  };
  const std::string catchup_size = std::to_string(s.catchup_fragments) + " x " + std::to_string(s.body_bytes) +
                                   " B (target: 100,000 x 4 KB)";
  const std::string scale_size = std::to_string(s.scale_fragments) + " fragments, " + std::to_string(s.scale_partners) +
                                 " partners (target: 1,000,000 and 10)";
  const std::vector<Target> targets = {
      {"catchup_vs_limit", "catch-up / Ed25519 verify limit of the same run", "x", ">= 0.50 (stretch 0.65)", 0.50, false,
       catchup_size, "catchup"},
      {"receiver_cpu_us_per_fragment", "receiver CPU per caught-up fragment", "us", "<= 100 us", 100, true, catchup_size,
       "catchup"},
      {"recon_change_cpu_us", "index update per stored record at 1,000,000", "us", "<= 50 us, no rebuild", 50, true,
       "in-process", "reconcile"},
      {"scale_rss_mb", "memory with connected partners", "MB", "<= 200 MB", 200, true, scale_size, "scale"},
      {"reconcile_overhead_bytes_per_item", "reconciliation bytes per difference, worst of d, shapes and who starts", "B",
       "<= 64 B", 64, true, "in-process, N = " + std::to_string(s.inprocess_sizes.back()), "reconcile"},
      {"reconcile_wire_bytes_per_item", "the same between two nodes, counted by them, worst shape and d", "B", "<= 64 B",
       64, true, "on the wire, N = " + std::to_string(s.catchup_fragments), "catchup"},
      {"reconcile_round_trips", "reconciliation round trips, worst", "", "<= 4", 4, true, "in-process", "reconcile"},
      {"insync_round_bytes", "in-sync round on the wire, ZMTP and CURVE framing included", "B", "<= 128 B", 128, true,
       "N = " + std::to_string(s.catchup_fragments), "catchup"},
      {"flood_honest_p99_ms", "honest partner's write-to-visible p99 while another floods", "ms", "<= 20 ms", 20, true,
       "", "flood"},
      {"write_visible_p50_ms", "write-to-visible p50", "ms", "<= 5 ms", 5, true, "", "latency"},
      {"write_visible_p99_ms", "write-to-visible p99", "ms", "<= 10 ms", 10, true, "", "latency"},
  };
  json out = json::object();
  const json& v = r.Values();
  for (const Target& t : targets) {
    auto it = v.find(t.key);
    if (it == v.end() || !it->is_number()) {
      r.Text(sc, t.key, "not measured",
             std::string(t.what) + "; target " + t.target + "; set by scenario `" + t.producer + "`" +
                 (it == v.end() ? "" : " (no value)"));
      out[t.key] = {{"value", nullptr}, {"target", t.target}, {"met", nullptr}};
      continue;
    }
    double value = it->get<double>();
    bool met = t.at_most ? value <= t.limit : value >= t.limit;
    r.Row(sc, t.key, value, t.unit, t.target, met, std::string(t.what) + (t.size.empty() ? "" : "; " + t.size));
    out[t.key] = {{"value", value}, {"target", t.target}, {"met", met}};
  }
  r.Set("targets", out);
}

void Progress(const std::string& what) {
  static const Clock::time_point start = Clock::now();
  std::fprintf(stderr, "[%7.1fs] %s\n", Since(start), what.c_str());
}

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

namespace {
double g_verify_limit = 0;
}
double VerifyLimitPerSecond() { return g_verify_limit; }
void SetVerifyLimitPerSecond(double v) { g_verify_limit = v; }

// ------------------------------------------------------------------ /proc

ProcSample SampleProc(pid_t pid) {
  ProcSample s;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (std::getline(stat, line)) {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    auto close = line.rfind(')');
    std::istringstream in(line.substr(close + 2));
    std::string field;
    std::vector<std::string> f;
    while (in >> field) f.push_back(field);
    if (f.size() > 13) {
      double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      s.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / ticks;
    }
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) s.rss_mb = std::stod(line.substr(6)) / 1024.0;
    if (line.rfind("VmHWM:", 0) == 0) s.peak_rss_mb = std::stod(line.substr(6)) / 1024.0;
  }
  return s;
}

// ------------------------------------------------------------------ wire

namespace {

std::string FindSs() {
  for (const char* p : {"/usr/bin/ss", "/bin/ss", "/usr/sbin/ss", "/sbin/ss"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

uint64_t FieldAfter(const std::string& line, const std::string& key) {
  auto pos = line.find(" " + key + ":");
  if (pos == std::string::npos) return 0;
  return std::strtoull(line.c_str() + pos + key.size() + 2, nullptr, 10);
}

}  // namespace

uint64_t WireSample::Total() const {
  uint64_t t = 0;
  for (auto& [k, v] : by_connection) t += v.first + v.second;
  return t;
}

WireSample SampleWire(const std::vector<int>& listen_ports) {
  WireSample w;
  static const std::string ss = FindSs();
  if (ss.empty() || listen_ports.empty()) return w;
  std::string filter = "(";
  for (size_t i = 0; i < listen_ports.size(); ++i)
    filter += std::string(i ? " or" : "") + " sport = :" + std::to_string(listen_ports[i]);
  filter += " )";
  CommandResult r = RunCommand({ss, "-tinH", "state", "established", filter});
  if (r.exit_code != 0) return w;
  std::istringstream in(r.out);
  std::string line, key;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line[0] != ' ' && line[0] != '\t') {
      std::istringstream f(line);
      std::string recvq, sendq, local, peer;
      f >> recvq >> sendq >> local >> peer;
      key = local + "-" + peer;
      w.by_connection[key] = {0, 0};
    } else if (!key.empty()) {
      w.by_connection[key] = {FieldAfter(" " + line, "bytes_received"), FieldAfter(" " + line, "bytes_acked")};
    }
  }
  w.ok = true;
  return w;
}

uint64_t WireDelta(const WireSample& before, const WireSample& after) {
  uint64_t d = 0;
  for (auto& [k, v] : after.by_connection) {
    auto it = before.by_connection.find(k);
    uint64_t b0 = it == before.by_connection.end() ? 0 : it->second.first;
    uint64_t b1 = it == before.by_connection.end() ? 0 : it->second.second;
    d += (v.first >= b0 ? v.first - b0 : v.first) + (v.second >= b1 ? v.second - b1 : v.second);
  }
  return d;
}

// ------------------------------------------------------------------ API

Api::Api(const ClusterNode& node) : cli_(std::make_unique<httplib::Client>("127.0.0.1", node.api_port)), token_(node.token) {
  cli_->set_keep_alive(true);
  if (!std::getenv("KRING_BENCH_NAGLE")) cli_->set_tcp_nodelay(true);
  cli_->set_connection_timeout(5, 0);
  cli_->set_read_timeout(120, 0);
}

Api::~Api() = default;

HttpReply Api::Call(const std::string& method, const std::string& path, const std::optional<json>& body) {
  httplib::Headers h = {{"Authorization", "Bearer " + token_},
                        {"X-Kring-Actor", "bench-professional"},
                        {"X-Kring-Actor-Name", "Bench Professional"},
                        {"X-Kring-Role", "regisseur"}};
  std::string text = body ? body->dump() : "";
  httplib::Result res = method == "POST" ? cli_->Post(path, h, text, "application/json") : cli_->Get(path, h);
  HttpReply r;
  if (!res) return r;
  r.status = res->status;
  r.raw = res->body;
  r.body = json::parse(res->body, nullptr, false);
  return r;
}

std::map<std::string, double> ReadMetrics(Api& api) {
  std::map<std::string, double> out;
  auto r = api.Call("GET", "/metrics");
  if (r.status != 200) return out;
  std::istringstream in(r.raw);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto sp = line.rfind(' ');
    if (sp == std::string::npos) continue;
    out[line.substr(0, sp)] = std::strtod(line.c_str() + sp + 1, nullptr);
  }
  return out;
}

SyncCounters SyncCounters::operator-(const SyncCounters& o) const {
  SyncCounters d;
  d.ok = ok && o.ok;
  d.sessions = sessions - o.sessions;
  d.round_trips = round_trips - o.round_trips;
  d.reconcile_sent = reconcile_sent - o.reconcile_sent;
  d.reconcile_received = reconcile_received - o.reconcile_received;
  d.push_bytes = push_bytes - o.push_bytes;
  d.push_records = push_records - o.push_records;
  return d;
}

SyncCounters SyncCounters::operator+(const SyncCounters& o) const {
  SyncCounters d;
  d.ok = ok && o.ok;
  d.sessions = sessions + o.sessions;
  d.round_trips = round_trips + o.round_trips;
  d.reconcile_sent = reconcile_sent + o.reconcile_sent;
  d.reconcile_received = reconcile_received + o.reconcile_received;
  d.push_bytes = push_bytes + o.push_bytes;
  d.push_records = push_records + o.push_records;
  return d;
}

SyncCounters ReadSyncCounters(Api& api) {
  SyncCounters c;
  auto m = ReadMetrics(api);
  auto get = [&](const char* name, double* out) {
    auto it = m.find(name);
    if (it == m.end()) return false;
    *out = it->second;
    return true;
  };
  c.ok = get("kring_reconcile_sessions_total", &c.sessions) && get("kring_reconcile_round_trips_total", &c.round_trips) &&
         get("kring_reconcile_bytes_sent_total", &c.reconcile_sent) &&
         get("kring_reconcile_bytes_received_total", &c.reconcile_received) &&
         get("kring_push_bytes_sent_total", &c.push_bytes) && get("kring_push_records_sent_total", &c.push_records);
  return c;
}

std::string ApiCreateCase(Api& api, const std::string& label) {
  auto r = api.Call("POST", "/v1/cases", json{{"label", label}});
  return r.status == 201 ? r.body["case"].get<std::string>() : std::string();
}

std::string ApiGrant(Api& api, const std::string& case_id, const std::string& grantee, const std::vector<std::string>& domains) {
  json body = {{"grantee", grantee},
               {"domains", domains},
               {"purpose", "ondersteuning"},
               {"basis", "Wmo 2015 art. 5.1.1"},
               {"valid_from", "2020-01-01"},
               {"given_by", "burger"},
               {"evidence", {{"kind", "attested"}, {"reference", "formulier-bench"}}}};
  auto r = api.Call("POST", "/v1/cases/" + case_id + "/consents", body);
  return r.status == 201 ? r.body["consent"].get<std::string>() : std::string();
}

std::string ApiNote(Api& api, const std::string& case_id, const std::string& domain, const std::string& text) {
  json body = {{"kind", "note"}, {"data", {{"text", text}}}};
  if (!domain.empty()) body["domain"] = domain;
  auto r = api.Call("POST", "/v1/cases/" + case_id + "/items", body);
  return r.status == 201 ? r.body["version"].get<std::string>() : std::string();
}

// ------------------------------------------------------------------ database

DbWatch::DbWatch(const std::string& data_dir) {
  if (sqlite3_open_v2((data_dir + "/kring.db").c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db_);
    db_ = nullptr;
    return;
  }
  sqlite3_busy_timeout(db_, 5000);
}

DbWatch::~DbWatch() { sqlite3_close(db_); }

int64_t DbWatch::Scalar(const char* sql, const std::string& hex_param) {
  if (!db_) return -1;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) return -1;
  std::vector<uint8_t> blob(hex_param.size() / 2);
  if (!hex_param.empty()) {
    if (!FromHex(hex_param, blob)) {
      sqlite3_finalize(st);
      return -1;
    }
    sqlite3_bind_blob(st, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  }
  int64_t v = -1;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  else if (rc == SQLITE_DONE) v = 0;
  sqlite3_finalize(st);
  return v;
}

bool DbWatch::HasRecord(const std::string& id_hex) {
  return Scalar("SELECT 1 FROM records WHERE id = ?", id_hex) == 1;
}

std::string DbWatch::FragmentAfter(int64_t rowid, int64_t* found_rowid) {
  std::string out;
  if (!db_) return out;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT rowid, id FROM records WHERE rowid > ? AND type = 1 ORDER BY rowid LIMIT 1", -1, &st,
                         nullptr) != SQLITE_OK)
    return out;
  sqlite3_bind_int64(st, 1, rowid);
  if (sqlite3_step(st) == SQLITE_ROW) {
    *found_rowid = sqlite3_column_int64(st, 0);
    out = ToHex(ByteSpan(static_cast<const uint8_t*>(sqlite3_column_blob(st, 1)), static_cast<size_t>(sqlite3_column_bytes(st, 1))));
  }
  sqlite3_finalize(st);
  return out;
}

int64_t DbWatch::FragmentsOfCase(const std::string& case_hex) {
  return Scalar("SELECT COUNT(*) FROM records WHERE case_id = ? AND type = 1", case_hex);
}

std::vector<std::string> DbWatch::FragmentIds() {
  std::vector<std::string> out;
  if (!db_) return out;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT id FROM records WHERE type = 1", -1, &st, nullptr) != SQLITE_OK) return out;
  while (sqlite3_step(st) == SQLITE_ROW)
    out.push_back(ToHex(ByteSpan(static_cast<const uint8_t*>(sqlite3_column_blob(st, 0)),
                                 static_cast<size_t>(sqlite3_column_bytes(st, 0)))));
  sqlite3_finalize(st);
  return out;
}

std::vector<std::string> DbWatch::FragmentIdsByHlc() {
  std::vector<std::string> out;
  if (!db_) return out;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT id FROM records WHERE type = 1 ORDER BY hlc, id", -1, &st, nullptr) != SQLITE_OK)
    return out;
  while (sqlite3_step(st) == SQLITE_ROW)
    out.push_back(ToHex(ByteSpan(static_cast<const uint8_t*>(sqlite3_column_blob(st, 0)),
                                 static_cast<size_t>(sqlite3_column_bytes(st, 0)))));
  sqlite3_finalize(st);
  return out;
}

int64_t DbWatch::CountFragments() { return Scalar("SELECT COUNT(*) FROM records WHERE type = 1"); }
int64_t DbWatch::MaxRowid() { return Scalar("SELECT COALESCE(MAX(rowid), 0) FROM records"); }
int64_t DbWatch::DataVersion() { return Scalar("PRAGMA data_version"); }
int64_t DbWatch::ControlRecords() { return Scalar("SELECT COUNT(*) FROM records WHERE type BETWEEN 2 AND 6"); }

uint64_t DatabaseBytes(const std::string& data_dir) {
  uint64_t total = 0;
  for (const char* suffix : {"", "-wal"}) {
    struct stat st {};
    if (::stat((data_dir + "/kring.db" + suffix).c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_size);
  }
  return total;
}

double WaitSeconds(const std::function<bool()>& pred, double timeout_s, int poll_ms) {
  auto t0 = Clock::now();
  for (;;) {
    if (pred()) return Since(t0);
    if (Since(t0) >= timeout_s) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
  }
}

// ------------------------------------------------------------------ perf

PerfRecord::PerfRecord(const std::string& dir, const std::string& name, const std::vector<pid_t>& pids) {
  if (dir.empty() || pids.empty()) return;
  std::string list;
  for (pid_t p : pids) {
    if (!list.empty()) list += ',';
    list += std::to_string(p);
  }
  std::string out = dir + "/" + name + ".data";
  pid_ = fork();
  if (pid_ == 0) {
    int devnull = ::open("/dev/null", O_RDWR);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execlp("perf", "perf", "record", "--call-graph", "dwarf,16384", "-F", "199", "-p", list.c_str(), "-o", out.c_str(), nullptr);
    _exit(127);
  }
  Progress("perf record of pids " + list + " into " + out);
}

PerfRecord::~PerfRecord() { Stop(); }

void PerfRecord::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGINT);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace kring::bench
