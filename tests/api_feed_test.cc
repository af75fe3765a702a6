// Issue 14, real nodes: the change feed, retried writes (Idempotency-Key), If-Match, lookups, paging, 400 and 405.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include <httplib.h>
#include <sqlite3.h>

#include "examples/cluster.h"
#include "tests/cluster_steps.h"

using kring::CommandResult;
using kring::LocalCluster;
using nlohmann::json;
using namespace kring::steps;

namespace {

// An answer with its headers (LocalCluster's HttpReply has none).
struct Answer {
  int status = 0;
  json body;
  std::string raw;
  httplib::Headers headers;
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

std::map<std::string, std::string> Professional(const LocalCluster& c, const std::string& org,
                                                const std::string& token = "") {
  return {{"Authorization", "Bearer " + (token.empty() ? const_cast<LocalCluster&>(c).node(org).token : token)},
          {"X-Kring-Actor", "m.devries"},
          {"X-Kring-Actor-Name", "Marieke de Vries"},
          {"X-Kring-Role", "regisseur"}};
}

Answer Send(LocalCluster& c, const std::string& org, const std::string& method, const std::string& target,
            const std::optional<json>& body = std::nullopt, std::map<std::string, std::string> headers = {},
            const std::string& token = "", int read_timeout_s = 10) {
  std::map<std::string, std::string> h = Professional(c, org, token);
  for (auto& [k, v] : headers) h[k] = v;
  httplib::Client cli("127.0.0.1", c.node(org).api_port);
  cli.set_read_timeout(read_timeout_s, 0);
  httplib::Headers hh(h.begin(), h.end());
  const std::string text = body ? body->dump() : "";
  httplib::Result res = method == "GET"      ? cli.Get(target, hh)
                        : method == "POST"   ? cli.Post(target, hh, text, "application/json")
                        : method == "PUT"    ? cli.Put(target, hh, text, "application/json")
                        : method == "DELETE" ? cli.Delete(target, hh)
                                             : cli.Patch(target, hh, text, "application/json");
  Answer a;
  if (!res) return a;
  a.status = res->status;
  a.raw = res->body;
  a.headers = res->headers;
  a.body = json::parse(res->body, nullptr, false);
  return a;
}

json Goal(const std::string& text, const std::string& status = "active") {
  return {{"kind", "goal"}, {"domain", "finances"}, {"data", {{"description", text}, {"status", status}}}};
}

// Every change the feed gives from `since` on, following its cursors; `cursor` receives the last.
std::vector<json> FeedFrom(LocalCluster& c, const std::string& org, std::string since, std::string* cursor = nullptr) {
  std::vector<json> out;
  for (int pages = 0; pages < 100; ++pages) {
    Answer a = Send(c, org, "GET", "/v1/changes?limit=3" + (since.empty() ? "" : "&since=" + since));
    REQUIRE(a.status == 200);
    for (const json& e : a.body["changes"]) out.push_back(e);
    since = a.body["cursor"].get<std::string>();
    if (a.body["changes"].empty()) break;
  }
  if (cursor) *cursor = since;
  return out;
}

bool HasChange(const std::vector<json>& feed, const std::string& kind, const std::string& key, const std::string& value) {
  for (const json& e : feed)
    if (e.value("change", "") == kind && e.value(key, "") == value) return true;
  return false;
}

// Rows of the node's database for `sql` (one text column), read while it runs (WAL).
std::vector<std::string> Query(LocalCluster& c, const std::string& org, const std::string& sql) {
  sqlite3* db = nullptr;
  std::vector<std::string> out;
  REQUIRE(sqlite3_open_v2((c.node(org).data_dir + "/kring.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(st, 0);
    out.push_back(t ? reinterpret_cast<const char*>(t) : "");
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("a waiting change-feed call wakes within 100 ms of a change, and its cursors survive a restart") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  const std::string case_id = CreateCase(c, "gemeente");
  REQUIRE(!case_id.empty());
  std::string cursor;
  std::vector<json> before = FeedFrom(c, "gemeente", "", &cursor);
  REQUIRE(before.size() == 1);
  CHECK(before[0]["change"] == "case-opened");
  CHECK(before[0]["case"] == case_id);

  using Clock = std::chrono::steady_clock;
  std::atomic<bool> answered{false};
  Clock::time_point answered_at;
  Answer polled;
  std::thread poll([&] {
    polled = Send(c, "gemeente", "GET", "/v1/changes?wait=30&since=" + cursor, std::nullopt, {}, "", 40);
    answered_at = Clock::now();
    answered = true;
  });
  // The call waits: nothing has changed, so it has not answered a second later.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  CHECK_FALSE(answered.load());
  Answer written = Send(c, "gemeente", "POST", "/v1/cases/" + case_id + "/items", Goal("Overzicht van alle schulden"));
  const Clock::time_point written_at = Clock::now();
  poll.join();
  REQUIRE(written.status == 201);
  REQUIRE(polled.status == 200);
  // The item is committed before the write's 201 leaves; both answers write
  // one access-log entry after it. The waiting call is woken by the commit, not by a timer.
  auto late = std::chrono::duration_cast<std::chrono::milliseconds>(answered_at - written_at).count();
  CHECK_MESSAGE(late < 100, "the waiting call answered " << late << " ms after the write's 201");
  REQUIRE(polled.body["changes"].size() == 1);
  const json& e = polled.body["changes"][0];
  CHECK(e["change"] == "item-stored");
  CHECK(e["item"] == written.body["item"]);
  CHECK(e["version"] == written.body["version"]);
  CHECK(e["item_kind"] == "goal");
  CHECK(polled.raw.find("schulden") == std::string::npos);  // ids, kinds and times: never content

  // A wait with nothing new answers empty at its deadline, with the same cursor.
  const std::string after_item = polled.body["cursor"];
  Answer idle = Send(c, "gemeente", "GET", "/v1/changes?wait=1&since=" + after_item);
  CHECK(idle.status == 200);
  CHECK(idle.body["changes"].empty());
  CHECK(idle.body["cursor"] == after_item);

  REQUIRE(c.Stop("gemeente") == 0);
  REQUIRE(c.Start("gemeente"));
  // After the restart, the old cursors continue where they did.
  std::vector<json> again = FeedFrom(c, "gemeente", cursor);
  REQUIRE(again.size() == 1);
  CHECK(again[0] == e);
  CHECK(FeedFrom(c, "gemeente", after_item).empty());
  Answer note = Send(c, "gemeente", "POST", "/v1/cases/" + case_id + "/items",
                     json{{"kind", "note"}, {"data", {{"text", "Bellen op dinsdag"}}}});
  REQUIRE(note.status == 201);
  std::vector<json> next = FeedFrom(c, "gemeente", after_item);
  REQUIRE(next.size() == 1);
  CHECK(next[0]["version"] == note.body["version"]);
  CHECK(Send(c, "gemeente", "GET", "/v1/changes?since=not-a-cursor").status == 400);
  CHECK(Send(c, "gemeente", "GET", "/v1/changes?wait=61").status == 400);

  // A node asked to stop does not wait for a waiting call's minute to end.
  std::thread waiting([&] { Send(c, "gemeente", "GET", "/v1/changes?wait=60&since=" + next.back()["cursor"].get<std::string>(),
                                 std::nullopt, {}, "", 70); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const auto stopping = Clock::now();
  CHECK(c.Stop("gemeente") == 0);
  CHECK(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - stopping).count() < 20);
  waiting.join();

  // Every read of the feed is one system access of the client system, never a professional's.
  std::vector<std::string> roles =
      Query(c, "gemeente", "SELECT actor_role || '|' || actor_id FROM access_log WHERE items = '[\"changes\"]'");
  CHECK(roles.size() >= 8);
  for (const std::string& r : roles) CHECK(r == "system|demo");
}

TEST_CASE("at most two change-feed calls wait at once; a third answers at once, so waiting calls never take every worker") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  REQUIRE(!CreateCase(c, "gemeente").empty());
  std::string cursor;
  FeedFrom(c, "gemeente", "", &cursor);
  using Clock = std::chrono::steady_clock;
  std::vector<std::thread> waiting;
  std::atomic<int> done{0};
  for (int i = 0; i < 2; ++i)
    waiting.emplace_back([&] {
      Send(c, "gemeente", "GET", "/v1/changes?wait=8&since=" + cursor, std::nullopt, {}, "", 20);
      ++done;
    });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const auto asked = Clock::now();
  Answer third = Send(c, "gemeente", "GET", "/v1/changes?wait=8&since=" + cursor);
  CHECK(third.status == 200);
  CHECK(third.body["changes"].empty());
  CHECK(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - asked).count() < 5);  // not its 8 s
  CHECK(done.load() == 0);  // the first two still wait
  CHECK(Send(c, "gemeente", "GET", "/v1/cases").status == 200);  // and other calls are served meanwhile
  for (std::thread& t : waiting) t.join();
  CHECK(done.load() == 2);
}

TEST_CASE("the change feed shows an organisation only what consent lets it read, and a withdrawal appears in it") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  c.AddNode("wijkteam", "Wijkteam");
  REQUIRE(c.Connect("gemeente", "wijkteam"));
  REQUIRE(c.Start("gemeente"));
  REQUIRE(c.Start("wijkteam"));
  const std::string case_id = CreateCase(c, "gemeente");
  const std::string other_case = CreateCase(c, "gemeente", "zonder toestemming");
  const std::string consent = Grant(c, "gemeente", case_id, "wijkteam", {"finances"});
  REQUIRE(!consent.empty());
  kring::HttpReply finances = Note(c, "gemeente", case_id, "finances", "Inkomsten en uitgaven op een rij");
  kring::HttpReply housing = Note(c, "gemeente", case_id, "housing", "Huurachterstand van drie maanden");
  kring::HttpReply elsewhere = Note(c, "gemeente", other_case, "finances", "Ander huishouden");
  REQUIRE(finances.status == 201);
  REQUIRE(housing.status == 201);
  REQUIRE(elsewhere.status == 201);
  const std::string fin_version = finances.body["version"];
  REQUIRE(LocalCluster::WaitFor([&] { return PlanItems(c, "wijkteam", case_id) == 1; }, 10000));

  std::string cursor;
  std::vector<json> seen = FeedFrom(c, "wijkteam", "", &cursor);
  CHECK(HasChange(seen, "consent-given", "consent", consent));
  CHECK(HasChange(seen, "item-stored", "version", fin_version));
  std::string all = json(seen).dump();
  for (const std::string& hidden : {housing.body["item"].get<std::string>(), elsewhere.body["item"].get<std::string>(), other_case})
    CHECK_MESSAGE(all.find(hidden) == std::string::npos, hidden << " appears in the partner's feed");
  CHECK(all.find("Inkomsten") == std::string::npos);

  // The regie organisation's node sees all of it.
  std::vector<json> regie = FeedFrom(c, "gemeente", "");
  CHECK(HasChange(regie, "item-stored", "version", housing.body["version"].get<std::string>()));
  CHECK(HasChange(regie, "case-opened", "case", other_case));

  REQUIRE(Withdraw(c, "gemeente", case_id, consent).status == 200);
  std::vector<json> after;
  REQUIRE(LocalCluster::WaitFor([&] {
    after = FeedFrom(c, "wijkteam", cursor);
    return HasChange(after, "consent-withdrawn", "consent", consent) && HasChange(after, "purge", "case", case_id);
  }, 10000));
  for (const json& e : after)
    if (e["change"] == "purge") CHECK(e["versions"] == json::array({fin_version}));
  // What it may no longer read is gone from the feed's start too; the withdrawal stays.
  std::vector<json> from_start = FeedFrom(c, "wijkteam", "");
  CHECK_FALSE(HasChange(from_start, "item-stored", "version", fin_version));
  CHECK(HasChange(from_start, "consent-withdrawn", "consent", consent));
  CHECK(HasChange(FeedFrom(c, "gemeente", ""), "consent-withdrawn", "consent", consent));

  // Closing and reopening a case are in the feed of the organisations involved.
  auto closed = c.Call("gemeente", "POST", "/v1/cases/" + case_id + "/close", json{{"reason", "moved"}});
  REQUIRE(closed.status == 200);
  const std::string close_record = closed.body["closed"]["record"];
  REQUIRE(c.Call("gemeente", "POST", "/v1/cases/" + case_id + "/reopen").status == 200);
  std::vector<json> ended = FeedFrom(c, "gemeente", "");
  CHECK(HasChange(ended, "case-closed", "record", close_record));
  CHECK(HasChange(ended, "case-reopened", "case", case_id));
}

TEST_CASE("a POST retried with the same Idempotency-Key gives the first answer and creates one item; another body under it is 409") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  Answer first_case = Send(c, "gemeente", "POST", "/v1/cases", json{{"label", "dossier 1"}}, {{"Idempotency-Key", "case-1"}});
  Answer retried_case = Send(c, "gemeente", "POST", "/v1/cases", json{{"label", "dossier 1"}}, {{"Idempotency-Key", "case-1"}});
  REQUIRE(first_case.status == 201);
  CHECK(retried_case.status == 201);
  CHECK(retried_case.raw == first_case.raw);
  CHECK(first_case.Header("Location") == "/v1/cases/" + first_case.body["case"].get<std::string>());
  CHECK(retried_case.Header("Location") == first_case.Header("Location"));
  CHECK(retried_case.Header("Idempotent-Replayed") == "true");
  CHECK(Send(c, "gemeente", "GET", "/v1/cases").body["cases"].size() == 1);

  const std::string case_id = first_case.body["case"];
  const std::string items = "/v1/cases/" + case_id + "/items";
  Answer a = Send(c, "gemeente", "POST", items, Goal("Schulden op een rij"), {{"Idempotency-Key", "goal-7"}});
  Answer b = Send(c, "gemeente", "POST", items, Goal("Schulden op een rij"), {{"Idempotency-Key", "goal-7"}});
  REQUIRE(a.status == 201);
  CHECK(b.status == 201);
  CHECK(b.body == a.body);
  CHECK(b.Header("ETag") == a.Header("ETag"));
  CHECK(PlanItems(c, "gemeente", case_id) == 1);
  Answer other = Send(c, "gemeente", "POST", items, Goal("Iets anders"), {{"Idempotency-Key", "goal-7"}});
  CHECK(other.status == 409);
  CHECK(other.body["error"] == "idempotency_key_reused");
  CHECK(PlanItems(c, "gemeente", case_id) == 1);
  // A failed first answer is kept too (a retry must not change the outcome).
  Answer bad = Send(c, "gemeente", "POST", items, json{{"kind", "goal"}, {"data", {}}}, {{"Idempotency-Key", "bad-1"}});
  CHECK(bad.status == 400);
  CHECK(Send(c, "gemeente", "POST", items, json{{"kind", "goal"}, {"data", {}}}, {{"Idempotency-Key", "bad-1"}}).raw == bad.raw);
  CHECK(Send(c, "gemeente", "POST", items, Goal("x"), {{"Idempotency-Key", std::string(300, 'k')}}).status == 400);

  // Keys belong to one client system: another system's same key is its own.
  CommandResult token = c.Cli({"token", "--data", c.node("gemeente").data_dir, "--client", "crm"});
  REQUIRE(token.exit_code == 0);
  std::string crm = token.out.substr(0, token.out.find_first_of("\r\n"));
  Answer theirs = Send(c, "gemeente", "POST", items, Goal("Schulden op een rij"), {{"Idempotency-Key", "goal-7"}}, crm);
  CHECK(theirs.status == 201);
  CHECK(theirs.body["item"] != a.body["item"]);
  CHECK(PlanItems(c, "gemeente", case_id) == 2);

  // The kept answer survives a restart, and the disk does not show the key or the answer.
  REQUIRE(c.Stop("gemeente") == 0);
  REQUIRE(c.Start("gemeente"));
  Answer after = Send(c, "gemeente", "POST", items, Goal("Schulden op een rij"), {{"Idempotency-Key", "goal-7"}});
  CHECK(after.status == 201);
  CHECK(after.body == a.body);
  CHECK(PlanItems(c, "gemeente", case_id) == 2);
  CHECK_FALSE(DatabaseContains(c, "gemeente", "goal-7"));
}

TEST_CASE("an edit with a stale If-Match is 412 and makes no conflict; a write says whether it left one") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  const std::string case_id = CreateCase(c, "gemeente");
  const std::string items = "/v1/cases/" + case_id + "/items";
  Answer created = Send(c, "gemeente", "POST", items, Goal("Overzicht", "proposed"));
  REQUIRE(created.status == 201);
  CHECK(created.body["conflict"] == false);
  const std::string item = created.body["item"], v1 = created.body["version"];
  CHECK(created.Header("Location") == items + "/" + item);
  CHECK(created.Header("ETag") == "\"" + v1 + "\"");

