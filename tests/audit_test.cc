// Tests of signed access-log checkpoints and of backup and restore (issue 11, findings 7 and 9): tampering, truncation and restores are named, never "intact".
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <sqlite3.h>
#include <sys/stat.h>

#include "node/api.h"
#include "node/backup.h"
#include "node/checkpoint.h"
#include "node/node.h"

using namespace kring;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    std::string t = "/tmp/kring-audit-test-XXXXXX";
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() { std::system(("rm -rf " + path).c_str()); }
};

// The value of a Result the test cannot go on without.
template <class T>
T Must(Result<T> r) {
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::atomic<uint64_t> g_now{1'800'000'000'000};
uint64_t FakeNow() { return g_now.load(); }
void Advance(int64_t ms) { g_now += static_cast<uint64_t>(ms); }

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A node of `org` in DIR/org, opened in-process with the fake clock (no sync).
std::unique_ptr<Node> MakeNode(const std::string& root, const std::string& org) {
  const std::string dir = root + "/" + org;
  REQUIRE(InitNode(dir, org, org).ok());
  auto node = Node::Open(dir, &FakeNow);
  REQUIRE(node.ok());
  return std::move(*node);
}

void Befriend(Node& a, Node& b) {
  REQUIRE(a.store().AddPartner(Partner{b.identity(), "tcp://127.0.0.1:1", 0}).ok());
  REQUIRE(b.store().AddPartner(Partner{a.identity(), "tcp://127.0.0.1:1", 0}).ok());
}

AccessEntry Entry(const std::string& org, int i) {
  AccessEntry e;
  RandomBytes(e.event_id);
  e.time_ms = static_cast<int64_t>(FakeNow());
  e.action = "read";
  e.outcome = "success";
  e.actor_id = "medewerker-" + std::to_string(i);
  e.actor_name = "Medewerker " + std::to_string(i);
  e.actor_role = "casemanager";
  e.organisation = org;
  e.client_system = "demo";
  return e;
}

void Log(Node& n, int count) {
  for (int i = 0; i < count; ++i) {
    AccessEntry e = Entry(n.identity().org, i);
    REQUIRE(n.AppendAccess(&e).ok());
  }
}

// Signs a checkpoint now, as a running node does when one is due.
Checkpoint SignNow(Node& n) {
  REQUIRE(n.CheckpointIfDue(true).ok());
  auto own = n.store().OwnCheckpoints();
  REQUIRE(own.ok());
  REQUIRE_FALSE(own->empty());
  auto decoded = DecodeCheckpoint(own->back().record);
  REQUIRE(decoded.ok());
  return *decoded;
}

CheckpointAudit Audit(Node& n, const std::vector<CheckpointSource>& extra = {}) {
  auto a = AuditAccessLog(n.store(), n.identity(), extra);
  REQUIRE(a.ok());
  return *a;
}

std::string Findings(const CheckpointAudit& a) {
  std::string all;
  for (const std::string& f : a.findings) all += f + "\n";
  return all;
}

sqlite3* Raw(const std::string& db_path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(db_path.c_str(), &db) == SQLITE_OK);
  return db;
}

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  INFO(sql << ": " << (err ? err : ""));
  sqlite3_free(err);
  REQUIRE(rc == SQLITE_OK);
}

