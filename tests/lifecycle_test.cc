// Issue 16 with nodes in-process on a fake clock: closing, the retention sweep on author and copy holders, access-log expiry, legal holds, export, and what the sweep leaves on disk.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <sqlite3.h>

#include "node/checkpoint.h"
#include "node/node.h"
#include "node/retention.h"
#include "plan/fhir.h"
#include "protocol/period.h"

using namespace kring;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    std::string t = "/tmp/kring-lifecycle-test-XXXXXX";
    REQUIRE(mkdtemp(t.data()) != nullptr);
    path = t;
  }
  ~TempDir() {
    if (!std::getenv("KRING_KEEP_TEST_DIRS")) std::system(("rm -rf " + path).c_str());
  }
};

template <class T>
T Must(Result<T> r) {
  INFO(r.status().ToString());
  REQUIRE(r.ok());
  return std::move(r).value();
}

// 2027-01-15T08:00:00Z
constexpr int64_t kStart = 1'800'000'000'000;
constexpr int64_t kDay = 86'400'000;
std::atomic<int64_t> g_now{kStart};
uint64_t FakeNow() { return static_cast<uint64_t>(g_now.load()); }
void SetNow(int64_t ms) { g_now = ms; }

Period P(const char* text) { return Must(ParsePeriod(text)); }

struct Org {
  std::string dir;
  std::unique_ptr<Node> node;
  Node* operator->() { return node.get(); }
};

Org MakeNode(const std::string& root, const std::string& org, const char* default_period) {
  Org o;
  o.dir = root + "/" + org;
  REQUIRE(InitNode(o.dir, org, org).ok());
  o.node = Must(Node::Open(o.dir, &FakeNow));
  RetentionRules rules;
  rules.fallback.period = P(default_period);
  REQUIRE(SaveRetention(o.node->store(), rules).ok());
  return o;
}

void Befriend(Node& a, Node& b) {
  REQUIRE(a.store().AddPartner(Partner{b.identity(), "tcp://127.0.0.1:1", 0}).ok());
  REQUIRE(b.store().AddPartner(Partner{a.identity(), "tcp://127.0.0.1:1", 0}).ok());
}

// What `from` may send `to`, pushed through `to`'s RecordSink as the sync
// engine does it; the refusals' reasons are collected.
size_t Push(Node& from, Node& to, std::vector<std::string>* refusals = nullptr) {
  auto keys = Must(from.store().ItemsFor(to.identity().org, from.identity().org));
  std::vector<RecordId> ids;
  for (const ItemKey& k : keys) ids.push_back(k.id);
  if (ids.empty()) return 0;
  auto records = Must(from.store().RecordsForPeer(ids, to.identity().org, 64 << 20, nullptr, from.identity().org));
  auto reject = [&](const std::string& reason, const std::string&) {
    if (refusals) refusals->push_back(reason);
  };
  auto batch = to.Prepare(from.identity().org, std::move(records), reject);
  return to.Commit(std::move(batch), reject);
}

// Every pair, both ways, until nothing new arrives.
void SyncAll(std::vector<Node*> nodes) {
  for (int round = 0; round < 6; ++round) {
    size_t added = 0;
    for (Node* a : nodes)
      for (Node* b : nodes)
        if (a != b) added += Push(*a, *b);
    if (added == 0) return;
  }
}

ConsentInput Consent(const std::string& grantee, const std::string& basis) {
  ConsentInput c;
  c.grantee = grantee;
  c.domains = {"*"};
  c.purpose = "ondersteuning van het huishouden";
  c.basis = basis;
  c.given_by = "burger";
  c.evidence_reference = "formulier-16";
  return c;
}

ItemWritten Note(Node& n, const CaseId& c, const std::string& text) {
  ItemInput in;
  in.kind = "note";
  in.domain = "finances";
  in.data = {{"text", text}};
  return Must(n.WriteItem(c, in));
}

size_t RecordsOf(Node& n, const CaseId& c) { return Must(n.store().RecordsOfCase(c)).size(); }
size_t FragmentsOf(Node& n, const CaseId& c) { return Must(n.store().RecordsOfCase(c, RecordType::kFragment)).size(); }
// Decision and fragment records, without access-log copies (they follow their own period).
size_t CaseRecordsOf(Node& n, const CaseId& c) {
  size_t k = 0;
  for (const StoredRecord& r : Must(n.store().RecordsOfCase(c)))
    if (r.type != RecordType::kAccessRecord) ++k;
  return k;
}

