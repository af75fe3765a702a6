// Tests of the node's SQLite store: schema, idempotent record storage, audiences, partners and tokens.
#include <doctest/doctest.h>

#include <cstdlib>
#include <sys/stat.h>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include <sqlite3.h>

#include "node/api.h"
#include "node/node.h"
#include "node/store.h"
#include "protocol/messages.h"

using namespace kring;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    std::string t = "/tmp/kring-store-test-XXXXXX";
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() { std::system(("rm -rf " + path).c_str()); }
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Fragment MakeFragment(const NodeIdentity& author, const std::vector<PublicIdentity>& to, const std::string& text,
                      HlcTimestamp hlc, CaseId case_id) {
  FragmentDraft d;
  d.case_id = case_id;
  d.kind = "note";
  d.domain = "housing";
  d.hlc = hlc;
  d.body.assign(text.begin(), text.end());
  d.recipients = to;
  auto f = SealFragment(d, author);
  REQUIRE(f.ok());
  return *f;
}

}  // namespace

TEST_CASE("a new database is created at the current schema version in WAL mode") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir.path + "/kring.db").c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, nullptr);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(sqlite3_column_int(st, 0) == kSchemaVersion);
  sqlite3_finalize(st);
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
  // Reopening an up-to-date database migrates nothing and works.
  store->reset();
  CHECK(Store::Open(dir.path + "/kring.db").ok());
}

TEST_CASE("a database from a newer kring is refused rather than misread") {
  TempDir dir;
  { REQUIRE(Store::Open(dir.path + "/kring.db").ok()); }
  sqlite3* db = nullptr;
  sqlite3_open((dir.path + "/kring.db").c_str(), &db);
  sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().message().find("newer") != std::string::npos);
}

TEST_CASE("storing the same fragment twice keeps one copy: duplicates and replays are harmless") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  NodeIdentity a = NodeIdentity::Generate("org-a", "A");
  NodeIdentity b = NodeIdentity::Generate("org-b", "B");
  Fragment f = MakeFragment(a, {b.pub}, "hello", MakeHlc(1000, 0), NewCaseId());
  Bytes rec = EncodeFragmentRecord(f);
  auto first = (*store)->PutFragment(f, f.Id(), rec, "org-a", 1);
  auto second = (*store)->PutFragment(f, f.Id(), rec, "org-b", 2);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(*first);
  CHECK_FALSE(*second);
  CHECK(*(*store)->CountFragments() == 1);
}

TEST_CASE("a fragment's audience is exactly its recipients, listed in (hlc, id) order") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  NodeIdentity a = NodeIdentity::Generate("org-a", "A");
  NodeIdentity b = NodeIdentity::Generate("org-b", "B");
  NodeIdentity c = NodeIdentity::Generate("org-c", "C");
  CaseId case_id = NewCaseId();
  Fragment f1 = MakeFragment(a, {b.pub}, "one", MakeHlc(3000, 0), case_id);
  Fragment f2 = MakeFragment(a, {b.pub, c.pub}, "two", MakeHlc(2000, 0), case_id);
  for (const Fragment* f : {&f1, &f2}) REQUIRE((*store)->PutFragment(*f, f->Id(), EncodeFragmentRecord(*f), "org-a", 1).ok());
  auto for_b = (*store)->ItemsFor("org-b");
  auto for_c = (*store)->ItemsFor("org-c");
  REQUIRE(for_b.ok());
  REQUIRE(for_c.ok());
  REQUIRE(for_b->size() == 2);
  CHECK((*for_b)[0].id == f2.Id());  // earlier hlc first
  CHECK((*for_b)[1].id == f1.Id());
  REQUIRE(for_c->size() == 1);
  CHECK((*for_c)[0].id == f2.Id());
  CHECK(*(*store)->InAudience(f1.Id(), "org-b"));
  CHECK_FALSE(*(*store)->InAudience(f1.Id(), "org-c"));
  CHECK(*(*store)->MaxHlc() == MakeHlc(3000, 0));
}