// The attack of finding 7: drop the triggers, delete entry `victim`, and
// write the remaining entries back as a freshly computed, unbroken chain.
void RewriteWithout(const std::string& data_dir, const std::string& scratch, int64_t victim) {
  const std::string db_path = DatabasePath(data_dir);
  auto original = Store::Open(db_path);
  REQUIRE(original.ok());
  auto clean = Store::Open(scratch);
  REQUIRE(clean.ok());
  sqlite3* db = Raw(db_path);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT seq, event_id, time_ms, actor_id FROM access_log ORDER BY seq", -1, &st, nullptr) == SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (sqlite3_column_int64(st, 0) == victim) continue;
    AccessEntry e = Entry("gemeente-a", 0);
    std::memcpy(e.event_id.data(), sqlite3_column_blob(st, 1), e.event_id.size());
    e.time_ms = sqlite3_column_int64(st, 2);
    e.actor_id = reinterpret_cast<const char*>(sqlite3_column_text(st, 3));
    REQUIRE((*clean)->AppendAccess(&e).ok());
  }
  sqlite3_finalize(st);
  clean->reset();
  Exec(db, "DROP TRIGGER access_log_no_update; DROP TRIGGER access_log_no_delete; DELETE FROM access_log;"
           "ATTACH '" + scratch + "' AS clean; INSERT INTO access_log SELECT * FROM clean.access_log; DETACH clean;");
  sqlite3_close(db);
}

}  // namespace

TEST_CASE("a log that matches its signed checkpoints verifies as intact") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  Log(*a, 4);
  SignNow(*a);
  Log(*a, 3);
  SignNow(*a);
  CheckpointAudit r = Audit(*a);
  CHECK(r.verdict == CheckpointAudit::Verdict::kIntact);
  CHECK(r.chain.entries == 7);
  CHECK(r.checkpoints == 2);
  CHECK(r.findings.empty());
}

TEST_CASE("issue 11: a log rewritten after a checkpoint (triggers dropped, an entry deleted, chain recomputed) fails audit verify naming the checkpoint") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  Log(*a, 10);
  SignNow(*a);
  a.reset();
  RewriteWithout(t.path + "/gemeente-a", t.path + "/scratch.db", 5);
  a = Must(Node::Open(t.path + "/gemeente-a", &FakeNow));
  auto chain = a->store().VerifyAccessLog();
  REQUIRE(chain.ok());
  CHECK(chain->first_broken_seq == 0);  // the unkeyed chain alone is fooled
  CHECK(chain->entries == 9);
  CheckpointAudit r = Audit(*a);
  CHECK(r.verdict == CheckpointAudit::Verdict::kBroken);
  CHECK(Findings(r).find("rewritten or truncated since checkpoint 10") != std::string::npos);

  SUBCASE("also with an entry appended to make up the count") {
    Log(*a, 1);
    CheckpointAudit again = Audit(*a);
    CHECK(again.verdict == CheckpointAudit::Verdict::kBroken);
    CHECK(Findings(again).find("since checkpoint 10") != std::string::npos);
    CHECK(Findings(again).find("entry 10 no longer has the hash it signed") != std::string::npos);
  }
}

TEST_CASE("issue 11: a log whose newest entries were cut off fails audit verify naming the checkpoint") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  Log(*a, 6);
  SignNow(*a);
  Log(*a, 4);
  SignNow(*a);
  sqlite3* db = Raw(DatabasePath(t.path + "/gemeente-a"));
  Exec(db, "DROP TRIGGER access_log_no_delete; DELETE FROM access_log WHERE seq > 7;");
  sqlite3_close(db);
  CheckpointAudit r = Audit(*a);
  CHECK(r.chain.first_broken_seq == 0);  // a cut tail leaves the chain intact
  CHECK(r.verdict == CheckpointAudit::Verdict::kBroken);
  CHECK(Findings(r).find("rewritten or truncated since checkpoint 10") != std::string::npos);
  CHECK(Findings(r).find("the chain now has 7") != std::string::npos);
  CHECK(Findings(r).find("checkpoint 6 ") == std::string::npos);  // the one still matching is not blamed
}