  Answer read = Send(c, "gemeente", "GET", created.Header("Location"));
  REQUIRE(read.status == 200);
  const std::string etag = read.Header("ETag");
  CHECK(etag == "\"" + v1 + "\"");
  CHECK(read.body["current"]["version"] == v1);
  CHECK(read.body["history"].size() == 1);

  json edit = Goal("Overzicht", "active");
  edit["supersedes"] = {v1};
  Answer fresh = Send(c, "gemeente", "POST", items, edit, {{"If-Match", etag}});
  REQUIRE(fresh.status == 201);
  CHECK(fresh.body["conflict"] == false);
  const std::string v2 = fresh.body["version"];
  CHECK(fresh.Header("ETag") == "\"" + v2 + "\"");

  // A second writer read the item before that edit: its edit is refused and writes nothing.
  json stale = Goal("Overzicht en achterstanden", "active");
  stale["supersedes"] = {v1};
  Answer refused = Send(c, "gemeente", "POST", items, stale, {{"If-Match", etag}});
  CHECK(refused.status == 412);
  CHECK(refused.body["error"] == "precondition_failed");
  json plan = Plan(c, "gemeente", case_id);
  CHECK(plan["conflicts"] == 0);
  Answer now = Send(c, "gemeente", "GET", items + "/" + item);
  CHECK(now.body["history"].size() == 2);
  CHECK(now.body["current"]["version"] == v2);