TEST_CASE("the database file holds no plaintext of a fragment body") {
  TempDir dir;
  const std::string secret = "Schuldhulp: achterstand huur 2400 euro";
  {
    auto store = Store::Open(dir.path + "/kring.db");
    REQUIRE(store.ok());
    NodeIdentity a = NodeIdentity::Generate("org-a", "A");
    NodeIdentity b = NodeIdentity::Generate("org-b", "B");
    Fragment f = MakeFragment(a, {b.pub}, secret, MakeHlc(1000, 0), NewCaseId());
    REQUIRE((*store)->PutFragment(f, f.Id(), EncodeFragmentRecord(f), "org-a", 1).ok());
  }
  for (const char* suffix : {"", "-wal", "-shm"}) CHECK(Slurp(dir.path + "/kring.db" + suffix).find(secret) == std::string::npos);
}

TEST_CASE("partners are unique by organisation and by key") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  NodeIdentity b = NodeIdentity::Generate("org-b", "B");
  Partner p{b.pub, "tcp://127.0.0.1:9", 1};
  CHECK((*store)->AddPartner(p).ok());
  CHECK((*store)->AddPartner(p).code() == Status::Code::kAlreadyExists);
  Partner same_keys = p;
  same_keys.identity.org = "org-b-clone";
  CHECK((*store)->AddPartner(same_keys).code() == Status::Code::kConflict);
  auto list = (*store)->ListPartners();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 1);
  CHECK(list->front().identity.transport_pk == b.pub.transport_pk);
  CHECK((*store)->RemovePartner("org-b").ok());
  CHECK((*store)->RemovePartner("org-b").code() == Status::Code::kNotFound);
}

TEST_CASE("another process's write is noticed through ChangedByOthers") {
  TempDir dir;
  auto node_view = Store::Open(dir.path + "/kring.db");
  auto cli_view = Store::Open(dir.path + "/kring.db");
  REQUIRE(node_view.ok());
  REQUIRE(cli_view.ok());
  (*node_view)->ChangedByOthers();
  CHECK_FALSE((*node_view)->ChangedByOthers());
  NodeIdentity b = NodeIdentity::Generate("org-b", "B");
  REQUIRE((*cli_view)->AddPartner(Partner{b.pub, "tcp://127.0.0.1:9", 1}).ok());
  CHECK((*node_view)->ChangedByOthers());
  CHECK_FALSE((*node_view)->ChangedByOthers());
}

TEST_CASE("issue 15: the partner snapshot is replaced when partners change, here or in another process") {
  TempDir dir;
  auto node_view = Store::Open(dir.path + "/kring.db");
  auto cli_view = Store::Open(dir.path + "/kring.db");
  REQUIRE(node_view.ok());
  REQUIRE(cli_view.ok());
  (*node_view)->ChangedByOthers();
  auto none = (*node_view)->Partners();
  REQUIRE(none.ok());
  CHECK((*none)->empty());
  CHECK(*(*node_view)->Partners() == *none);  // the same snapshot while nothing changes
  NodeIdentity b = NodeIdentity::Generate("org-b", "B");
  REQUIRE((*node_view)->AddPartner(Partner{b.pub, "tcp://127.0.0.1:9", 1}).ok());
  auto one = (*node_view)->Partners();
  REQUIRE(one.ok());
  REQUIRE((*one)->size() == 1);
  CHECK((*none)->empty());  // a snapshot taken before is not changed under its holder
  // `peer add` in another process: seen once the node notices the change.
  NodeIdentity c = NodeIdentity::Generate("org-c", "C");
  REQUIRE((*cli_view)->AddPartner(Partner{c.pub, "tcp://127.0.0.1:10", 1}).ok());
  CHECK((*node_view)->ChangedByOthers());
  CHECK((*(*node_view)->Partners())->size() == 2);
  NodeIdentity b2 = NodeIdentity::Generate("org-b", "B");
  b2.pub.org = "org-b";
  REQUIRE((*node_view)->SetPartnerKeys(b2.pub).ok());
  auto rekeyed = (*node_view)->Partners();
  REQUIRE(rekeyed.ok());
  CHECK((**rekeyed)[0].identity.sign_pk == b2.pub.sign_pk);
  REQUIRE((*node_view)->RemovePartner("org-c").ok());
  CHECK((*(*node_view)->Partners())->size() == 1);
}