// Three organisations: gemeente (regie, Wmo 15 years), wijkteam (15 years)
// and zorg (5 years), each with consent for the whole plan and a note in it.
struct Network {
  TempDir t;
  Org gemeente, wijkteam, zorg;
  CaseId case_id{};
  Network() {
    SetNow(kStart);
    gemeente = MakeNode(t.path, "gemeente", "P15Y");
    wijkteam = MakeNode(t.path, "wijkteam", "P15Y");
    zorg = MakeNode(t.path, "zorg", "P5Y");
    Befriend(*gemeente.node, *wijkteam.node);
    Befriend(*gemeente.node, *zorg.node);
    Befriend(*wijkteam.node, *zorg.node);
    case_id = Must(gemeente->CreateCase("huishouden 16"));
    Must(gemeente->RecordConsent(case_id, Consent("wijkteam", "Wmo 2015 art. 2.3.2")));
    Must(gemeente->RecordConsent(case_id, Consent("zorg", "Zvw")));
    Sync();
    Note(*gemeente.node, case_id, "notitie van de gemeente");
    Note(*wijkteam.node, case_id, "notitie van het wijkteam");
    Note(*zorg.node, case_id, "notitie van de zorg");
    Sync();
    REQUIRE(FragmentsOf(*gemeente.node, case_id) == 3);
    REQUIRE(FragmentsOf(*wijkteam.node, case_id) == 3);
    REQUIRE(FragmentsOf(*zorg.node, case_id) == 3);
  }
  void Sync() { SyncAll({gemeente.node.get(), wijkteam.node.get(), zorg.node.get()}); }
  void SweepAll() {
    for (Org* o : {&gemeente, &wijkteam, &zorg}) Must((*o)->SweepRetention());
  }
  int64_t Close(const std::string& reason = "goals-reached") {
    Must(gemeente->CloseCase(case_id, reason, "Wmo 2015 art. 2.3.5"));
    Sync();
    auto closure = Must(wijkteam->State(case_id)).Closure();
    REQUIRE(closure);
    return closure->time_ms;
  }
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("issue 16: a closed case refuses new items, consent and regie changes with Conflict, while reads go on") {
  Network n;
  n.Close("goals-reached");
  for (Org* o : {&n.gemeente, &n.wijkteam, &n.zorg}) {
    ItemInput in{"note", "finances", {{"text", "te laat"}}, {}};
    auto w = (*o)->WriteItem(n.case_id, in);
    CHECK(w.status().code() == Status::Code::kConflict);
    CHECK(w.status().message().find("closed") != std::string::npos);
    auto plan = Must((*o)->ReadPlan(n.case_id));
    CHECK(plan.plan["items"].size() == 3);
    CHECK(plan.plan["status"] == "completed");
    CHECK(plan.plan["closed"]["reason"] == "goals-reached");
    CHECK(plan.plan["closed"]["retention"]["period"] == "P15Y");
    CHECK(ToFhirCarePlan(n.case_id, plan.plan)["status"] == "completed");
  }
  CHECK(n.gemeente->RecordConsent(n.case_id, Consent("wijkteam", "Wmo 2015")).status().code() == Status::Code::kConflict);
  ItemInput regie{"regisseur", "", {{"org", "wijkteam"}, {"person", "A. Jansen"}}, {}};
  CHECK(n.gemeente->WriteItem(n.case_id, regie).status().code() == Status::Code::kConflict);
  CHECK(n.wijkteam->CloseCase(n.case_id, "moved", "").status().code() == Status::Code::kPermissionDenied);
  CHECK(n.gemeente->CloseCase(n.case_id, "moved", "").status().code() == Status::Code::kConflict);
  CHECK(n.gemeente->CloseCase(n.case_id, "klaar", "").status().code() == Status::Code::kInvalidArgument);

  SUBCASE("a reopen by the regie organisation makes it writable again, on every node") {
    Must(n.gemeente->ReopenCase(n.case_id, "nieuwe hulpvraag"));
    n.Sync();
    CHECK(Must(n.zorg->ReadPlan(n.case_id)).plan["status"] == "active");
    Note(*n.zorg.node, n.case_id, "weer open");
    n.Sync();
    CHECK(FragmentsOf(*n.gemeente.node, n.case_id) == 4);
    CHECK(n.gemeente->ReopenCase(n.case_id, "").status().code() == Status::Code::kConflict);
  }
  SUBCASE("other reasons than goals-reached show as revoked") {
    Must(n.gemeente->ReopenCase(n.case_id, ""));
    Must(n.gemeente->CloseCase(n.case_id, "declined", ""));
    auto plan = Must(n.gemeente->ReadPlan(n.case_id));
    CHECK(plan.plan["status"] == "revoked");
    CHECK(ToFhirCarePlan(n.case_id, plan.plan)["status"] == "revoked");
  }
}

TEST_CASE("issue 16: a case closed under Wmo rules is swept after 15 years on the author's node and the copy holders, "
          "not a day earlier; a copy holder with a 5-year rule sweeps at 5 years") {
  Network n;
  const int64_t closed = n.Close();
  const int64_t y5 = AddPeriod(closed, P("P5Y")), y15 = AddPeriod(closed, P("P15Y"));

  SetNow(y5 - kDay);
  n.SweepAll();
  CHECK(FragmentsOf(*n.zorg.node, n.case_id) == 3);

  SetNow(y5);
  auto report = Must(n.zorg->SweepRetention());
  CHECK(report.cases_destroyed == 1);
  CHECK(report.fragments_destroyed == 3);
  CHECK(CaseRecordsOf(*n.zorg.node, n.case_id) == 0);
  CHECK(n.zorg->ReadPlan(n.case_id).status().code() == Status::Code::kNotFound);
  CHECK_FALSE(Must(n.zorg->store().CaseKnown(n.case_id)));
  // The others hold on, and a partner's copies are not taken in again.
  Must(n.gemeente->SweepRetention());
  Must(n.wijkteam->SweepRetention());
  CHECK(FragmentsOf(*n.gemeente.node, n.case_id) == 3);
  CHECK(FragmentsOf(*n.wijkteam.node, n.case_id) == 3);
  std::vector<std::string> refusals;
  Push(*n.gemeente.node, *n.zorg.node, &refusals);
  CHECK(std::count(refusals.begin(), refusals.end(), "destroyed") > 0);
  CHECK(CaseRecordsOf(*n.zorg.node, n.case_id) == 0);

  SetNow(y15 - kDay);
  n.SweepAll();
  CHECK(FragmentsOf(*n.gemeente.node, n.case_id) == 3);
  CHECK(FragmentsOf(*n.wijkteam.node, n.case_id) == 3);

  SetNow(y15);
  n.SweepAll();
  for (Org* o : {&n.gemeente, &n.wijkteam}) {
    CHECK(CaseRecordsOf(*o->node, n.case_id) == 0);
    CHECK((*o)->ReadPlan(n.case_id).status().code() == Status::Code::kNotFound);
    CHECK(Must((*o)->store().ListCases()).empty());
  }
}

TEST_CASE("issue 16: a copy holder with a longer rule drops the author's fragments when the author's rule ends and keeps its own") {
  Network n;
  RetentionRules longer;
  longer.rules = {{"Wmo 2015", P("P20Y"), false}};  // wijkteam's consent basis names Wmo 2015
  REQUIRE(SaveRetention(n.wijkteam->store(), longer).ok());
  const int64_t closed = n.Close();
  SetNow(AddPeriod(closed, P("P15Y")));
  Must(n.wijkteam->SweepRetention());
  // gemeente's note goes with gemeente's 15 years; zorg's (whose rule did
  // not travel) and wijkteam's own stay for wijkteam's 20.
  CHECK(FragmentsOf(*n.wijkteam.node, n.case_id) == 2);
  auto plan = Must(n.wijkteam->ReadPlan(n.case_id));
  CHECK(plan.plan["items"].size() == 2);
  SetNow(AddPeriod(closed, P("P20Y")));
  Must(n.wijkteam->SweepRetention());
  CHECK(CaseRecordsOf(*n.wijkteam.node, n.case_id) == 0);
}

TEST_CASE("issue 16: a legal hold stops the sweep of that case until it is lifted") {
  Network n;
  const int64_t closed = n.Close();
  REQUIRE(n.gemeente->PutHold(n.case_id, "bezwaarprocedure 2041-17").ok());
  CHECK(n.gemeente->PutHold(n.case_id, "nog een keer").code() == Status::Code::kAlreadyExists);
  SetNow(AddPeriod(closed, P("P16Y")));
  auto report = Must(n.gemeente->SweepRetention());
  CHECK(report.cases_held == 1);
  CHECK(report.records_destroyed == 0);
  CHECK(FragmentsOf(*n.gemeente.node, n.case_id) == 3);
  // Only its own node: the wijkteam's sweep is not held.
  Must(n.wijkteam->SweepRetention());
  CHECK(FragmentsOf(*n.wijkteam.node, n.case_id) == 0);

  REQUIRE(n.gemeente->LiftHold(n.case_id).ok());
  CHECK(n.gemeente->LiftHold(n.case_id).code() == Status::Code::kNotFound);
  Must(n.gemeente->SweepRetention());
  CHECK(CaseRecordsOf(*n.gemeente.node, n.case_id) == 0);
}

TEST_CASE("issue 16: an open case is never swept, however old") {
  Network n;
  SetNow(kStart + 40 * 366 * kDay);
  n.SweepAll();
  CHECK(FragmentsOf(*n.gemeente.node, n.case_id) == 3);
  CHECK(FragmentsOf(*n.zorg.node, n.case_id) == 3);
}

TEST_CASE("issue 16: an access-log entry lives its own 5 years, and audit verify still holds after the oldest go") {
  TempDir t;
  SetNow(kStart);
  Org a = MakeNode(t.path, "gemeente", "P15Y");
  auto log = [&](int i) {
    AccessEntry e;
    RandomBytes(e.event_id);
    e.time_ms = g_now.load();
    e.action = "read";
    e.outcome = "success";
    e.actor_id = "medewerker-" + std::to_string(i);
    e.actor_name = "Medewerker";
    e.actor_role = "casemanager";
    e.organisation = "gemeente";
    e.client_system = "demo";
    REQUIRE(a->AppendAccess(&e).ok());
  };
  for (int i = 0; i < 4; ++i) log(i);
  REQUIRE(a->CheckpointIfDue(true).ok());
  SetNow(kStart + 400 * kDay);
  for (int i = 4; i < 7; ++i) log(i);
  REQUIRE(a->CheckpointIfDue(true).ok());

  SetNow(AddPeriod(kStart, P("P5Y")) - 1);
  CHECK(Must(a->SweepRetention()).access_entries_expired == 0);
  SetNow(AddPeriod(kStart, P("P5Y")));
  auto report = Must(a->SweepRetention());
  CHECK(report.access_entries_expired == 4);
  auto anchor = Must(a->store().AccessLogAnchor());
  CHECK(anchor.upto_seq == 4);
  // The cut is itself an entry, and the chain verifies from the anchor on.
  auto chain = Must(a->store().VerifyAccessLog());
  CHECK(chain.first_broken_seq == 0);
  CHECK(chain.entries == 8);
  CHECK(chain.expired == 4);
  auto audit = Must(AuditAccessLog(a->store(), a->identity(), {}));
  CHECK(audit.verdict == CheckpointAudit::Verdict::kIntact);
  log(8);
  REQUIRE(a->CheckpointIfDue(true).ok());
  CHECK(Must(AuditAccessLog(a->store(), a->identity(), {})).verdict == CheckpointAudit::Verdict::kIntact);

  // A deletion past the anchor is still refused by the database itself.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(DatabasePath(a.dir).c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  CHECK(sqlite3_exec(db, "DELETE FROM access_log WHERE seq = 6", nullptr, nullptr, nullptr) != SQLITE_OK);
  sqlite3_close(db);

  SUBCASE("every entry expired: the chain goes on from the anchor") {
    SetNow(AddPeriod(kStart + 500 * kDay, P("P6Y")));
    Must(a->SweepRetention());
    auto head = Must(a->store().AccessLogHead());
    CHECK(head.entries >= 9);
    log(10);
    CHECK(Must(a->store().VerifyAccessLog()).first_broken_seq == 0);
    CHECK(Must(AuditAccessLog(a->store(), a->identity(), {})).verdict == CheckpointAudit::Verdict::kIntact);
  }
}

TEST_CASE("issue 16: the export holds the plan, the consents and the access log this organisation may read") {
  Network n;
  n.Close();
  auto doc = Must(n.wijkteam->ExportCase(n.case_id));
  CHECK(doc["format"] == "kring-export/1");
  CHECK(doc["organisation"] == "wijkteam");
  CHECK(doc["plan"]["items"].size() == 3);
  CHECK(doc["consents"].size() == 2);
  CHECK(doc["closed"]["reason"] == "goals-reached");
  CHECK(doc["access_log"].is_array());
  CHECK(doc.dump().find("notitie van de zorg") != std::string::npos);
  CHECK(n.wijkteam->ExportCase(CaseId{}).status().code() == Status::Code::kNotFound);
}

TEST_CASE("issue 16: after a sweep neither the database, its WAL nor its free pages hold the plaintext or ciphertext of what was destroyed") {
  Network n;
  const std::string secret = "GEHEIM-schuld-bij-de-woningcorporatie-16";
  ItemWritten w = Note(*n.gemeente.node, n.case_id, secret);
  n.Sync();
  auto stored = Must(n.zorg->store().GetRecord(w.version));
  REQUIRE(stored.has_value());
  // 48 bytes from the middle of the record: its ciphertext.
  REQUIRE(stored->record.size() > 200);
  const std::string cipher(stored->record.end() - 120, stored->record.end() - 72);
  auto files = [&](Org& o) {
    return Slurp(DatabasePath(o.dir)) + Slurp(DatabasePath(o.dir) + "-wal") + Slurp(DatabasePath(o.dir) + "-journal");
  };
  for (Org* o : {&n.gemeente, &n.zorg}) {
    REQUIRE(files(*o).find(cipher) != std::string::npos);  // the scan can see it while it is there
    CHECK(files(*o).find(secret) == std::string::npos);    // never in plaintext
  }
  const int64_t closed = n.Close();
  SetNow(AddPeriod(closed, P("P15Y")));
  n.SweepAll();
  for (Org* o : {&n.gemeente, &n.wijkteam, &n.zorg}) {
    CHECK(CaseRecordsOf(*o->node, n.case_id) == 0);
    const std::string all = files(*o);
    CHECK(all.find(cipher) == std::string::npos);
    CHECK(all.find(secret) == std::string::npos);
    CHECK(all.find("huishouden 16") == std::string::npos);  // the case label went too
  }
}

TEST_CASE("issue 16: an erasure request erases on every node except what a legal duty keeps, and the answers reach the regie organisation") {
  Network n;
  RetentionRules zorg_rules;
  zorg_rules.fallback.period = P("P5Y");
  zorg_rules.rules = {{"Zvw", P("P15Y"), true}};  // zorg's consent names its basis, Zvw: a legal duty to keep its file
  REQUIRE(SaveRetention(n.zorg->store(), zorg_rules).ok());
  CHECK(n.gemeente->RequestErasure(n.case_id, "brief van de burger").status().code() == Status::Code::kConflict);  // open
  n.Close("withdrawn-request");
  CHECK(n.wijkteam->RequestErasure(n.case_id, "brief van de burger").status().code() == Status::Code::kPermissionDenied);
  CHECK(n.gemeente->RequestErasure(n.case_id, "").status().code() == Status::Code::kInvalidArgument);
  RecordId request = Must(n.gemeente->RequestErasure(n.case_id, "brief van de burger van 3 maart"));
  CHECK(FragmentsOf(*n.gemeente.node, n.case_id) == 0);  // the regie organisation's own node at once
  n.Sync();
  CHECK(FragmentsOf(*n.wijkteam.node, n.case_id) == 0);
  CHECK(FragmentsOf(*n.zorg.node, n.case_id) == 1);  // its own note, kept by law
  auto zorg_plan = Must(n.zorg->ReadPlan(n.case_id));
  REQUIRE(zorg_plan.plan["items"].size() == 1);
  CHECK(zorg_plan.plan["items"][0]["data"]["text"] == "notitie van de zorg");
  // The kept note is offered to the gemeente again, which erased it: refused.
  CHECK(FragmentsOf(*n.gemeente.node, n.case_id) == 0);
  auto cases = Must(n.gemeente->store().ListCases());
  REQUIRE(cases.size() == 1);
  CHECK(cases[0].label.empty());

  auto status = Must(n.gemeente->ErasureStatus(n.case_id));
  REQUIRE(status["requests"].size() == 1);
  const auto& r = status["requests"][0];
  CHECK(r["request"] == ToHex(request));
  CHECK_FALSE(r.contains("waiting_for"));
  REQUIRE(r["answers"].size() == 3);
  for (const auto& a : r["answers"]) {
    INFO(a.dump());
    if (a["organisation"] == "zorg") {
      CHECK(a["kept"] == 1);
      CHECK(a["erased"] == 2);
      CHECK(a["rule"] == "Zvw");
    } else {
      CHECK(a["kept"] == 0);
      CHECK(a["erased"] == 3);
      CHECK(a["rule"] == "");
    }
  }
  // A partner sees its own answer only.
  auto own = Must(n.wijkteam->ErasureStatus(n.case_id));
  REQUIRE(own["requests"][0]["answers"].size() == 1);
  CHECK(own["requests"][0]["answers"][0]["organisation"] == "wijkteam");

  // What was kept goes with the sweep when the duty ends; the answers stay as long as the case.
  const int64_t closed = Must(n.zorg->State(n.case_id)).Closure()->time_ms;
  SetNow(AddPeriod(closed, P("P15Y")));
  n.SweepAll();
  CHECK(CaseRecordsOf(*n.zorg.node, n.case_id) == 0);
}