  // Without If-Match the same stale edit is kept as a conflict, and its answer says so.
  Answer crossed = Send(c, "gemeente", "POST", items, stale);
  REQUIRE(crossed.status == 201);
  CHECK(crossed.body["conflict"] == true);
  Answer conflicted = Send(c, "gemeente", "GET", items + "/" + item);
  CHECK(conflicted.body["current"]["conflicts"].size() == 1);
  CHECK(conflicted.Header("ETag") == crossed.Header("ETag"));
  CHECK(conflicted.Header("ETag") != "\"" + v2 + "\"");
  // An edit that supersedes both heads, made with the current ETag, resolves it.
  json resolve = Goal("Overzicht en achterstanden", "achieved");
  resolve["supersedes"] = {v2, crossed.body["version"]};
  Answer resolved = Send(c, "gemeente", "POST", items, resolve, {{"If-Match", conflicted.Header("ETag")}});
  CHECK(resolved.status == 201);
  CHECK(resolved.body["conflict"] == false);
  CHECK(Send(c, "gemeente", "GET", items + "/" + std::string(64, 'e')).status == 404);
}

TEST_CASE("paging through 1,000 access-log entries, while more are written, loses and repeats none") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  const std::string case_id = CreateCase(c, "gemeente");
  const std::string consents = "/v1/cases/" + case_id + "/consents";
  {
    httplib::Client cli("127.0.0.1", c.node("gemeente").api_port);
    cli.set_keep_alive(true);
    auto h = Professional(c, "gemeente");
    httplib::Headers hh(h.begin(), h.end());
    for (int i = 0; i < 1000; ++i) REQUIRE(cli.Get(consents, hh)->status == 200);
  }
  const std::string log = "/v1/cases/" + case_id + "/access-log";
  std::vector<std::string> events;
  std::string cursor;
  int pages = 0;
  for (; pages < 100; ++pages) {
    Answer page = Send(c, "gemeente", "GET", log + "?limit=97" + (cursor.empty() ? "" : "&cursor=" + cursor));
    REQUIRE(page.status == 200);
    CHECK(page.body["entries"].size() <= 97);
    for (const json& e : page.body["entries"]) events.push_back(e["event"]);
    // Entries keep being written while the pages are read: each read, and a write now and then.
    if (pages % 3 == 0) REQUIRE(Send(c, "gemeente", "GET", consents).status == 200);
    if (!page.body.contains("next_cursor")) break;
    cursor = page.body["next_cursor"];
  }
  CHECK(pages >= 10);
  std::set<std::string> unique(events.begin(), events.end());
  CHECK(unique.size() == events.size());
  // Every entry the node holds about the case, up to the last page read, came exactly once.
  std::vector<std::string> stored = Query(
      c, "gemeente", "SELECT lower(hex(event_id)) FROM access_log WHERE case_id = (SELECT case_id FROM cases LIMIT 1)");
  REQUIRE(stored.size() >= 1000);
  size_t found = 0;
  for (const std::string& e : stored) found += unique.count(e);
  CHECK(found + 1 >= stored.size());  // the last page's own read is written after it answered
  CHECK(found >= 1001);
  CHECK(Send(c, "gemeente", "GET", log + "?limit=0").status == 400);
  CHECK(Send(c, "gemeente", "GET", log + "?cursor=zz").status == 400);
  CHECK(Send(c, "gemeente", "GET", log + "?cursor=" + cursor.replace(0, 1, "k")).status == 400);  // another list's
}