TEST_CASE("API tokens are stored only as hashes and stop working when revoked") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  std::string token = NewApiToken();
  CHECK(token.rfind("krt_", 0) == 0);
  REQUIRE((*store)->AddToken("zaaksysteem", HashApiToken(token), 1).ok());
  CHECK((*store)->AddToken("zaaksysteem", HashApiToken(NewApiToken()), 2).code() == Status::Code::kAlreadyExists);
  auto who = (*store)->ClientForToken(HashApiToken(token));
  REQUIRE(who.ok());
  REQUIRE(who->has_value());
  CHECK(**who == "zaaksysteem");
  CHECK_FALSE((*store)->ClientForToken(HashApiToken(token + "x"))->has_value());
  REQUIRE((*store)->RevokeToken("zaaksysteem", 3).ok());
  CHECK_FALSE((*store)->ClientForToken(HashApiToken(token))->has_value());
  CHECK(Slurp(dir.path + "/kring.db").find(token) == std::string::npos);
  CHECK(Slurp(dir.path + "/kring.db-wal").find(token) == std::string::npos);
}

TEST_CASE("init creates an owner-only key file and refuses to overwrite an existing node") {
  TempDir dir;
  std::string data = dir.path + "/node";
  auto pub = InitNode(data, "gemeente-test", "Gemeente Test");
  REQUIRE(pub.ok());
  struct stat st {};
  REQUIRE(stat(KeyFilePath(data).c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(stat(data.c_str(), &st) == 0);
  CHECK((st.st_mode & 0077) == 0);
  auto again = InitNode(data, "gemeente-test", "Gemeente Test");
  CHECK(again.status().code() == Status::Code::kAlreadyExists);
  auto node = Node::Open(data);
  REQUIRE(node.ok());
  CHECK((*node)->identity().sign_pk == pub->sign_pk);
}

namespace {
AccessEntry Entry(const std::string& actor, const CaseId& c) {
  AccessEntry e;
  RandomBytes(e.event_id);
  e.time_ms = 1700000000000;
  e.action = "read";
  e.outcome = "success";
  e.actor_id = actor;
  e.actor_name = "Name " + actor;
  e.actor_role = "casemanager";
  e.organisation = "org-a";
  e.client_system = "zaaksysteem";
  e.case_id = c;
  e.items = {"abc"};
  return e;
}
}  // namespace

TEST_CASE("the access log chains every entry to the one before it") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  CaseId c = NewCaseId();
  for (int i = 0; i < 5; ++i) {
    AccessEntry e = Entry("p" + std::to_string(i), c);
    REQUIRE((*store)->AppendAccess(&e).ok());
    CHECK(e.seq == i + 1);
  }
  auto report = (*store)->VerifyAccessLog();
  REQUIRE(report.ok());
  CHECK(report->entries == 5);
  CHECK(report->first_broken_seq == 0);
  auto entries = (*store)->AccessOfCase(c, 0, std::numeric_limits<int64_t>::max());
  REQUIRE(entries.ok());
  REQUIRE(entries->size() == 5);
  CHECK((*entries)[1].prev_hash == (*entries)[0].hash);
  CHECK((*store)->AccessOfCase(NewCaseId(), 0, std::numeric_limits<int64_t>::max())->empty());
  CHECK((*store)->AccessOfCase(c, 1700000000001, std::numeric_limits<int64_t>::max())->empty());
}

TEST_CASE("the access log refuses updates and deletes, and names the first altered entry") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  CaseId c = NewCaseId();
  for (int i = 0; i < 4; ++i) {
    AccessEntry e = Entry("p" + std::to_string(i), c);
    REQUIRE((*store)->AppendAccess(&e).ok());
  }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir.path + "/kring.db").c_str(), &db) == SQLITE_OK);
  CHECK(sqlite3_exec(db, "UPDATE access_log SET actor_name='x' WHERE seq=2", nullptr, nullptr, nullptr) != SQLITE_OK);
  CHECK(sqlite3_exec(db, "DELETE FROM access_log WHERE seq=2", nullptr, nullptr, nullptr) != SQLITE_OK);
  SUBCASE("an altered field") {
    REQUIRE(sqlite3_exec(db, "DROP TRIGGER access_log_no_update; UPDATE access_log SET actor_name='Someone else' WHERE seq=3",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    auto report = (*store)->VerifyAccessLog();
    REQUIRE(report.ok());
    CHECK(report->first_broken_seq == 3);
    CHECK(report->reason.find("altered") != std::string::npos);
  }
  SUBCASE("a removed entry") {
    REQUIRE(sqlite3_exec(db, "DROP TRIGGER access_log_no_delete; DELETE FROM access_log WHERE seq=2", nullptr, nullptr,
                         nullptr) == SQLITE_OK);
    auto report = (*store)->VerifyAccessLog();
    REQUIRE(report.ok());
    CHECK(report->first_broken_seq == 2);
  }
  sqlite3_close(db);
}

namespace {

// A row as the node stores it; `type` other than fragment stands for a control record.
RecordRow Row(const RecordId& id, RecordType type, const CaseId& case_id, HlcTimestamp hlc, const Bytes& record,
              std::vector<std::string> audience) {
  return RecordRow{id, type, case_id, "org-a", "", "", hlc, record, std::move(audience)};
}

RecordId IdOf(uint8_t b) {
  RecordId id{};
  id.fill(b);
  return id;
}

}  // namespace

TEST_CASE("audiences are rewritten only where they change, and growth is reported") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  CaseId case_id = NewCaseId();
  Bytes rec = {1, 2, 3};
  REQUIRE((*store)->PutRecords({Row(IdOf(1), RecordType::kFragment, case_id, 10, rec, {"org-a", "org-b"}),
                                Row(IdOf(2), RecordType::kFragment, case_id, 20, rec, {"org-a"})}, "org-a", 1).ok());
  uint64_t gen = (*store)->generation();
  // Same audiences, in another order and with a duplicate: nothing written.
  auto none = (*store)->SetAudiences({{IdOf(1), {"org-b", "org-a", "org-b"}}, {IdOf(2), {"org-a"}}});
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK((*store)->generation() == gen);
  // One shrinks, one grows: only the growth is reported, both are stored.
  auto grown = (*store)->SetAudiences({{IdOf(1), {"org-a"}}, {IdOf(2), {"org-a", "org-c"}}, {IdOf(9), {"org-x"}}});
  REQUIRE(grown.ok());
  REQUIRE(grown->size() == 1);
  CHECK((*grown)[0] == IdOf(2));
  CHECK((*store)->generation() > gen);
  CHECK(*(*store)->AudienceOf(IdOf(1)) == std::vector<std::string>{"org-a"});
  CHECK(*(*store)->AudienceOf(IdOf(2)) == std::vector<std::string>{"org-a", "org-c"});
  CHECK((*store)->AudienceOf(IdOf(9))->empty());  // unknown ids are skipped, not created
  auto for_c = (*store)->ItemsFor("org-c");
  REQUIRE(for_c->size() == 1);
  CHECK((*for_c)[0].hlc == 20);  // the audience row keeps the record's hlc
}