TEST_CASE("issue 11: with its own checkpoints deleted too, the copy a partner holds and exports still names the rewrite") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  auto b = MakeNode(t.path, "wijkteam-b");
  Befriend(*a, *b);
  Log(*a, 8);
  Checkpoint cp = SignNow(*a);
  REQUIRE(b->IngestCheckpoint("gemeente-a", EncodeCheckpoint(cp)).ok());
  auto held = b->store().HeldCheckpoints("gemeente-a");
  REQUIRE(held.ok());
  REQUIRE(held->size() == 1);
  const std::string exported = CheckpointToJson((*held)[0]);

  a.reset();
  RewriteWithout(t.path + "/gemeente-a", t.path + "/scratch.db", 3);
  sqlite3* db = Raw(DatabasePath(t.path + "/gemeente-a"));
  Exec(db, "DROP TRIGGER own_checkpoints_no_delete; DELETE FROM own_checkpoints;");
  sqlite3_close(db);
  a = Must(Node::Open(t.path + "/gemeente-a", &FakeNow));
  {
    CheckpointAudit synced = Audit(*a);  // the checkpoint as sent to partners is still in the synced set
    CHECK(synced.verdict == CheckpointAudit::Verdict::kBroken);
    CHECK(Findings(synced).find("this node, as sent to partners") != std::string::npos);
  }
  db = Raw(DatabasePath(t.path + "/gemeente-a"));
  Exec(db, "DELETE FROM audience WHERE id IN (SELECT id FROM records WHERE type = 8); DELETE FROM records WHERE type = 8;");
  sqlite3_close(db);
  CHECK(Audit(*a).verdict == CheckpointAudit::Verdict::kIntact);  // nothing left here to contradict it

  auto from_file = CheckpointFromJson(exported);
  REQUIRE(from_file.ok());
  CheckpointAudit r = Audit(*a, {{*from_file, "file b.json"}});
  CHECK(r.verdict == CheckpointAudit::Verdict::kBroken);
  CHECK(Findings(r).find("rewritten or truncated since checkpoint 8") != std::string::npos);
  CHECK(Findings(r).find("file b.json") != std::string::npos);
}

TEST_CASE("a node's own checkpoint handed back by a partner is kept and checked by audit verify") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  auto b = MakeNode(t.path, "wijkteam-b");
  Befriend(*a, *b);
  Log(*a, 5);
  Checkpoint cp = SignNow(*a);
  REQUIRE(a->IngestCheckpoint("wijkteam-b", EncodeCheckpoint(cp)).ok());
  sqlite3* db = Raw(DatabasePath(t.path + "/gemeente-a"));
  // Everything of it here gone: its own table and the synced set (which is
  // when reconciliation hands the partner's copy back).
  Exec(db, "DROP TRIGGER access_log_no_delete; DELETE FROM access_log WHERE seq = 5;"
           "DROP TRIGGER own_checkpoints_no_delete; DELETE FROM own_checkpoints;"
           "DELETE FROM audience WHERE id IN (SELECT id FROM records WHERE type = 8); DELETE FROM records WHERE type = 8;");
  sqlite3_close(db);
  CheckpointAudit r = Audit(*a);
  CHECK(r.verdict == CheckpointAudit::Verdict::kBroken);
  CHECK(Findings(r).find("held by wijkteam-b") != std::string::npos);
}