TEST_CASE("cases are found by label and paged; one case shows its counts; unknown parameters are 400 and a wrong method 405") {
  LocalCluster c(KRING_NODE_BINARY);
  c.AddNode("gemeente", "Gemeente");
  REQUIRE(c.Start("gemeente"));
  std::set<std::string> ids;
  for (const char* label : {"dossier 1", "dossier 2", "dossier 3"}) ids.insert(CreateCase(c, "gemeente", label));
  Answer found = Send(c, "gemeente", "GET", "/v1/cases?label=dossier%202");
  REQUIRE(found.status == 200);
  REQUIRE(found.body["cases"].size() == 1);
  CHECK(found.body["cases"][0]["label"] == "dossier 2");
  CHECK(Send(c, "gemeente", "GET", "/v1/cases?label=Dossier%202").body["cases"].empty());  // exact match
  CHECK(Send(c, "gemeente", "GET", "/v1/cases?label=dossier").body["cases"].empty());

  std::set<std::string> paged;
  std::string cursor;
  for (int i = 0; i < 5; ++i) {
    Answer page = Send(c, "gemeente", "GET", "/v1/cases?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor));
    REQUIRE(page.status == 200);
    for (const json& e : page.body["cases"]) CHECK(paged.insert(e["case"].get<std::string>()).second);
    if (!page.body.contains("next_cursor")) break;
    cursor = page.body["next_cursor"];
  }
  CHECK(paged == ids);

  const std::string case_id = found.body["cases"][0]["case"];
  REQUIRE(Send(c, "gemeente", "POST", "/v1/cases/" + case_id + "/items", Goal("Een doel")).status == 201);
  Answer one = Send(c, "gemeente", "GET", "/v1/cases/" + case_id);
  REQUIRE(one.status == 200);
  CHECK(one.body["label"] == "dossier 2");
  CHECK(one.body["regie"] == "gemeente");
  CHECK(one.body["involved"] == json::array({"gemeente"}));
  CHECK(one.body["counts"]["items"] == 1);
  CHECK(one.body["counts"]["conflicts"] == 0);
  CHECK(Send(c, "gemeente", "GET", "/v1/cases/0123456789abcdef0123456789abcdef").status == 404);

  Answer typo = Send(c, "gemeente", "GET", "/v1/cases?lable=dossier%202");
  CHECK(typo.status == 400);
  CHECK(typo.body["error"] == "unknown_parameter");
  CHECK(Send(c, "gemeente", "GET", "/v1/cases/" + case_id + "/plan?verbose=1").status == 400);
  CHECK(Send(c, "gemeente", "GET", "/v1/health?x=1").status == 400);
  CHECK(Send(c, "gemeente", "GET", "/v1/changes?sinse=x").status == 400);

  Answer wrong = Send(c, "gemeente", "DELETE", "/v1/cases");
  CHECK(wrong.status == 405);
  CHECK(wrong.Header("Allow") == "GET, POST");
  CHECK(wrong.body["error"] == "method_not_allowed");
  Answer put = Send(c, "gemeente", "PUT", "/v1/cases/" + case_id + "/plan", json::object());
  CHECK(put.status == 405);
  CHECK(put.Header("Allow") == "GET");
  CHECK(Send(c, "gemeente", "POST", "/v1/changes", json::object()).status == 405);
  CHECK(Send(c, "gemeente", "GET", "/v1/nothing-here").status == 404);
}