TEST_CASE("records are served to a peer in the order it can accept them, within its audience and a byte budget") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  CaseId case_id = NewCaseId();
  auto bytes = [](uint8_t b) { return Bytes(100, b); };
  REQUIRE((*store)->PutRecords({Row(IdOf(1), RecordType::kFragment, case_id, 5, bytes(1), {"org-b"}),
                                Row(IdOf(2), RecordType::kAccessRecord, case_id, 1, bytes(2), {"org-b"}),
                                Row(IdOf(3), RecordType::kConsentGrant, case_id, 30, bytes(3), {"org-b"}),
                                Row(IdOf(4), RecordType::kCaseGenesis, case_id, 20, bytes(4), {"org-b"}),
                                Row(IdOf(5), RecordType::kFragment, case_id, 2, bytes(5), {"org-b"}),
                                Row(IdOf(6), RecordType::kFragment, case_id, 1, bytes(6), {"org-c"}),
                                Row(IdOf(8), RecordType::kKeyGrant, case_id, 0, bytes(8), {"org-b"})},
                               "org-a", 1).ok());
  std::vector<RecordId> asked = {IdOf(8), IdOf(1), IdOf(2), IdOf(3), IdOf(4), IdOf(5), IdOf(6), IdOf(7), IdOf(1)};
  auto all = (*store)->RecordsForPeer(asked, "org-b", 1 << 20);
  REQUIRE(all.ok());
  // Genesis and consent (by hlc), then fragments (by hlc), then the key
  // grant (its fragment must be there first), then the access record; not
  // org-c's fragment, not the unknown id, no duplicate.
  std::vector<uint8_t> order;
  for (const Bytes& b : *all) order.push_back(b[0]);
  CHECK(order == std::vector<uint8_t>{4, 3, 5, 1, 8, 2});
  auto some = (*store)->RecordsForPeer(asked, "org-b", 250);
  REQUIRE(some.ok());
  CHECK(some->size() == 2);
}

