// Issue 15 on real nodes: a partner that pushes as fast as the receiver takes does not starve another partner.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <span>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <sqlite3.h>

#include "bench/fill.h"
#include "examples/cluster.h"
#include "tests/cluster_steps.h"

using kring::LocalCluster;
using nlohmann::json;
using namespace kring::steps;

namespace {

using Clock = std::chrono::steady_clock;

// The node binary: KRING_TEST_NODE_BINARY runs this test against another
// build (to compare with the code before the per-partner queues).
std::string NodeBinary() {
  const char* other = std::getenv("KRING_TEST_NODE_BINARY");
  return other && *other ? other : KRING_NODE_BINARY;
}

// A node's database opened read-only beside the running node (WAL readers do not disturb it).
class Watch {
 public:
  explicit Watch(const std::string& data_dir) {
    REQUIRE(sqlite3_open_v2((data_dir + "/kring.db").c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_busy_timeout(db_, 1000);
  }
  ~Watch() { sqlite3_close(db_); }
  bool Has(const std::string& id_hex) {
    std::array<uint8_t, 32> id{};
    REQUIRE(kring::FromHex(id_hex, id));
    return Scalar("SELECT COUNT(*) FROM records WHERE id = ?1", id) == 1;
  }
  int64_t Fragments() { return Scalar("SELECT COUNT(*) FROM records WHERE type = 1", {}); }

 private:
  int64_t Scalar(const char* sql, std::span<const uint8_t> blob) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) return -1;
    if (!blob.empty()) sqlite3_bind_blob(st, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
  }
  sqlite3* db_ = nullptr;
};

double Ms(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// The value of a gauge line on /metrics, -1 when absent.
double Gauge(const std::string& metrics, const std::string& key) {
  auto at = metrics.find(key + " ");
  return at == std::string::npos ? -1 : std::stod(metrics.substr(at + key.size() + 1));
}

// Fills a stopped node with `notes` notes of 1,000 bytes for `reader`, in cases of 100, with the node's own code.
void FillFor(LocalCluster& c, const std::string& org, const std::string& reader, size_t notes) {
  auto fill = kring::bench::DirectFill::Open(c.node(org).data_dir);
  REQUIRE_MESSAGE(fill.ok(), fill.status().ToString());
  std::vector<kring::CaseId> cases;
  for (size_t i = 0; i < notes / 100; ++i) {
    auto id = (*fill)->CreateCase("huishouden " + std::to_string(i));
    REQUIRE(id.ok());
    REQUIRE((*fill)->Grant(*id, reader, {"*"}).ok());
    cases.push_back(*id);
  }
  auto written = (*fill)->WriteNotes(cases, notes, 1000, 2);
  REQUIRE_MESSAGE(written.ok(), written.status().ToString());
}

// Every record a stopped node holds, control records first, each oldest first (the order a node serves them in).
std::vector<kring::Bytes> AllRecords(LocalCluster& c, const std::string& org) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2((c.node(org).data_dir + "/kring.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT record FROM records ORDER BY type = 1, hlc", -1, &st, nullptr) == SQLITE_OK);
  std::vector<kring::Bytes> out;
  while (sqlite3_step(st) == SQLITE_ROW) {
    auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 0));
    out.emplace_back(p, p + sqlite3_column_bytes(st, 0));
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("issue 15: a partner that floods a node at its budget does not starve another partner's writes") {
  // F holds a backlog of notes for B and pushes them as fast as B takes them
  // (what a partner does that comes back after a long time offline, or whose
  // systems write in bulk); H's professionals write one note at a time.
  constexpr size_t kFloodNotes = 20000;
  constexpr size_t kNotesPerCase = 100;
  LocalCluster c(NodeBinary(), 1000);
  c.AddNode("zorg-b", "Zorg B");
  c.AddNode("flood-f", "Flood F");
  c.AddNode("wijkteam-h", "Wijkteam H");
  REQUIRE(c.Connect("flood-f", "zorg-b"));
  REQUIRE(c.Connect("wijkteam-h", "zorg-b"));
  FillFor(c, "flood-f", "zorg-b", kFloodNotes);
  REQUIRE(c.Start("zorg-b"));
  REQUIRE(c.Start("wijkteam-h"));
  const std::string case_h = CreateCase(c, "wijkteam-h");
  REQUIRE(!case_h.empty());
  REQUIRE(!Grant(c, "wijkteam-h", case_h, "zorg-b", {"*"}).empty());
  Watch b(c.node("zorg-b").data_dir);
  auto write_h = [&](int i) {
    auto w = c.Call("wijkteam-h", "POST", "/v1/cases/" + case_h + "/items",
                    json{{"kind", "note"}, {"data", {{"text", "Gesprek " + std::to_string(i) + " gehad; afspraak staat."}}}});
    REQUIRE(w.status == 201);
    return w.body["version"].get<std::string>();
  };
  // H and B in sync before the flood starts.
  const std::string first = write_h(0);
  REQUIRE(LocalCluster::WaitFor([&] { return b.Has(first); }, 20000));

  auto t_start = Clock::now();
  REQUIRE(c.Start("flood-f"));
  REQUIRE(LocalCluster::WaitFor([&] { return b.Fragments() >= 1 + 500; }, 30000));  // the flood is under way

  std::vector<double> during_ms;  // H's write to stored at B, for writes that ended before B held all of F's
  size_t writes = 0, slow = 0, health_failures = 0;
  double queue_max = 0;
  auto t_flood = Clock::now();
  for (int i = 1; i <= 3000; ++i) {
    if (b.Fragments() >= static_cast<int64_t>(1 + kFloodNotes)) break;  // the flood is over
    auto t0 = Clock::now();
    const std::string version = write_h(i);
    while (!b.Has(version) && Ms(t0) < 10000) std::this_thread::sleep_for(std::chrono::microseconds(500));
    const double ms = Ms(t0);
    ++writes;
    // Each honest write is stored at B within a generous bound, however hard F pushes.
    CHECK_MESSAGE(b.Has(version), "write " << i << " of H not at B after " << ms << " ms");
    if (ms >= 10000) ++slow;
    if (b.Fragments() < static_cast<int64_t>(1 + kFloodNotes)) during_ms.push_back(ms);
    // B keeps answering its API.
    auto health = c.Raw("zorg-b", "GET", "/v1/health", "", {});
    if (health.status != 200) ++health_failures;
    auto metrics = c.Raw("zorg-b", "GET", "/metrics", "", {}).raw;
    queue_max = std::max(queue_max, Gauge(metrics, "kring_ingest_queue_pushes{partner=\"flood-f\"}"));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double flood_s = Ms(t_flood) / 1000;
  MESSAGE("H's write to stored at B during F's flood: " << during_ms.size() << " writes over " << flood_s
                                                        << " s, p50 " << Quantile(during_ms, 0.5) << " ms, p99 "
                                                        << Quantile(during_ms, 0.99) << " ms, max "
                                                        << Quantile(during_ms, 1.0) << " ms; F's queue at B at most "
                                                        << queue_max << " push(es)");
  CHECK(slow == 0);
  CHECK(health_failures == 0);
  // Enough honest writes fell inside the flood for the figures to mean something.
  REQUIRE(during_ms.size() >= 10);
  // The flooding partner gets its share too: all of its notes arrive.
  REQUIRE(LocalCluster::WaitFor([&] { return b.Fragments() >= static_cast<int64_t>(1 + kFloodNotes + writes); }, 120000));
  MESSAGE("B held all " << kFloodNotes << " of F's notes " << Ms(t_start) / 1000 << " s after F started");
  // B exports each partner's queue; F's was in use during the flood.
  std::string metrics = c.Raw("zorg-b", "GET", "/metrics", "", {}).raw;
  CHECK(Gauge(metrics, "kring_ingest_queue_pushes{partner=\"wijkteam-h\"}") >= 0);
  CHECK(queue_max >= 1);
}

TEST_CASE("issue 15: pushes beyond a partner's budget are dropped and counted, the others go on, reconciliation brings them") {
  // F, modified, sends its whole backlog at once, bypassing its node: far
  // more than B queues for one partner (8 MiB). B drops the excess instead of
  // holding it or stopping to read the socket every partner shares.
  constexpr size_t kNotes = 10000;
  LocalCluster c(NodeBinary(), 1000);
  c.AddNode("zorg-b", "Zorg B");
  c.AddNode("flood-f", "Flood F");
  c.AddNode("wijkteam-h", "Wijkteam H");
  REQUIRE(c.Connect("flood-f", "zorg-b"));
  REQUIRE(c.Connect("wijkteam-h", "zorg-b"));
  FillFor(c, "flood-f", "zorg-b", kNotes);
  std::vector<kring::Bytes> records = AllRecords(c, "flood-f");
  size_t bytes = 0;
  for (const auto& r : records) bytes += r.size();
  REQUIRE(bytes > 12 * 1024 * 1024);  // more than B may queue for F and one frame more
  std::vector<std::vector<kring::Bytes>> pushes;
  for (size_t i = 0; i < records.size(); i += 512)
    pushes.emplace_back(records.begin() + i, records.begin() + std::min(records.size(), i + 512));

  REQUIRE(c.Start("zorg-b"));
  REQUIRE(c.Start("wijkteam-h"));
  const std::string case_h = CreateCase(c, "wijkteam-h");
  REQUIRE(!case_h.empty());
  REQUIRE(!Grant(c, "wijkteam-h", case_h, "zorg-b", {"*"}).empty());
  Watch b(c.node("zorg-b").data_dir);

  std::thread flood([&] { PushesAs(c, "flood-f", "zorg-b", pushes); });
  std::vector<std::string> versions;
  for (int i = 0; i < 20; ++i) {
    auto w = c.Call("wijkteam-h", "POST", "/v1/cases/" + case_h + "/items",
                    json{{"kind", "note"}, {"data", {{"text", "Gesprek " + std::to_string(i) + " gehad."}}}});
    REQUIRE(w.status == 201);
    versions.push_back(w.body["version"].get<std::string>());
  }
  flood.join();
  for (const std::string& v : versions) CHECK(LocalCluster::WaitFor([&] { return b.Has(v); }, 10000));
  CHECK(c.Raw("zorg-b", "GET", "/v1/health", "", {}).status == 200);
  // What B did not queue was dropped and counted, not held.
  REQUIRE(LocalCluster::WaitFor([&] { return Rejected(c, "zorg-b", "ingest_queue_full") > 0; }, 10000));
  CHECK(b.Fragments() < static_cast<int64_t>(kNotes));
  // F's own node offers the rest again by reconciliation.
  REQUIRE(c.Start("flood-f"));
  REQUIRE(LocalCluster::WaitFor([&] { return b.Fragments() >= static_cast<int64_t>(kNotes + versions.size()); }, 120000));
}