TEST_CASE("a partner keeps the latest checkpoint of each organisation and refuses one whose log went back without a declared restore") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  auto b = MakeNode(t.path, "wijkteam-b");
  Befriend(*a, *b);
  Log(*a, 3);
  Checkpoint first = SignNow(*a);
  Log(*a, 3);
  Checkpoint second = SignNow(*a);
  REQUIRE(b->IngestCheckpoint("gemeente-a", EncodeCheckpoint(second)).ok());
  CHECK(b->IngestCheckpoint("gemeente-a", EncodeCheckpoint(first)).ok());  // older: ignored
  auto held = b->store().HeldCheckpoints("gemeente-a");
  REQUIRE(held.ok());
  REQUIRE(held->size() == 1);
  CHECK((*held)[0].entries == 6);
  // The checkpoint record itself is what b syncs back to a, and to no one else.
  auto audience = b->store().AudienceOf(second.Id());
  REQUIRE(audience.ok());
  CHECK(*audience == std::vector<std::string>{"gemeente-a", "wijkteam-b"});

  SUBCASE("a shorter log signed later, same restore count") {
    sqlite3* db = Raw(DatabasePath(t.path + "/gemeente-a"));
    Exec(db, "DROP TRIGGER access_log_no_delete; DELETE FROM access_log WHERE seq > 4;");
    sqlite3_close(db);
    Advance(1000);
    Checkpoint rewound = SignNow(*a);
    Status st = b->IngestCheckpoint("gemeente-a", EncodeCheckpoint(rewound));
    CHECK(st.code() == Status::Code::kConflict);
    CHECK(st.message().find("went back from 6 to 4 entries") != std::string::npos);
    CHECK(std::string(RejectName(CheckpointRejectReason(st))) == "rewound_log");
    held = b->store().HeldCheckpoints("gemeente-a");
    CHECK((*held)[0].entries == 6);  // the evidence stays
  }
  SUBCASE("not signed by the org it names") {
    Checkpoint forged = second;
    forged.body.entries = 99;
    CHECK(b->IngestCheckpoint("gemeente-a", EncodeCheckpoint(forged)).code() == Status::Code::kCorruption);
  }
  SUBCASE("a third organisation's checkpoint relayed by a partner") {
    auto c = MakeNode(t.path, "zorg-c");
    Befriend(*b, *c);
    Log(*c, 1);
    Checkpoint theirs = SignNow(*c);
    CHECK(a->IngestCheckpoint("wijkteam-b", EncodeCheckpoint(theirs)).code() == Status::Code::kPermissionDenied);
  }
}