TEST_CASE("a stored control record makes its case due until a recompute records the next change") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  CaseId a = NewCaseId(), b = NewCaseId();
  Bytes rec = {1};
  CaseId c = NewCaseId();
  REQUIRE((*store)->PutRecords({Row(IdOf(1), RecordType::kFragment, a, 1, rec, {"org-a"}),
                                Row(IdOf(2), RecordType::kConsentGrant, b, 2, rec, {"org-a"}),
                                Row(IdOf(3), RecordType::kKeyGrant, c, 3, rec, {"org-a"})}, "org-a", 1).ok());
  auto due = (*store)->CaseSchedule();
  REQUIRE(due.ok());
  REQUIRE(due->size() == 1);  // a fragment or a key grant alone changes no decision
  CHECK((*due)[0].first == b);
  CHECK((*due)[0].second == 0);
  REQUIRE((*store)->SetNextChange(b, 5000).ok());
  CHECK((*(*store)->CaseSchedule())[0].second == 5000);
  REQUIRE((*store)->SetNextChange(b, std::nullopt).ok());
  CHECK((*store)->CaseSchedule()->empty());
  REQUIRE((*store)->SetNodeState("k", Bytes{7}).ok());
  CHECK(**(*store)->GetNodeState("k") == Bytes{7});
  CHECK(!(*store)->GetNodeState("absent")->has_value());
}

TEST_CASE("the fragment count follows stores and purges without counting rows") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  CaseId c = NewCaseId();
  Bytes rec = {1};
  REQUIRE((*store)->PutRecords({Row(IdOf(1), RecordType::kFragment, c, 1, rec, {"org-a"}),
                                Row(IdOf(2), RecordType::kFragment, c, 2, rec, {"org-a"}),
                                Row(IdOf(3), RecordType::kConsentGrant, c, 3, rec, {"org-a"})}, "org-a", 1).ok());
  REQUIRE((*store)->PutRecords({Row(IdOf(1), RecordType::kFragment, c, 1, rec, {"org-a"})}, "org-a", 1).ok());
  CHECK(*(*store)->CountFragments() == 2);
  REQUIRE((*store)->DeleteRecords({IdOf(1), IdOf(3), IdOf(8)}).ok());
  CHECK(*(*store)->CountFragments() == 1);
}

TEST_CASE("a version 2 database is migrated: every case is due once and the fragment count is taken") {
  TempDir dir;
  std::string path = dir.path + "/kring.db";
  CaseId c = NewCaseId();
  {
    auto store = Store::Open(path);
    REQUIRE(store.ok());
    Bytes rec = {1};
    REQUIRE((*store)->PutRecords({Row(IdOf(1), RecordType::kFragment, c, 1, rec, {"org-a"}),
                                  Row(IdOf(2), RecordType::kFragment, c, 2, rec, {"org-a"})}, "org-a", 1).ok());
  }
  // Back to what version 2 had.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "DROP TRIGGER records_count_insert; DROP TRIGGER records_count_delete; DROP TABLE counters;"
                           "DROP TRIGGER records_max_hlc; DROP TABLE node_state; DROP TABLE case_schedule;"
                           "DROP INDEX records_by_case_type; CREATE INDEX records_by_case ON records (case_id, hlc);"
                           "DROP TABLE own_checkpoints; DROP TABLE held_checkpoints;"  // version 4's
                           "DROP INDEX records_by_author;"  // version 5's
                           "DROP TABLE roster_versions; DROP TABLE org_keys; DROP TABLE removed_members;"
                           "DROP TABLE resealed_keys; ALTER TABLE partners DROP COLUMN source;"  // version 6's
                           "DROP TABLE changes; DROP TABLE idempotency;"  // issue 14's (the API's migration)
                           // version 6's (issue 16): the retention tables, and the access log's first delete trigger
                           "DROP TRIGGER access_log_no_delete; DROP TABLE access_log_expiries; DROP TABLE legal_holds;"
                           "DROP TABLE destroyed; CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log"
                           " BEGIN SELECT RAISE(ABORT, 'the access log is append-only'); END;"
                           "DROP TABLE unreadable_fragments; DROP TABLE body_checks;"  // version 9's (issue 15)
                           "DROP INDEX audience_by_time; CREATE INDEX audience_by_id ON audience (id, org);"
                           "PRAGMA user_version=2;",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  auto store = Store::Open(path);
  REQUIRE(store.ok());
  CHECK(*(*store)->CountFragments() == 2);
  auto due = (*store)->CaseSchedule();
  REQUIRE(due->size() == 1);
  CHECK((*due)[0] == std::make_pair(c, int64_t{0}));
  CHECK(*(*store)->MaxHlc() == 2);
  // What was stored before version 9 was checked on receipt: the body checks start after it.
  CHECK(*(*store)->BodyCheckCursor() == 0);
  CHECK(*(*store)->CountUnreadable() == 0);
}

