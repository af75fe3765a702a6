// Tests that the store keeps its reconciliation index equal to the database: every commit path, rollbacks, failed disks, other processes.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include <sqlite3.h>

#include "crypto/primitives.h"
#include "node/fault_vfs.h"
#include "node/store.h"

using namespace kring;

namespace {

struct Dir {
  std::string path;
  Dir() {
    std::string t = "/tmp/kring-recon-store-test-XXXXXX";
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~Dir() {
    SetDiskFault(DiskFault::kNone);
    std::system(("rm -rf " + path).c_str());
  }
  std::string db() const { return path + "/kring.db"; }
};

const std::string kSelf = "org-a";
const std::vector<std::string> kPartners = {"org-b", "org-c"};

RecordRow Row(int n, std::vector<std::string> audience, CaseId c = CaseId{}, size_t bytes = 16) {
  RecordRow r;
  Bytes body(bytes, static_cast<uint8_t>(n));
  std::string tag = "row" + std::to_string(n);
  body.insert(body.end(), tag.begin(), tag.end());
  r.id = HashParts("recon-store-test", {body});
  r.type = RecordType::kFragment;
  r.case_id = c;
  r.author = kSelf;
  r.kind = "note";
  r.domain = "housing";
  r.hlc = MakeHlc(1'700'000'000'000ull + static_cast<uint64_t>(n % 50), static_cast<uint16_t>(n));
  r.record = body;
  r.audience = std::move(audience);
  return r;
}

// Each partner's view holds exactly what ItemsFor(partner, self) lists.
void CheckIndex(Store& store) {
  ReconcileIndex* index = store.reconcile_index();
  REQUIRE(index != nullptr);
  for (const std::string& p : kPartners) {
    CAPTURE(p);
    auto items = store.ItemsFor(p, kSelf);
    REQUIRE(items.ok());
    ReconcileSet want(*items);
    auto lock = index->ReadLock();
    auto view = index->ViewFor(p);
    REQUIRE(view.has_value());
    REQUIRE(view->size() == want.size());
    CHECK(view->Summarize(0, want.size()) == want.Summarize(0, want.size()));
    size_t i = 0;
    view->Scan(0, view->size(), [&](size_t, const ItemKey& k) {
      CHECK(k == want.item(i++));
      return true;
    });
  }
}

std::unique_ptr<Store> OpenWithIndex(const std::string& db, const std::string& vfs = "") {
  auto store = Store::Open(db, vfs);
  REQUIRE(store.ok());
  REQUIRE((*store)->EnableReconcileIndex(kSelf).ok());
  (*store)->reconcile_index()->SetPartners(kPartners);
  return std::move(*store);
}

}  // namespace

TEST_CASE("the reconciliation index follows stores, readdressing, purges and erasure") {
  Dir d;
  CaseId c1{}, c2{};
  c1[0] = 1;
  c2[0] = 2;
  {
    auto first = Store::Open(d.db());
    REQUIRE(first.ok());
    REQUIRE((*first)->PutRecords({Row(1, {"org-a", "org-b"}, c1), Row(2, {"org-a", "org-b", "org-c"}, c1)}, kSelf, 1).ok());
  }
  auto store = OpenWithIndex(d.db());  // built from what is there
  CheckIndex(*store);
  // New records, one not addressed to this node, one to nobody but us.
  REQUIRE(store->PutRecords({Row(3, {"org-b", "org-c"}, c1), Row(4, {"org-a"}, c1), Row(5, {"org-a", "org-c"}, c2),
                             Row(6, {"org-a", "org-b"}, c2)},
                            kSelf, 2)
              .ok());
  CheckIndex(*store);
  // Duplicates change nothing.
  REQUIRE(store->PutRecords({Row(1, {"org-a", "org-b"}, c1)}, kSelf, 3).ok());
  CheckIndex(*store);
  // Readdressing: grow one, shrink another.
  REQUIRE(store->SetAudiences({{Row(1, {}).id, {"org-a", "org-b", "org-c"}}, {Row(2, {}).id, {"org-a"}}}).ok());
  CheckIndex(*store);
  // A purge (withdrawal).
  REQUIRE(store->DeleteRecords({Row(6, {}).id, Row(1, {}).id}).ok());
  CheckIndex(*store);
  // Erasure of a whole case.
  REQUIRE(store->DestroyRecords(c2, {Row(5, {}).id}, true, 4).ok());
  CheckIndex(*store);
  // An access-log entry with its copy for a partner.
  AccessEntry e;
  RandomBytes(e.event_id);
  e.time_ms = 1700000000000;
  e.action = "read";
  e.outcome = "success";
  e.actor_id = "p1";
  e.actor_name = "Name";
  e.actor_role = "casemanager";
  e.organisation = kSelf;
  e.client_system = "zaaksysteem";
  e.case_id = c1;
  e.items = {"abc"};
  RecordRow copy = Row(7, {"org-a", "org-c"}, c1);
  copy.type = RecordType::kAccessRecord;
  REQUIRE(store->AppendAccess(&e, {copy}).ok());
  CheckIndex(*store);
  auto lock = store->reconcile_index()->ReadLock();
  CHECK(store->reconcile_index()->ViewFor("org-b")->size() == 0);  // 1 and 6 purged, 2 readdressed away
  CHECK(store->reconcile_index()->ViewFor("org-c")->size() == 1);  // the access record; 5 erased
}

TEST_CASE("a transaction that fails leaves the reconciliation index as it was") {
  Dir d;
  auto store = OpenWithIndex(d.db());
  REQUIRE(store->PutRecords({Row(1, {"org-a", "org-b"})}, kSelf, 1).ok());
  // A trigger refuses the second row: the whole batch rolls back, the first row's audience with it.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(d.db().c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.kind = 'refused' "
                           "BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  REQUIRE(store->ChangedByOthers());
  REQUIRE(store->RebuildReconcileIndex().ok());
  RecordRow bad = Row(3, {"org-a", "org-b"});
  bad.kind = "refused";
  CHECK_FALSE(store->PutRecords({Row(2, {"org-a", "org-b"}), bad}, kSelf, 2).ok());
  CheckIndex(*store);
  auto lock = store->reconcile_index()->ReadLock();
  CHECK(store->reconcile_index()->ViewFor("org-b")->size() == 1);
}

TEST_CASE("a commit the disk refuses does not reach the reconciliation index") {
  Dir d;
  REQUIRE(RegisterFaultVfs().ok());
  SetDiskFault(DiskFault::kNone);
  auto store = OpenWithIndex(d.db(), kFaultVfsName);
  REQUIRE(store->PutRecords({Row(1, {"org-a", "org-b"})}, kSelf, 1).ok());
  for (DiskFault f : {DiskFault::kWriteError, DiskFault::kSyncError, DiskFault::kDiskFull}) {
    SetDiskFault(f);
    CHECK_FALSE(store->PutRecords({Row(10 + static_cast<int>(f), {"org-a", "org-b"}, CaseId{}, 5000)}, kSelf, 2).ok());
    SetDiskFault(DiskFault::kNone);
    CheckIndex(*store);
  }
  REQUIRE(store->PutRecords({Row(2, {"org-a", "org-b"})}, kSelf, 3).ok());
  CheckIndex(*store);
  auto lock = store->reconcile_index()->ReadLock();
  CHECK(store->reconcile_index()->ViewFor("org-b")->size() == 2);
}

TEST_CASE("another process's records reach the index by a rebuild; the WAL is still checkpointed") {
  Dir d;
  auto store = OpenWithIndex(d.db());
  {
    auto other = Store::Open(d.db());
    REQUIRE(other.ok());
    REQUIRE((*other)->PutRecords({Row(1, {"org-a", "org-b"}), Row(2, {"org-a", "org-c"})}, kSelf, 1).ok());
  }
  REQUIRE(store->ChangedByOthers());
  REQUIRE(store->RebuildReconcileIndex().ok());
  CheckIndex(*store);
  // Our WAL hook replaces SQLite's automatic checkpoint: it must still
  // checkpoint, or the WAL would grow without bound. 2,000 records of 4 KB
  // are about 2,000 pages; checkpointed at 1,000, the WAL stays near that.
  for (int batch = 0; batch < 20; ++batch) {
    std::vector<RecordRow> rows;
    for (int i = 0; i < 100; ++i) rows.push_back(Row(1000 + batch * 100 + i, {"org-a", "org-b"}, CaseId{}, 4000));
    REQUIRE(store->PutRecords(rows, kSelf, 2).ok());
  }
  CheckIndex(*store);
  struct stat st{};
  REQUIRE(::stat((d.db() + "-wal").c_str(), &st) == 0);
  CHECK(st.st_size < 1500 * 4096);
}