TEST_CASE("a running node signs a checkpoint every N entries, after the interval when the log grew, and at a clean stop") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  a->SetCheckpointPolicy({3, 60'000});
  auto count = [&] { return Must(a->store().OwnCheckpoints()).size(); };
  Advance(2000);
  REQUIRE(a->CheckpointIfDue(false).ok());
  CHECK(count() == 0);  // nothing logged yet
  Log(*a, 2);
  Advance(2000);
  REQUIRE(a->CheckpointIfDue(false).ok());
  CHECK(count() == 0);  // 2 < 3, and the interval has not passed
  Log(*a, 1);
  Advance(2000);
  REQUIRE(a->CheckpointIfDue(false).ok());
  CHECK(count() == 1);
  Log(*a, 1);
  Advance(61'000);
  REQUIRE(a->CheckpointIfDue(false).ok());
  CHECK(count() == 2);
  Advance(61'000);
  REQUIRE(a->CheckpointIfDue(false).ok());
  CHECK(count() == 2);  // the log did not grow
  Log(*a, 1);
  REQUIRE(a->CheckpointIfDue(true).ok());  // what Stop() does
  CHECK(count() == 3);
  CHECK(Must(a->store().OwnCheckpoints()).back().entries == 5);
}

TEST_CASE("issue 11: a backup is written mode 0600, never over an existing file") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  Log(*a, 3);
  const std::string file = t.path + "/a.backup";
  auto s = BackupNode(t.path + "/gemeente-a", file, "", static_cast<int64_t>(FakeNow()));
  REQUIRE(s.ok());
  struct stat sb {};
  REQUIRE(::stat(file.c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0600);
  CHECK(s->entries == 3);
  CHECK(Slurp(file).rfind("SQLite format 3", 0) == 0);
  CHECK(BackupNode(t.path + "/gemeente-a", file, "", 0).status().code() == Status::Code::kAlreadyExists);
}

TEST_CASE("issue 11: an encrypted backup holds no SQLite header and restores only with the right passphrase") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  REQUIRE(a->store().CreateCase(NewCaseId(), "huishouden-vermeulen-secret", 1).ok());
  Log(*a, 2);
  const std::string dir = t.path + "/gemeente-a";
  const std::string file = t.path + "/a.backup";
  REQUIRE(BackupNode(dir, file, "correct horse battery staple", static_cast<int64_t>(FakeNow())).ok());
  const std::string bytes = Slurp(file);
  CHECK(bytes.rfind("KRINGBAK", 0) == 0);
  CHECK(bytes.find("SQLite format 3") == std::string::npos);
  CHECK(bytes.find("huishouden-vermeulen-secret") == std::string::npos);
  struct stat sb {};
  REQUIRE(::stat(file.c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0600);
  a.reset();

  auto wrong = RestoreNode(file, dir, "wrong passphrase", 0);
  CHECK(wrong.status().code() == Status::Code::kUnauthenticated);
  CHECK(RestoreNode(file, dir, "", 0).status().code() == Status::Code::kInvalidArgument);
  SUBCASE("a truncated file is refused") {
    std::ofstream(t.path + "/cut.backup", std::ios::binary) << bytes.substr(0, bytes.size() - 100);
    CHECK(RestoreNode(t.path + "/cut.backup", dir, "correct horse battery staple", 0).status().code() ==
          Status::Code::kCorruption);
  }
  SUBCASE("the right passphrase restores it") {
    auto ok = RestoreNode(file, dir, "correct horse battery staple", static_cast<int64_t>(FakeNow()));
    REQUIRE(ok.ok());
    auto store = Store::Open(DatabasePath(dir));
    REQUIRE(store.ok());
    auto cases = (*store)->ListCases();
    REQUIRE(cases.ok());
    REQUIRE(cases->size() == 1);
    CHECK((*cases)[0].label == "huishouden-vermeulen-secret");
  }
}

TEST_CASE("issue 11: restore refuses while the node's database is open") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  const std::string dir = t.path + "/gemeente-a";
  REQUIRE(BackupNode(dir, t.path + "/a.backup", "", 0).ok());
  auto st = RestoreNode(t.path + "/a.backup", dir, "", 0);
  CHECK(st.status().code() == Status::Code::kConflict);
  CHECK(st.status().message().find("is the node running?") != std::string::npos);
  a.reset();
  CHECK(RestoreNode(t.path + "/a.backup", dir, "", 0).ok());
}

TEST_CASE("issue 11: a restored node revokes every token, records the restore, and audit verify reports the gap instead of intact") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  auto b = MakeNode(t.path, "wijkteam-b");
  Befriend(*a, *b);
  const std::string dir = t.path + "/gemeente-a";
  const Hash token = HashApiToken("token-of-the-demo-client");
  REQUIRE(a->store().AddToken("demo", token, 0).ok());
  Log(*a, 5);
  SignNow(*a);
  Advance(1000);
  const int64_t backup_time = static_cast<int64_t>(FakeNow());
  REQUIRE(BackupNode(dir, t.path + "/a.backup", "", backup_time).ok());
  Advance(60'000);
  REQUIRE(a->store().RevokeToken("demo", static_cast<int64_t>(FakeNow())).ok());  // revoked after the backup
  Log(*a, 5);
  Checkpoint latest = SignNow(*a);
  REQUIRE(b->IngestCheckpoint("gemeente-a", EncodeCheckpoint(latest)).ok());  // b holds checkpoint 10
  a.reset();

  Advance(60'000);
  auto restored = RestoreNode(t.path + "/a.backup", dir, "", static_cast<int64_t>(FakeNow()));
  REQUIRE(restored.ok());
  CHECK(restored->backup_time_ms == backup_time);
  CHECK(restored->backup_entries == 5);
  CHECK(restored->tokens_revoked == 1);
  a = Must(Node::Open(dir, &FakeNow));
  CHECK_FALSE(Must(a->store().ClientForToken(token)).has_value());  // the revocation did not come back to life

  // The restore is in the log itself, as a system entry after what was kept.
  auto head = a->store().AccessLogHead();
  REQUIRE(head.ok());
  CHECK(head->entries == 6);
  CheckpointAudit alone = Audit(*a);
  CHECK(alone.verdict == CheckpointAudit::Verdict::kGap);
  CHECK(Findings(alone).find("restored from a backup of " + FormatUtc(backup_time)) != std::string::npos);

  // b still holds checkpoint 10 (restores 0) and hands it back through sync.
  auto held = Must(b->store().HeldCheckpoints("gemeente-a"));
  auto copy = DecodeCheckpoint(held.at(0).record);
  REQUIRE(copy.ok());
  REQUIRE(a->IngestCheckpoint("wijkteam-b", EncodeCheckpoint(*copy)).ok());
  CheckpointAudit r = Audit(*a);
  CHECK(r.verdict == CheckpointAudit::Verdict::kGap);
  CHECK(Findings(r).find("entries after " + FormatUtc(backup_time) + " are missing; checkpoint 10") != std::string::npos);
  CHECK(Findings(r).find("is ahead of the restored chain (5 entries kept)") != std::string::npos);

  // The restored node's next checkpoint declares the restore: b accepts the shorter log, and says why.
  auto own = Must(a->store().OwnCheckpoints());
  auto after = DecodeCheckpoint(own.back().record);
  REQUIRE(after.ok());
  CHECK(after->body.restores == 1);
  CHECK(after->body.entries == 6);
  CHECK(b->IngestCheckpoint("gemeente-a", EncodeCheckpoint(*after)).ok());
  CHECK(Must(b->store().HeldCheckpoints("gemeente-a")).at(0).entries == 6);

  // Writing on after the restore keeps the report a gap, not a break.
  Log(*a, 2);
  SignNow(*a);
  CHECK(Audit(*a).verdict == CheckpointAudit::Verdict::kGap);
}

TEST_CASE("issue 11: a restore keeps the checkpoints the replaced database signed, and a second restore from the same backup counts again") {
  TempDir t;
  auto a = MakeNode(t.path, "gemeente-a");
  const std::string dir = t.path + "/gemeente-a";
  Log(*a, 4);
  SignNow(*a);
  const int64_t backup_time = static_cast<int64_t>(FakeNow());
  REQUIRE(BackupNode(dir, t.path + "/a.backup", "", backup_time).ok());
  Advance(1000);
  Log(*a, 6);
  SignNow(*a);  // checkpoint 10: only in the database the restore replaces
  a.reset();

  auto first = RestoreNode(t.path + "/a.backup", dir, "", static_cast<int64_t>(FakeNow()));
  REQUIRE(first.ok());
  CHECK(first->checkpoints_carried == 1);
  CHECK(first->restores == 1);
  a = Must(Node::Open(dir, &FakeNow));
  CheckpointAudit r = Audit(*a);  // no partner needed
  CHECK(r.verdict == CheckpointAudit::Verdict::kGap);
  CHECK(Findings(r).find("checkpoint 10 (signed " + FormatUtc(backup_time + 1000) + ", this node) is ahead of the restored chain (4 entries kept)") !=
        std::string::npos);
  Advance(1000);
  Log(*a, 3);
  SignNow(*a);  // restores 1, entries 8
  a.reset();

  Advance(1000);
  auto second = RestoreNode(t.path + "/a.backup", dir, "", static_cast<int64_t>(FakeNow()));
  REQUIRE(second.ok());
  CHECK(second->restores == 2);  // the backup knew of none; the replaced database of one
  a = Must(Node::Open(dir, &FakeNow));
  CheckpointAudit again = Audit(*a);
  CHECK(again.verdict == CheckpointAudit::Verdict::kGap);
  CHECK(Findings(again).find("checkpoint 8 ") != std::string::npos);   // of the first restore's epoch, lost now
  CHECK(Findings(again).find("checkpoint 10 ") != std::string::npos);
  CHECK(Must(a->store().OwnCheckpoints()).back().restores == 2);
}