TEST_CASE("issue 15: unreadable fragments are kept once per fragment, by case, and go when the fragment is purged") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  CaseId c = NewCaseId(), other = NewCaseId();
  Bytes rec = {1, 2, 3};
  REQUIRE((*store)->PutRecords({Row(IdOf(1), RecordType::kFragment, c, 1, rec, {"org-a"}),
                                Row(IdOf(2), RecordType::kFragment, c, 2, rec, {"org-a"}),
                                Row(IdOf(3), RecordType::kFragment, other, 3, rec, {"org-a"})}, "org-b", 5).ok());
  // The body checks follow the change feed: every stored fragment, in order, once.
  auto stored = (*store)->FragmentsStoredAfter(0, 10);
  REQUIRE(stored.ok());
  REQUIRE(stored->size() == 3);
  CHECK((*stored)[0].id == IdOf(1));
  CHECK((*stored)[2].id == IdOf(3));
  CHECK((*stored)[0].time_ms == 5);
  CHECK((*store)->FragmentsStoredAfter((*stored)[1].seq, 10)->size() == 1);
  CHECK(*(*store)->BodyCheckCursor() == 0);
  REQUIRE((*store)->SetBodyCheckCursor((*stored)[1].seq).ok());
  CHECK(*(*store)->BodyCheckCursor() == (*stored)[1].seq);

  CHECK(*(*store)->MarkUnreadable({IdOf(1), c, "invalid", 7}));
  CHECK_FALSE(*(*store)->MarkUnreadable({IdOf(1), c, "invalid", 8}));  // once
  CHECK(*(*store)->MarkUnreadable({IdOf(3), other, "content-key", 7}));
  CHECK_FALSE(*(*store)->MarkUnreadable({IdOf(9), c, "decrypt", 7}));  // not held: not kept
  auto of_c = (*store)->UnreadableOfCase(c);
  REQUIRE(of_c.ok());
  REQUIRE(of_c->size() == 1);
  CHECK((*of_c)[0].id == IdOf(1));
  CHECK((*of_c)[0].reason == "invalid");
  CHECK((*of_c)[0].found_ms == 7);
  CHECK(*(*store)->CountUnreadable() == 2);
  REQUIRE((*store)->DeleteRecords({IdOf(1)}).ok());
  CHECK((*store)->UnreadableOfCase(c)->empty());
  REQUIRE((*store)->DestroyRecords(other, {IdOf(3)}, true, 9).ok());
  CHECK(*(*store)->CountUnreadable() == 0);
}

TEST_CASE("an access-log entry and its copy for the regie organisation are stored together, or neither") {
  TempDir dir;
  auto store = Store::Open(dir.path + "/kring.db");
  REQUIRE(store.ok());
  CaseId c = NewCaseId();
  Bytes rec = {7, 7, 7};
  AccessEntry e = Entry("p1", c);
  uint64_t gen = (*store)->generation();
  RecordRow copy = Row(IdOf(5), RecordType::kAccessRecord, c, 10, rec, {"org-a", "org-r"});
  REQUIRE((*store)->AppendAccess(&e, {copy}).ok());
  CHECK((*store)->generation() > gen);  // the copy is there to be sent
  CHECK(*(*store)->AudienceOf(IdOf(5)) == std::vector<std::string>{"org-a", "org-r"});
  CHECK((*store)->AccessOfCase(c, 0, std::numeric_limits<int64_t>::max())->size() == 1);
  // A copy that cannot be stored (a malformed row here) takes the entry with it.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open((dir.path + "/kring.db").c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "CREATE TRIGGER refuse BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  AccessEntry f = Entry("p2", c);
  CHECK_FALSE((*store)->AppendAccess(&f, {Row(IdOf(6), RecordType::kAccessRecord, c, 11, rec, {"org-r"})}).ok());
  CHECK((*store)->AccessOfCase(c, 0, std::numeric_limits<int64_t>::max())->size() == 1);
  CHECK(!(*(*store)->GetRecord(IdOf(6))).has_value());
}
