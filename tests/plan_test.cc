// Unit and property tests of plan items (plan/items.h) and the plan view merge (plan/merge.h).
#include "plan/items.h"
#include "plan/merge.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "protocol/records.h"

namespace kring {
namespace {

using nlohmann::json;

constexpr uint64_t kT0 = 1'700'000'000'000;  // 2023-11-14T22:13:20.000Z
HlcTimestamp At(uint64_t ms_after_t0, uint16_t counter = 0) { return MakeHlc(kT0 + ms_after_t0, counter); }
std::string TimeAt(uint64_t ms_after_t0) { return IsoTimeMillis(kT0 + ms_after_t0); }

// A version id whose every byte is n: ids compare as their n.
FragmentId Id(uint8_t n) {
  FragmentId id;
  id.fill(n);
  return id;
}
std::string Hex(uint8_t n) { return ToHex(Id(n)); }

const CaseId kCase = {0xca, 0x14, 0x9b, 0x35, 0x8a, 0x05, 0x74, 0x61, 0xef, 0x32, 0x9e, 0x69, 0xe9, 0x3a, 0x57, 0xd2};
const RegieInput kRegie{"gemeente-a", "J. de Vries", false};

json GoalBody(const std::string& description, const std::string& status = "active") {
  return {{"description", description}, {"status", status}};
}
json NoteBody(const std::string& text) { return {{"text", text}}; }
const json kTombstone = {{"deleted", true}};

ItemVersion First(uint8_t id, std::string author, std::string kind, std::string domain, HlcTimestamp hlc, json data) {
  return ItemVersion{Id(id), Id(id), std::move(author), std::move(kind), std::move(domain), hlc, {}, std::move(data)};
}

// An edit of the item `base` belongs to, with the same kind and domain.
ItemVersion Edit(uint8_t id, const ItemVersion& base, std::string author, HlcTimestamp hlc,
                 std::vector<FragmentId> supersedes, json data) {
  return ItemVersion{Id(id), base.item, std::move(author), base.kind, base.domain, hlc, std::move(supersedes),
                     std::move(data)};
}

std::string Dump(std::vector<ItemVersion> vs, const RegieInput& regie = kRegie) {
  return MergePlan(kCase, regie, std::move(vs)).dump();
}

// ---------------------------------------------------------------------------
// Validation

const std::string kGoalId(64, 'a');

// A valid body of each kind, with every optional field, and its domain.
struct Example {
  const char* kind;
  const char* domain;
  json data;
};
std::vector<Example> FullExamples() {
  return {
      {"household", "",
       {{"members", {{{"id", 1}, {"role", "parent"}, {"year_of_birth", 1984}}, {{"id", 2}, {"role", "child"}}}}}},
      {"goal", "finances", {{"description", "Overzicht van alle schulden"}, {"status", "active"}, {"target_date", "2025-03-01"}}},
      {"action", "finances",
       {{"what", "Schuldenoverzicht maken"},
        {"who", {{"type", "organisation"}, {"org", "wijkteam-deventer"}}},
        {"due_date", "2025-02-01"},
        {"status", "planned"},
        {"goal", kGoalId}}},
      {"agreement", "housing",
       {{"text", "Mevrouw betaalt de huur voortaan via automatische incasso."},
        {"parties", {{{"type", "citizen"}, {"member", 1}}, {{"type", "organisation"}, {"org", "woningcorp-x"}}}},
        {"agreed_on", "2025-01-10"},
        {"review_date", "2025-04-01"}}},
      {"evaluation", "finances",
       {{"date", "2025-04-01"},
        {"reviewed", "Voortgang schuldenoverzicht"},
        {"outcome", "Overzicht compleet, aanvraag schuldhulp ingediend."},
        {"next_date", "2025-07-01"},
        {"goals", {kGoalId}}}},
      {"signal", "housing",
       {{"raised_by", "woningcorp-x"}, {"date", "2025-01-05"}, {"contact", "team wonen, 0570 123 456"},
        {"concern", "Twee maanden huurachterstand."}}},
      {"handover", "mental-health",
       {{"from", "wijkteam-deventer"}, {"to", "ggz-oost"}, {"date", "2025-03-01"}, {"status", "planned"},
        {"reason", "Specialistische behandeling nodig."}}},
      {"note", "", {{"text", "Gesprek gehad met mevrouw; ze wil graag hulp bij de administratie."}}},
      {"regisseur", "", {{"org", "gemeente-deventer"}, {"person", "J. de Vries"}}},
  };
}

TEST_CASE("a valid body of every kind is accepted") {
  for (const Example& e : FullExamples()) {
    CAPTURE(e.kind);
    Status st = ValidateItem(e.kind, e.domain, e.data);
    CHECK_MESSAGE(st.ok(), st.message());
  }
  SUBCASE("with only the required fields") {
    CHECK(ValidateItem("household", "", {{"members", {{{"id", 1}, {"role", "adult"}}}}}).ok());
    CHECK(ValidateItem("goal", "housing", GoalBody("Een eigen woning", "proposed")).ok());
    CHECK(ValidateItem("action", "housing",
                       {{"what", "Inschrijven bij woningnet"}, {"who", {{"type", "citizen"}}}, {"status", "in-progress"}})
              .ok());
    CHECK(ValidateItem("action", "social-network",
                       {{"what", "Boodschappen"}, {"who", {{"type", "network"}, {"relation", "neighbour"}}},
                        {"status", "completed"}})
              .ok());
    CHECK(ValidateItem("agreement", "", {{"text", "We zien elkaar elke maand."}}).ok());
    CHECK(ValidateItem("evaluation", "", {{"date", "2025-04-01"}, {"reviewed", "Het hele plan"}}).ok());
    CHECK(ValidateItem("signal", "", {{"raised_by", "ggd-c"}, {"date", "2025-01-05"}, {"contact", "GGD meldpunt"}}).ok());
    CHECK(ValidateItem("handover", "", {{"from", "zorg-b"}, {"to", "ggd-c"}, {"date", "2025-03-01"}, {"status", "completed"}})
              .ok());
    CHECK(ValidateItem("note", "justice", NoteBody("Kort")).ok());
  }
  SUBCASE("an optional domain may be any of the 13 ZRM domains") {
    for (const char* d : kLifeDomains) {
      CAPTURE(d);
      CHECK(ValidateItem("note", d, NoteBody("x")).ok());
      CHECK(ValidateItem("goal", d, GoalBody("x")).ok());
    }
  }
}

TEST_CASE("each invalid field is rejected with a message naming it") {
  struct Bad {
    const char* kind;
    const char* domain;
    json data;
    const char* expect;  // a part of the message
  };
  const json who_org = {{"type", "organisation"}, {"org", "zorg-b"}};
  const std::vector<Bad> bad = {
      // household
      {"household", "", json::object(), "household: 'members' is required"},
      {"household", "", {{"members", json::array()}}, "'members' must not be empty"},
      {"household", "", {{"members", "two"}}, "'members' must be an array"},
      {"household", "", {{"members", {{{"role", "child"}}}}}, "'members[0].id' is required"},
      {"household", "", {{"members", {{{"id", 0}, {"role", "child"}}}}}, "'members[0].id' must be a whole number from 1 to 99"},
      {"household", "", {{"members", {{{"id", 1.5}, {"role", "child"}}}}}, "'members[0].id' must be a whole number"},
      {"household", "", {{"members", {{{"id", 1}, {"role", "child"}}, {{"id", 1}, {"role", "parent"}}}}}, "member id 1 twice"},
      {"household", "", {{"members", {{{"id", 1}, {"role", "uncle"}}}}}, "'members[0].role' must be one of adult, parent"},
      {"household", "", {{"members", {{{"id", 1}, {"role", "child"}, {"year_of_birth", 1850}}}}}, "'members[0].year_of_birth'"},
      {"household", "", {{"members", {{{"id", 1}, {"role", "child"}, {"year_of_birth", "2010"}}}}}, "'members[0].year_of_birth'"},
      {"household", "", {{"members", {1}}}, "'members[0]' must be an object"},
      {"household", "", {{"members", std::vector<json>(21, {{"id", 1}, {"role", "child"}})}}, "'members' has more than 20"},
      // goal
      {"goal", "finances", {{"status", "active"}}, "goal: 'description' is required"},
      {"goal", "finances", {{"description", ""}, {"status", "active"}}, "'description' must not be empty"},
      {"goal", "finances", {{"description", "  \n "}, {"status", "active"}}, "'description' must not be empty"},
      {"goal", "finances", {{"description", 42}, {"status", "active"}}, "'description' must be a string"},
      {"goal", "finances", {{"description", std::string(2001, 'x')}, {"status", "active"}}, "'description' is longer than 2000"},
      {"goal", "finances", {{"description", "x"}}, "goal: 'status' is required"},
      {"goal", "finances", {{"description", "x"}, {"status", "done"}}, "'status' must be one of proposed, active, achieved, not-achieved, cancelled"},
      {"goal", "finances", {{"description", "x"}, {"status", "active"}, {"target_date", "1-3-2025"}}, "'target_date' must be a date YYYY-MM-DD"},
      {"goal", "finances", {{"description", "x"}, {"status", "active"}, {"target_date", "2025-02-30"}}, "'target_date'"},
      {"goal", "finances", {{"description", "x"}, {"status", "active"}, {"title", "x"}}, "goal: unknown field 'title'"},
      // action
      {"action", "finances", {{"who", who_org}, {"status", "planned"}}, "action: 'what' is required"},
      {"action", "finances", {{"what", "x"}, {"status", "planned"}}, "action: 'who' is required"},
      {"action", "finances", {{"what", "x"}, {"who", "zorg-b"}, {"status", "planned"}}, "'who' must be an object"},
      {"action", "finances", {{"what", "x"}, {"who", {{"org", "zorg-b"}}}, {"status", "planned"}}, "'who.type' is required"},
      {"action", "finances", {{"what", "x"}, {"who", {{"type", "gp"}}}, {"status", "planned"}}, "'who.type' must be one of organisation, citizen, network"},
      {"action", "finances", {{"what", "x"}, {"who", {{"type", "organisation"}}}, {"status", "planned"}}, "'who.org' is required"},
      {"action", "finances", {{"what", "x"}, {"who", {{"type", "organisation"}, {"org", "Zorg B"}}}, {"status", "planned"}}, "'who.org' must be an organisation slug"},
      {"action", "finances", {{"what", "x"}, {"who", {{"type", "citizen"}, {"org", "zorg-b"}}}, {"status", "planned"}}, "'who.org' is only allowed when 'type' is organisation"},
      {"action", "finances", {{"what", "x"}, {"who", {{"type", "network"}}}, {"status", "planned"}}, "'who.relation' is required"},
      {"action", "finances", {{"what", "x"}, {"who", {{"type", "network"}, {"relation", "aunt"}}}, {"status", "planned"}}, "'who.relation' must be one of family"},
      {"action", "finances", {{"what", "x"}, {"who", {{"type", "network"}, {"relation", "family"}, {"member", 1}}}, {"status", "planned"}}, "'who.member' is only allowed when 'type' is citizen"},
      {"action", "finances", {{"what", "x"}, {"who", {{"type", "citizen"}, {"member", 100}}}, {"status", "planned"}}, "'who.member' must be a whole number from 1 to 99"},
      {"action", "finances", {{"what", "x"}, {"who", {{"type", "network"}, {"relation", "friend"}, {"name", "Piet"}}}, {"status", "planned"}}, "unknown field 'who.name' (a plan holds no names or BSN"},
      {"action", "finances", {{"what", "x"}, {"who", who_org}}, "action: 'status' is required"},
      {"action", "finances", {{"what", "x"}, {"who", who_org}, {"status", "done"}}, "'status' must be one of planned, in-progress, on-hold, completed, cancelled"},
      {"action", "finances", {{"what", "x"}, {"who", who_org}, {"status", "planned"}, {"due_date", "2025-13-01"}}, "'due_date'"},
      {"action", "finances", {{"what", "x"}, {"who", who_org}, {"status", "planned"}, {"goal", "abc"}}, "'goal' must be an item id"},
      {"action", "finances", {{"what", "x"}, {"who", who_org}, {"status", "planned"}, {"goal", std::string(64, 'A')}}, "'goal' must be an item id"},
      // agreement
      {"agreement", "", json::object(), "agreement: 'text' is required"},
      {"agreement", "", {{"text", std::string(4001, 'x')}}, "'text' is longer than 4000"},
      {"agreement", "", {{"text", "x"}, {"parties", json::array()}}, "'parties' must not be empty"},
      {"agreement", "", {{"text", "x"}, {"parties", {{{"type", "organisation"}}}}}, "'parties[0].org' is required"},
      {"agreement", "", {{"text", "x"}, {"agreed_on", "yesterday"}}, "'agreed_on' must be a date"},
      {"agreement", "", {{"text", "x"}, {"review_date", 20250101}}, "'review_date' must be a date"},
      // evaluation
      {"evaluation", "", {{"reviewed", "x"}}, "evaluation: 'date' is required"},
      {"evaluation", "", {{"date", "2025-04-01"}}, "evaluation: 'reviewed' is required"},
      {"evaluation", "", {{"date", "2025-04-01"}, {"reviewed", "x"}, {"outcome", ""}}, "'outcome' must not be empty"},
      {"evaluation", "", {{"date", "2025-04-01"}, {"reviewed", "x"}, {"next_date", "2025-04"}}, "'next_date' must be a date"},
      {"evaluation", "", {{"date", "2025-04-01"}, {"reviewed", "x"}, {"goals", {"nope"}}}, "'goals[0]' must be an item id"},
      {"evaluation", "", {{"date", "2025-04-01"}, {"reviewed", "x"}, {"goals", {kGoalId, kGoalId}}}, "'goals' names goal"},
      // signal
      {"signal", "", {{"date", "2025-01-05"}, {"contact", "x"}}, "signal: 'raised_by' is required"},
      {"signal", "", {{"raised_by", "x"}, {"date", "2025-01-05"}, {"contact", "x"}}, "'raised_by' must be an organisation slug"},
      {"signal", "", {{"raised_by", "ggd-c"}, {"contact", "x"}}, "signal: 'date' is required"},
      {"signal", "", {{"raised_by", "ggd-c"}, {"date", "2025-01-05"}}, "signal: 'contact' is required"},
      {"signal", "", {{"raised_by", "ggd-c"}, {"date", "2025-01-05"}, {"contact", "line one\nline two"}}, "'contact' must not contain control characters"},
      {"signal", "", {{"raised_by", "ggd-c"}, {"date", "2025-01-05"}, {"contact", std::string(201, 'x')}}, "'contact' is longer than 200"},
      {"signal", "", {{"raised_by", "ggd-c"}, {"date", "2025-01-05"}, {"contact", "x"}, {"bsn", "123456782"}}, "unknown field 'bsn' (a plan holds no names or BSN"},
      // handover
      {"handover", "", {{"to", "ggd-c"}, {"date", "2025-03-01"}, {"status", "planned"}}, "handover: 'from' is required"},
      {"handover", "", {{"from", "zorg-b"}, {"date", "2025-03-01"}, {"status", "planned"}}, "handover: 'to' is required"},
      {"handover", "", {{"from", "zorg-b"}, {"to", "zorg-b"}, {"date", "2025-03-01"}, {"status", "planned"}}, "'to' must differ from 'from'"},
      {"handover", "", {{"from", "zorg-b"}, {"to", "ggd-c"}, {"status", "planned"}}, "handover: 'date' is required"},
      {"handover", "", {{"from", "zorg-b"}, {"to", "ggd-c"}, {"date", "2025-03-01"}, {"status", "accepted"}}, "'status' must be one of planned, completed, cancelled"},
      {"handover", "", {{"from", "zorg-b"}, {"to", "ggd-c"}, {"date", "2025-03-01"}, {"status", "planned"}, {"regie", true}}, "unknown field 'regie'"},
      // note
      {"note", "", json::object(), "note: 'text' is required"},
      {"note", "", {{"text", "x"}, {"client_name", "Jansen"}}, "unknown field 'client_name' (a plan holds no names"},
      {"note", "", {{"text", std::string("a\0b", 3)}}, "'text' must not contain control characters other than newlines"},
      // regisseur
      {"regisseur", "", {{"person", "J. de Vries"}}, "regisseur: 'org' is required"},
      {"regisseur", "", {{"org", "gemeente-a"}}, "regisseur: 'person' is required"},
      {"regisseur", "", {{"org", "gemeente-a"}, {"person", std::string(129, 'x')}}, "'person' is longer than 128"},
      {"regisseur", "", {{"org", "gemeente-a"}, {"person", std::string(65, 'x') + std::string(64, 'x')}}, "'person'"},
      {"regisseur", "", {{"org", "gemeente-a"}, {"person", std::string(100, 'x') + "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"}}, "'person' must be at most 128 bytes"},
      // the data itself
      {"goal", "finances", json::array(), "goal: 'data' must be a JSON object"},
      {"note", "", "text", "note: 'data' must be a JSON object"},
  };
  for (const Bad& b : bad) {
    CAPTURE(b.kind);
    CAPTURE(b.data.dump());
    Status st = ValidateItem(b.kind, b.domain, b.data);
    REQUIRE_FALSE(st.ok());
    CHECK(st.code() == Status::Code::kInvalidArgument);
    CHECK_MESSAGE(st.message().find(b.expect) != std::string::npos, st.message());
  }
}

TEST_CASE("an unknown kind is rejected and the message lists the known ones") {
  Status st = ValidateItem("task", "finances", NoteBody("x"));
  REQUIRE_FALSE(st.ok());
  CHECK(st.message() == "unknown kind 'task' (one of household, goal, action, agreement, evaluation, signal, handover, note, regisseur)");
  CHECK_FALSE(ValidateItem("", "", NoteBody("x")).ok());
  CHECK_FALSE(ValidateItem("Goal", "finances", GoalBody("x")).ok());
  // An unprintable kind is not echoed.
  CHECK(ValidateItem(std::string("no\x01te", 5), "", NoteBody("x")).message().find("unknown kind '?'") == 0);
}

TEST_CASE("an unknown life domain is rejected") {
  Status st = ValidateItem("goal", "health", GoalBody("x"));
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("goal: unknown life domain 'health' (one of finances, work-education") == 0);
  CHECK_FALSE(ValidateItem("note", "*", NoteBody("x")).ok());
  CHECK_FALSE(ValidateItem("note", "Finances", NoteBody("x")).ok());
}

TEST_CASE("goal and action need a life domain, household and regisseur have none, the others may") {
  CHECK(ValidateItem("goal", "", GoalBody("x")).message() == "goal: a life domain is required (one of the 13 ZRM slugs)");
  CHECK_FALSE(ValidateItem("action", "", {{"what", "x"}, {"who", {{"type", "citizen"}}}, {"status", "planned"}}).ok());
  CHECK(ValidateItem("household", "finances", {{"members", {{{"id", 1}, {"role", "adult"}}}}}).message() ==
        "household: has no life domain (it concerns the whole case)");
  CHECK_FALSE(ValidateItem("regisseur", "finances", {{"org", "gemeente-a"}, {"person", "x"}}).ok());
  for (const char* kind : {"agreement", "note"}) {
    CHECK(ValidateItem(kind, "", {{"text", "x"}}).ok());
    CHECK(ValidateItem(kind, "housing", {{"text", "x"}}).ok());
  }
  CHECK(DomainRuleOf("goal") == DomainRule::kRequired);
  CHECK(DomainRuleOf("evaluation") == DomainRule::kOptional);
  CHECK(DomainRuleOf("household") == DomainRule::kForbidden);
}

TEST_CASE("a tombstone is a valid edit of every fragment kind") {
  for (const char* kind : kItemKinds) {
    CAPTURE(kind);
    const char* domain = DomainRuleOf(kind) == DomainRule::kRequired ? "finances" : "";
    Status st = ValidateItem(kind, domain, kTombstone);
    if (std::string_view(kind) == "regisseur") {
      CHECK(st.message() == "regisseur: cannot be deleted; hand regie over with a new regisseur instead");
    } else {
      CHECK_MESSAGE(st.ok(), st.message());
    }
  }
  CHECK(IsTombstone(kTombstone));
  CHECK_FALSE(IsTombstone({{"deleted", false}}));
  CHECK_FALSE(IsTombstone({{"deleted", 1}}));
  CHECK_FALSE(IsTombstone({{"deleted", true}, {"text", "x"}}));
  CHECK(ValidateItem("note", "", {{"deleted", false}}).message() == "note: 'deleted' must be true");
  CHECK(ValidateItem("note", "", {{"deleted", true}, {"text", "x"}}).message() ==
        "note: a tombstone holds only 'deleted', no other field");
  SUBCASE("a tombstone still needs the item's domain rule") {
    CHECK_FALSE(ValidateItem("goal", "", kTombstone).ok());
    CHECK_FALSE(ValidateItem("household", "housing", kTombstone).ok());
  }
}

TEST_CASE("a regisseur item is accepted from the API but never as a fragment") {
  const json r = {{"org", "gemeente-a"}, {"person", "J. de Vries"}};
  CHECK(ValidateItem("regisseur", "", r).ok());
  CHECK(ValidateFragmentItem("regisseur", "", r).message() ==
        "regisseur: is a RegieChange control record, never a fragment");
  CHECK(ValidateFragmentItem("note", "", NoteBody("x")).ok());
  CHECK_FALSE(IsFragmentKind("regisseur"));
  CHECK(IsFragmentKind("household"));
  CHECK(IsItemKind("regisseur"));
  CHECK_FALSE(IsItemKind("task"));
}

TEST_CASE("text limits count characters, not bytes") {
  std::string e2000;
  for (int i = 0; i < 2000; ++i) e2000 += "\xc3\xa9";  // é: two bytes
  CHECK(ValidateItem("goal", "finances", GoalBody(e2000)).ok());
  CHECK(ValidateItem("goal", "finances", GoalBody(e2000 + "x")).message().find("longer than 2000 characters") !=
        std::string::npos);
  CHECK(ValidateItem("note", "", NoteBody("regel 1\nregel 2\tmet tab\r\n")).ok());
}

TEST_CASE("text that is not valid UTF-8 or holds control characters is rejected") {
  for (std::string bad : {std::string("\xff"), std::string("a\xc3"), std::string("\xc0\xaf"),  // truncated, overlong
                          std::string("\xed\xa0\x80"),                                           // a surrogate
                          std::string("\xf4\x90\x80\x80")}) {                                    // past U+10FFFF
    CAPTURE(ToHex(std::span(reinterpret_cast<const uint8_t*>(bad.data()), bad.size())));
    CHECK(ValidateItem("note", "", NoteBody(bad)).message() == "note: 'text' is not valid UTF-8");
  }
  CHECK_FALSE(ValidateItem("note", "", NoteBody("bell\x07")).ok());
  CHECK_FALSE(ValidateItem("note", "", NoteBody("c1 \xc2\x85 control")).ok());
  CHECK(ValidateItem("note", "", NoteBody("emoji \xf0\x9f\x99\x82 ok")).ok());
}

TEST_CASE("dates must be real calendar days written YYYY-MM-DD") {
  auto goal_due = [](const std::string& d) {
    return ValidateItem("goal", "finances", {{"description", "x"}, {"status", "active"}, {"target_date", d}}).ok();
  };
  CHECK(goal_due("2024-02-29"));
  CHECK(goal_due("2000-02-29"));
  CHECK(goal_due("1900-01-01"));
  CHECK(goal_due("2199-12-31"));
  CHECK_FALSE(goal_due("2023-02-29"));
  CHECK_FALSE(goal_due("1900-02-29"));
  CHECK_FALSE(goal_due("2024-04-31"));
  CHECK_FALSE(goal_due("2024-00-10"));
  CHECK_FALSE(goal_due("2024-01-00"));
  CHECK_FALSE(goal_due("1899-12-31"));
  CHECK_FALSE(goal_due("2200-01-01"));
  CHECK_FALSE(goal_due("2024-1-01"));
  CHECK_FALSE(goal_due("2024-01-01T00:00:00Z"));
  CHECK_FALSE(goal_due("2024/01/01"));
  CHECK_FALSE(goal_due("２０２４-01-01"));
}

// Random JSON of any shape, with the field names of the schemas among its keys.
json RandomJson(std::mt19937_64& rng, int depth) {
  static const std::vector<std::string> kKeys = {
      "members", "id",    "role",      "year_of_birth", "description", "status", "target_date", "what",
      "who",     "type",  "org",       "member",        "relation",    "due_date", "goal",      "text",
      "parties", "date",  "reviewed",  "outcome",       "next_date",   "goals",  "raised_by",   "contact",
      "concern", "from",  "to",        "reason",        "person",      "deleted", "x",          "\xff"};
  switch (rng() % (depth > 0 ? 9 : 6)) {
    case 0: return nullptr;
    case 1: return rng() % 2 == 0;
    case 2: return static_cast<int64_t>(rng() % 300) - 100;
    case 3: return static_cast<double>(rng() % 1000) / 7.0;
    case 4: return kKeys[rng() % kKeys.size()];
    case 5: return std::string("2025-0") + std::to_string(rng() % 10) + "-1" + std::to_string(rng() % 10);
    case 6:
    case 7: {
      json o = json::object();
      for (size_t n = rng() % 6; n > 0; --n) o[kKeys[rng() % kKeys.size()]] = RandomJson(rng, depth - 1);
      return o;
    }
    default: {
      json a = json::array();
      for (size_t n = rng() % 4; n > 0; --n) a.push_back(RandomJson(rng, depth - 1));
      return a;
    }
  }
}

TEST_CASE("validation never throws, and what passes always dumps") {
  std::mt19937_64 rng(7);
  const auto examples = FullExamples();
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    const Example& e = examples[rng() % examples.size()];
    json data = e.data;
    if (i % 2 == 0) {
      data = RandomJson(rng, 3);
    } else {
      // Replace one field of a valid body by anything.
      auto it = data.begin();
      std::advance(it, rng() % data.size());
      *it = RandomJson(rng, 2);
    }
    Status st;
    CHECK_NOTHROW(st = ValidateItem(e.kind, e.domain, data));
    if (st.ok()) {
      ++accepted;
      CHECK_NOTHROW((void)data.dump());
    } else {
      CHECK(st.code() == Status::Code::kInvalidArgument);
      CHECK_FALSE(st.message().empty());
    }
  }
  CHECK(accepted > 0);  // the mutations hit optional fields with valid values sometimes
}

// ---------------------------------------------------------------------------
// Merge basics

TEST_CASE("a created item appears with its author, times and data") {
  ItemVersion g = First(1, "wijkteam-b", "goal", "finances", At(5), GoalBody("Schulden op een rij"));
  json plan = MergePlan(kCase, kRegie, {g});
  CHECK(plan["case"] == "ca149b358a057461ef329e69e93a57d2");
  CHECK(plan["conflicts"] == 0);
  REQUIRE(plan["items"].size() == 1);
  const json& it = plan["items"][0];
  CHECK(it["item"] == Hex(1));
  CHECK(it["version"] == Hex(1));
  CHECK(it["kind"] == "goal");
  CHECK(it["domain"] == "finances");
  CHECK(it["author"] == "wijkteam-b");
  CHECK(it["created"] == TimeAt(5));
  CHECK(it["updated"] == TimeAt(5));
  CHECK(it["data"] == GoalBody("Schulden op een rij"));
  CHECK(it["conflicts"] == json::array());
}

TEST_CASE("the plan view has the documented shape, byte for byte") {
  ItemVersion n = First(1, "zorg-b", "note", "", At(1), NoteBody("hallo"));
  ItemVersion e1 = Edit(2, n, "zorg-b", At(2), {n.version}, NoteBody("v2"));
  ItemVersion e2 = Edit(3, n, "ggd-c", At(3), {n.version}, NoteBody("v3"));
  const std::string expected =
      R"({"case":"ca149b358a057461ef329e69e93a57d2","conflicts":1,"items":[{"author":"ggd-c",)"
      R"("conflicts":[{"author":"zorg-b","created":"2023-11-14T22:13:20.002Z","data":{"text":"v2"},)"
      R"("version":")" + Hex(2) + R"("}],"created":"2023-11-14T22:13:20.001Z","data":{"text":"v3"},)"
      R"("domain":"","item":")" + Hex(1) + R"(","kind":"note","updated":"2023-11-14T22:13:20.003Z",)"
      R"("version":")" + Hex(3) + R"("}],"regisseur":{"conflict":false,"org":"gemeente-a","person":"J. de Vries"}})";
  CHECK(Dump({n, e1, e2}) == expected);
}

TEST_CASE("an edit replaces the shown version and keeps the creation time") {
  ItemVersion g = First(1, "wijkteam-b", "goal", "finances", At(5), GoalBody("Schulden op een rij", "proposed"));
  ItemVersion e = Edit(2, g, "gemeente-a", At(90), {g.version}, GoalBody("Schulden op een rij", "active"));
  json plan = MergePlan(kCase, kRegie, {g, e});
  REQUIRE(plan["items"].size() == 1);
  const json& it = plan["items"][0];
  CHECK(it["item"] == Hex(1));
  CHECK(it["version"] == Hex(2));
  CHECK(it["author"] == "gemeente-a");
  CHECK(it["created"] == TimeAt(5));
  CHECK(it["updated"] == TimeAt(90));
  CHECK(it["data"]["status"] == "active");
  CHECK(it["conflicts"].empty());
  CHECK(plan["conflicts"] == 0);
}

TEST_CASE("a tombstone deletes the item from the plan") {
  ItemVersion n = First(1, "zorg-b", "note", "", At(1), NoteBody("per abuis"));
  ItemVersion keep = First(9, "zorg-b", "note", "", At(2), NoteBody("blijft"));
  ItemVersion del = Edit(2, n, "zorg-b", At(3), {n.version}, kTombstone);
  json plan = MergePlan(kCase, kRegie, {n, keep, del});
  REQUIRE(plan["items"].size() == 1);
  CHECK(plan["items"][0]["item"] == Hex(9));
  SUBCASE("and an edit after the tombstone brings it back") {
    ItemVersion back = Edit(3, n, "gemeente-a", At(4), {del.version}, NoteBody("toch nodig"));
    json again = MergePlan(kCase, kRegie, {n, keep, del, back});
    REQUIRE(again["items"].size() == 2);
    CHECK(again["items"][0]["version"] == Hex(3));
  }
}

TEST_CASE("concurrent edits are both kept as a visible conflict with their authors and times") {
  ItemVersion a = First(1, "gemeente-a", "action", "housing", At(1),
                        {{"what", "Woning zoeken"}, {"who", {{"type", "citizen"}}}, {"status", "planned"}});
  json by_b = a.data, by_c = a.data;
  by_b["status"] = "in-progress";
  by_c["status"] = "on-hold";
  ItemVersion eb = Edit(2, a, "wijkteam-b", At(10), {a.version}, by_b);
  ItemVersion ec = Edit(3, a, "zorg-c", At(12), {a.version}, by_c);
  json plan = MergePlan(kCase, kRegie, {a, eb, ec});
  CHECK(plan["conflicts"] == 1);
  REQUIRE(plan["items"].size() == 1);
  const json& it = plan["items"][0];
  // The later one by (hlc, id) is shown; the other is listed with its author and time.
  CHECK(it["version"] == Hex(3));
  CHECK(it["author"] == "zorg-c");
  CHECK(it["updated"] == TimeAt(12));
  REQUIRE(it["conflicts"].size() == 1);
  CHECK(it["conflicts"][0] == json{{"version", Hex(2)}, {"author", "wijkteam-b"}, {"created", TimeAt(10)}, {"data", by_b}});

  SUBCASE("a later edit that supersedes both resolves it") {
    json settled = a.data;
    settled["status"] = "in-progress";
    ItemVersion r = Edit(4, a, "gemeente-a", At(20), {eb.version, ec.version}, settled);
    json after = MergePlan(kCase, kRegie, {a, eb, ec, r});
    CHECK(after["conflicts"] == 0);
    CHECK(after["items"][0]["version"] == Hex(4));
    CHECK(after["items"][0]["conflicts"].empty());
  }
  SUBCASE("an edit superseding only one of them leaves the conflict") {
    ItemVersion r = Edit(4, a, "wijkteam-b", At(20), {eb.version}, by_b);
    json after = MergePlan(kCase, kRegie, {a, eb, ec, r});
    CHECK(after["conflicts"] == 1);
    CHECK(after["items"][0]["version"] == Hex(4));
    CHECK(after["items"][0]["conflicts"][0]["version"] == Hex(3));
  }
  SUBCASE("three concurrent edits list the two that are not shown, newest first") {
    ItemVersion ed = Edit(5, a, "gemeente-a", At(11), {a.version}, a.data);
    json after = MergePlan(kCase, kRegie, {a, eb, ec, ed});
    CHECK(after["conflicts"] == 1);
    CHECK(after["items"][0]["version"] == Hex(3));
    REQUIRE(after["items"][0]["conflicts"].size() == 2);
    CHECK(after["items"][0]["conflicts"][0]["version"] == Hex(5));
    CHECK(after["items"][0]["conflicts"][1]["version"] == Hex(2));
  }
}

TEST_CASE("equal clocks are ordered by version id") {
  ItemVersion n = First(1, "zorg-b", "note", "", At(1), NoteBody("x"));
  ItemVersion lo = Edit(0x20, n, "zorg-b", At(5), {n.version}, NoteBody("lo"));
  ItemVersion hi = Edit(0x30, n, "ggd-c", At(5), {n.version}, NoteBody("hi"));
  for (auto order : {std::vector{n, lo, hi}, std::vector{hi, lo, n}}) {
    json plan = MergePlan(kCase, kRegie, order);
    CHECK(plan["items"][0]["version"] == Hex(0x30));
    CHECK(plan["items"][0]["conflicts"][0]["version"] == Hex(0x20));
  }
  SUBCASE("the counter of the clock counts before the id") {
    ItemVersion later = Edit(0x10, n, "zorg-b", At(5, 1), {n.version}, NoteBody("later"));
    CHECK(MergePlan(kCase, kRegie, {n, lo, hi, later})["items"][0]["version"] == Hex(0x10));
  }
}

TEST_CASE("a tombstone concurrent with a live edit shows the live edit and lists the tombstone") {
  ItemVersion g = First(1, "wijkteam-b", "goal", "finances", At(1), GoalBody("x"));
  ItemVersion live = Edit(2, g, "wijkteam-b", At(5), {g.version}, GoalBody("x", "achieved"));
  ItemVersion del = Edit(3, g, "gemeente-a", At(9), {g.version}, kTombstone);  // newer, still not shown
  json plan = MergePlan(kCase, kRegie, {g, live, del});
  REQUIRE(plan["items"].size() == 1);
  CHECK(plan["conflicts"] == 1);
  CHECK(plan["items"][0]["version"] == Hex(2));
  REQUIRE(plan["items"][0]["conflicts"].size() == 1);
  CHECK(plan["items"][0]["conflicts"][0]["data"] == kTombstone);
  CHECK(plan["items"][0]["conflicts"][0]["author"] == "gemeente-a");
  SUBCASE("a later tombstone superseding both deletes it") {
    ItemVersion del2 = Edit(4, g, "gemeente-a", At(20), {live.version, del.version}, kTombstone);
    CHECK(MergePlan(kCase, kRegie, {g, live, del, del2})["items"].empty());
  }
  SUBCASE("two concurrent tombstones delete it") {
    ItemVersion del2 = Edit(5, g, "wijkteam-b", At(7), {g.version}, kTombstone);
    CHECK(MergePlan(kCase, kRegie, {g, del, del2})["items"].empty());
  }
}

TEST_CASE("items are listed by kind, then creation time, then item id") {
  std::vector<ItemVersion> vs = {
      First(1, "zorg-b", "note", "", At(1), NoteBody("a")),
      First(2, "zorg-b", "goal", "housing", At(50), GoalBody("b")),
      First(3, "zorg-b", "goal", "finances", At(10), GoalBody("c")),
      First(4, "zorg-b", "household", "", At(99), {{"members", {{{"id", 1}, {"role", "adult"}}}}}),
      First(6, "zorg-b", "goal", "justice", At(10), GoalBody("d")),
      First(5, "zorg-b", "action", "justice", At(2),
            {{"what", "x"}, {"who", {{"type", "citizen"}}}, {"status", "planned"}}),
  };
  json plan = MergePlan(kCase, kRegie, vs);
  std::vector<std::string> order;
  for (const json& it : plan["items"]) order.push_back(it["item"]);
  CHECK(order == std::vector<std::string>{Hex(4), Hex(3), Hex(6), Hex(2), Hex(5), Hex(1)});
  SUBCASE("an edit does not move an item") {
    vs.push_back(Edit(7, vs[2], "zorg-b", At(200), {vs[2].version}, GoalBody("c2")));
    json after = MergePlan(kCase, kRegie, vs);
    CHECK(after["items"][1]["item"] == Hex(3));
    CHECK(after["items"][1]["version"] == Hex(7));
  }
}

TEST_CASE("the regisseur is shown as given") {
  json plan = MergePlan(kCase, RegieInput{"wijkteam-b", "", true}, {});
  CHECK(plan["regisseur"] == json{{"org", "wijkteam-b"}, {"person", ""}, {"conflict", true}});
  CHECK(plan["items"] == json::array());
  CHECK(plan["conflicts"] == 0);
  SUBCASE("a regisseur fragment does not become an item") {
    ItemVersion r = First(1, "zorg-b", "regisseur", "", At(1), {{"org", "zorg-b"}, {"person", "Mallory"}});
    CHECK(MergePlan(kCase, kRegie, {r})["items"].empty());
  }
  SUBCASE("strings that are not UTF-8 are repaired rather than thrown on") {
    json bad = MergePlan(kCase, RegieInput{"gemeente-a", "Jos\xe9", false}, {});
    CHECK_NOTHROW((void)bad.dump());
  }
}

TEST_CASE("versions that are not sound plan items are left out") {
  ItemVersion n = First(1, "zorg-b", "note", "", At(1), NoteBody("x"));
  SUBCASE("an invalid body") {
    CHECK(MergePlan(kCase, kRegie, {First(2, "zorg-b", "note", "", At(1), {{"txt", "x"}})})["items"].empty());
  }
  SUBCASE("an unknown kind or domain") {
    CHECK(MergePlan(kCase, kRegie, {First(2, "zorg-b", "task", "", At(1), NoteBody("x"))})["items"].empty());
    CHECK(MergePlan(kCase, kRegie, {First(2, "zorg-b", "note", "health", At(1), NoteBody("x"))})["items"].empty());
  }
  SUBCASE("an invalid edit supersedes nothing") {
    ItemVersion bad = Edit(2, n, "zorg-b", At(2), {n.version}, {{"text", ""}});
    json plan = MergePlan(kCase, kRegie, {n, bad});
    CHECK(plan["items"][0]["version"] == Hex(1));
  }
  SUBCASE("an edit that changes the kind or the domain") {
    ItemVersion other_kind = Edit(2, n, "zorg-b", At(2), {n.version}, {{"text", "y"}});
    other_kind.kind = "agreement";
    ItemVersion other_domain = Edit(3, n, "zorg-b", At(3), {n.version}, NoteBody("z"));
    other_domain.domain = "housing";
    json plan = MergePlan(kCase, kRegie, {n, other_kind, other_domain});
    REQUIRE(plan["items"].size() == 1);
    CHECK(plan["items"][0]["version"] == Hex(1));
    CHECK(plan["items"][0]["conflicts"].empty());
  }
  SUBCASE("a first version that supersedes, or an edit that supersedes nothing") {
    ItemVersion first_sup = First(2, "zorg-b", "note", "", At(2), NoteBody("y"));
    first_sup.supersedes = {n.version};
    ItemVersion edit_none = Edit(3, n, "zorg-b", At(3), {}, NoteBody("z"));
    json plan = MergePlan(kCase, kRegie, {n, first_sup, edit_none});
    REQUIRE(plan["items"].size() == 1);
    CHECK(plan["items"][0]["version"] == Hex(1));
  }
  SUBCASE("a supersedes link into another item is ignored") {
    ItemVersion m = First(5, "zorg-b", "note", "", At(5), NoteBody("other item"));
    ItemVersion cross = Edit(6, m, "zorg-b", At(6), {m.version, n.version}, NoteBody("edit of m"));
    json plan = MergePlan(kCase, kRegie, {n, m, cross});
    REQUIRE(plan["items"].size() == 2);
    CHECK(plan["items"][0]["version"] == Hex(1));
    CHECK(plan["items"][1]["version"] == Hex(6));
  }
  SUBCASE("a version that supersedes itself is no cycle") {
    ItemVersion self = Edit(2, n, "zorg-b", At(2), {n.version, Id(2)}, NoteBody("y"));
    CHECK(MergePlan(kCase, kRegie, {n, self})["items"][0]["version"] == Hex(2));
  }
}

TEST_CASE("duplicates count once, even when forged with other content") {
  ItemVersion n = First(1, "zorg-b", "note", "", At(1), NoteBody("x"));
  ItemVersion forged = n;
  forged.data = NoteBody("forged");
  const std::string a = Dump({n, forged, n});
  CHECK(a == Dump({forged, n}));
  CHECK(a == Dump({forged, forged, n, n}));
  CHECK(MergePlan(kCase, kRegie, {n, forged})["items"].size() == 1);
}

TEST_CASE("an item whose first version is not readable is shown from the versions that are") {
  ItemVersion g = First(1, "wijkteam-b", "goal", "finances", At(1), GoalBody("x"));
  ItemVersion e = Edit(2, g, "gemeente-a", At(7), {g.version}, GoalBody("y"));
  ItemVersion f = Edit(3, g, "zorg-c", At(9), {e.version}, GoalBody("z"));
  json plan = MergePlan(kCase, kRegie, {f, e});
  REQUIRE(plan["items"].size() == 1);
  CHECK(plan["items"][0]["item"] == Hex(1));
  CHECK(plan["items"][0]["version"] == Hex(3));
  CHECK(plan["items"][0]["created"] == TimeAt(7));  // the earliest version present
  CHECK(MergePlan(kCase, kRegie, {f, e, g})["items"][0]["created"] == TimeAt(1));
}

TEST_CASE("an edit that arrives before the version it supersedes gives the same plan in the end") {
  ItemVersion a = First(1, "wijkteam-b", "note", "", At(1), NoteBody("a"));
  ItemVersion b = Edit(2, a, "gemeente-a", At(2), {a.version}, NoteBody("b"));
  ItemVersion c = Edit(3, a, "zorg-c", At(3), {b.version}, NoteBody("c"));
  const std::string in_order = Dump({a, b, c});
  // Replica 1 receives c, then a, then b; it shows what the set in hand says at each step.
  json only_c = MergePlan(kCase, kRegie, {c});
  CHECK(only_c["items"][0]["version"] == Hex(3));
  CHECK(only_c["items"][0]["created"] == TimeAt(3));
  json c_and_a = MergePlan(kCase, kRegie, {c, a});
  // Without b nothing says c descends from a: a transient conflict until b arrives.
  CHECK(c_and_a["items"][0]["version"] == Hex(3));
  CHECK(c_and_a["items"][0]["conflicts"][0]["version"] == Hex(1));
  CHECK(Dump({c, a, b}) == in_order);
  CHECK(Dump({c, b, a}) == in_order);
  CHECK(Dump({b, c, a, c}) == in_order);
}

TEST_CASE("times are ISO-8601 UTC with milliseconds") {
  CHECK(IsoTimeMillis(0) == "1970-01-01T00:00:00.000Z");
  CHECK(IsoTimeMillis(1'700'000'000'123) == "2023-11-14T22:13:20.123Z");
  CHECK(IsoTimeMillis(1'709'164'800'999) == "2024-02-29T00:00:00.999Z");
  CHECK(IsoTimeMillis(951'868'799'999) == "2000-02-29T23:59:59.999Z");
  // The hlc's counter does not show.
  ItemVersion n = First(1, "zorg-b", "note", "", MakeHlc(1'700'000'000'123, 7), NoteBody("x"));
  CHECK(MergePlan(kCase, kRegie, {n})["items"][0]["created"] == "2023-11-14T22:13:20.123Z");
}

// ---------------------------------------------------------------------------
// Property tests: random histories of three organisations

const std::vector<std::string> kOrgs = {"gemeente-a", "wijkteam-b", "zorg-c"};

std::string Pick(std::mt19937_64& rng, std::initializer_list<const char*> options) {
  return *(options.begin() + rng() % options.size());
}

std::string RandomDate(std::mt19937_64& rng) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", 2024 + static_cast<int>(rng() % 3), 1 + static_cast<int>(rng() % 12),
                1 + static_cast<int>(rng() % 28));
  return buf;
}

json RandomParty(std::mt19937_64& rng) {
  switch (rng() % 3) {
    case 0: return {{"type", "organisation"}, {"org", kOrgs[rng() % kOrgs.size()]}};
    case 1: return rng() % 2 ? json{{"type", "citizen"}} : json{{"type", "citizen"}, {"member", 1 + rng() % 4}};
    default: return {{"type", "network"}, {"relation", Pick(rng, {"family", "friend", "neighbour", "volunteer"})}};
  }
}

// A valid body of `kind` with random content; `n` makes texts distinct.
json RandomBody(std::mt19937_64& rng, const std::string& kind, size_t n) {
  const std::string text = "tekst " + std::to_string(n) + (rng() % 2 ? " \xc3\xa9\xc3\xa9n" : "");
  if (kind == "household") {
    json members = json::array();
    for (int i = 1; i <= 1 + static_cast<int>(rng() % 4); ++i) {
      json m = {{"id", i}, {"role", Pick(rng, {"adult", "parent", "partner", "child", "other"})}};
      if (rng() % 2) m["year_of_birth"] = 1950 + rng() % 70;
      members.push_back(m);
    }
    return {{"members", members}};
  }
  if (kind == "goal") {
    json g = {{"description", text}, {"status", Pick(rng, {"proposed", "active", "achieved", "not-achieved", "cancelled"})}};
    if (rng() % 2) g["target_date"] = RandomDate(rng);
    return g;
  }
  if (kind == "action") {
    json a = {{"what", text}, {"who", RandomParty(rng)},
              {"status", Pick(rng, {"planned", "in-progress", "on-hold", "completed", "cancelled"})}};
    if (rng() % 2) a["due_date"] = RandomDate(rng);
    return a;
  }
  if (kind == "agreement") return {{"text", text}, {"parties", {RandomParty(rng), RandomParty(rng)}}};
  if (kind == "evaluation") {
    json e = {{"date", RandomDate(rng)}, {"reviewed", text}};
    if (rng() % 2) e["outcome"] = "uitkomst " + std::to_string(n);
    return e;
  }
  if (kind == "signal") return {{"raised_by", kOrgs[rng() % 3]}, {"date", RandomDate(rng)}, {"contact", "team " + std::to_string(n)}};
  if (kind == "handover")
    return {{"from", kOrgs[0]}, {"to", kOrgs[1 + rng() % 2]}, {"date", RandomDate(rng)},
            {"status", Pick(rng, {"planned", "completed", "cancelled"})}};
  return {{"text", text}};
}

// Three organisations writing, editing and deleting items, each from what it
// knows; they learn of each other's versions only when they sync. Version
// ids are random, clocks are hybrid logical clocks with occasional ties.
class History {
 public:
  explicit History(uint64_t seed) : rng_(seed), known_(kOrgs.size()), clock_(kOrgs.size(), At(0)) {}

  std::mt19937_64& rng() { return rng_; }
  const std::vector<ItemVersion>& all() const { return all_; }
  std::vector<ItemVersion> Known(size_t org) const {
    std::vector<ItemVersion> out;
    for (size_t i : known_[org]) out.push_back(all_[i]);
    return out;
  }

  // Whether orgs in different groups may sync (false while partitioned).
  std::vector<int> group = {0, 0, 0};

  void Step() {
    const size_t org = rng_() % kOrgs.size();
    switch (rng_() % 20) {
      case 0: case 1: case 2: case 3: case 4: Create(org); break;
      case 5: case 6: case 7: case 8: case 9: case 10: EditSome(org, false); break;
      case 11: case 12: Concurrent(org, (org + 1 + rng_() % 2) % kOrgs.size()); break;
      case 13: case 14: EditSome(org, true); break;
      default: Sync(rng_() % kOrgs.size(), org); break;
    }
  }

  void Create(size_t org) {
    const std::string kind = kItemKinds[rng_() % 8];
    std::string domain;
    if (DomainRuleOf(kind) == DomainRule::kRequired || (DomainRuleOf(kind) == DomainRule::kOptional && rng_() % 2))
      domain = kLifeDomains[rng_() % std::size(kLifeDomains)];
    ItemVersion v;
    v.kind = kind;
    v.domain = domain;
    v.data = RandomBody(rng_, kind, all_.size());
    Write(org, std::move(v), Tick(org), {});
  }

  // Edits a random item `org` knows.
  void EditSome(size_t org, bool tombstone) {
    auto item = RandomKnownItem(org);
    if (!item) return;
    EditItem(org, *item, tombstone, Tick(org));
  }

  // Two organisations edit the same item without seeing each other's edit.
  void Concurrent(size_t a, size_t b) {
    if (group[a] != group[b]) return;
    auto item = RandomKnownItem(a);
    if (!item) return;
    for (size_t i : known_[a])
      if (all_[i].item == *item) Learn(b, i);
    HlcTimestamp ta = Tick(a), tb = Tick(b);
    if (rng_() % 3 == 0) ta = tb = std::max(ta, tb);  // a clock tie: the version id decides
    EditItem(a, *item, rng_() % 6 == 0, ta);
    EditItem(b, *item, rng_() % 6 == 0, tb);
  }

  // `to` learns a random part of what `from` knows.
  void Sync(size_t from, size_t to) {
    if (group[from] != group[to]) return;
    for (size_t i : std::vector<size_t>(known_[from].begin(), known_[from].end()))
      if (rng_() % 3 != 0) Learn(to, i);
  }

  void SyncAll() {
    for (size_t o = 0; o < kOrgs.size(); ++o)
      for (size_t i = 0; i < all_.size(); ++i) Learn(o, i);
  }

  // The heads of `item` among what `org` knows.
  std::vector<FragmentId> Heads(size_t org, const FragmentId& item) const {
    std::set<FragmentId> superseded;
    for (size_t i : known_[org])
      if (all_[i].item == item) superseded.insert(all_[i].supersedes.begin(), all_[i].supersedes.end());
    std::vector<FragmentId> heads;
    for (size_t i : known_[org])
      if (all_[i].item == item && !superseded.count(all_[i].version)) heads.push_back(all_[i].version);
    return heads;
  }

  // Edits `item` as `org` sees it: supersedes every head it sees, or, a fifth
  // of the time unless `all_heads`, only one of them.
  void EditItem(size_t org, const FragmentId& item, bool tombstone, HlcTimestamp hlc, bool all_heads = false) {
    std::vector<FragmentId> heads = Heads(org, item);
    if (heads.empty()) return;
    const ItemVersion* base = nullptr;
    for (size_t i : known_[org])
      if (all_[i].item == item) base = &all_[i];
    if (!all_heads && rng_() % 5 == 0) heads = {heads[rng_() % heads.size()]};
    ItemVersion v;
    v.item = item;
    v.kind = base->kind;
    v.domain = base->domain;
    v.data = tombstone ? kTombstone : RandomBody(rng_, v.kind, all_.size());
    Write(org, std::move(v), hlc, std::move(heads));
  }

 private:
  std::optional<FragmentId> RandomKnownItem(size_t org) {
    if (known_[org].empty()) return std::nullopt;
    auto it = known_[org].begin();
    std::advance(it, rng_() % known_[org].size());
    return all_[*it].item;
  }

  HlcTimestamp Tick(size_t org) {
    HlcTimestamp t = clock_[org] + 1;
    if (rng_() % 4 != 0) t = MakeHlc(HlcMillis(t) + 1 + rng_() % 5000, 0);
    clock_[org] = t;
    return t;
  }

  void Learn(size_t org, size_t i) {
    known_[org].insert(i);
    clock_[org] = std::max(clock_[org], all_[i].hlc);
  }

  void Write(size_t org, ItemVersion v, HlcTimestamp hlc, std::vector<FragmentId> supersedes) {
    for (auto& b : v.version) b = static_cast<uint8_t>(rng_());
    if (supersedes.empty()) v.item = v.version;
    v.author = kOrgs[org];
    v.hlc = hlc;
    v.supersedes = std::move(supersedes);
    REQUIRE(ValidateFragmentItem(v.kind, v.domain, v.data).ok());
    all_.push_back(std::move(v));
    Learn(org, all_.size() - 1);
  }

  std::mt19937_64 rng_;
  std::vector<ItemVersion> all_;
  std::vector<std::set<size_t>> known_;
  std::vector<HlcTimestamp> clock_;
};

RegieInput RandomRegie(std::mt19937_64& rng) {
  return RegieInput{kOrgs[rng() % 3], rng() % 2 ? "" : "regisseur " + std::to_string(rng() % 10), rng() % 4 == 0};
}

// `vs` shuffled, with up to half of them again.
std::vector<ItemVersion> Delivery(std::vector<ItemVersion> vs, std::mt19937_64& rng) {
  const size_t n = vs.size();
  for (size_t k = n == 0 ? 0 : rng() % (n / 2 + 1); k > 0; --k) vs.push_back(vs[rng() % n]);
  std::shuffle(vs.begin(), vs.end(), rng);
  return vs;
}

// What the plan must show, computed the obvious way: per item, the versions
// no other version of the item supersedes; shown the newest live one.
struct Expected {
  std::string version;
  size_t conflicts = 0;
};
std::map<std::string, Expected> Oracle(const std::vector<ItemVersion>& vs) {
  std::map<FragmentId, std::vector<const ItemVersion*>> items;
  for (const ItemVersion& v : vs) items[v.item].push_back(&v);
  std::map<std::string, Expected> out;
  for (auto& [item, versions] : items) {
    std::vector<const ItemVersion*> heads;
    for (const ItemVersion* v : versions) {
      bool superseded = false;
      for (const ItemVersion* w : versions)
        for (const FragmentId& p : w->supersedes) superseded |= p == v->version;
      if (!superseded) heads.push_back(v);
    }
    const ItemVersion* shown = nullptr;
    for (const ItemVersion* h : heads)
      if (!IsTombstone(h->data) && (!shown || std::tie(h->hlc, h->version) > std::tie(shown->hlc, shown->version)))
        shown = h;
    if (shown) out[ToHex(item)] = Expected{ToHex(shown->version), heads.size() - 1};
  }
  return out;
}

void CheckAgainstOracle(const json& plan, const std::vector<ItemVersion>& vs) {
  std::map<std::string, Expected> expected = Oracle(vs);
  REQUIRE(plan["items"].size() == expected.size());
  size_t in_conflict = 0;
  for (const json& it : plan["items"]) {
    auto e = expected.find(it["item"].get<std::string>());
    REQUIRE(e != expected.end());
    CHECK(it["version"] == e->second.version);
    CHECK(it["conflicts"].size() == e->second.conflicts);
    in_conflict += e->second.conflicts > 0;
  }
  CHECK(plan["conflicts"] == in_conflict);
}

TEST_CASE("the plan is the same bytes for the same set of versions in any order and with duplicates") {
  size_t conflicts = 0, deleted = 0, versions = 0;
  for (uint64_t seed : {1, 2, 3, 4, 5, 6, 7, 8}) {
    CAPTURE(seed);
    History h(seed);
    for (int i = 0; i < 150; ++i) h.Step();
    const RegieInput regie = RandomRegie(h.rng());
    const json reference = MergePlan(kCase, regie, h.all());
    CheckAgainstOracle(reference, h.all());
    const std::string bytes = reference.dump();
    for (int p = 0; p < 250; ++p) {
      CAPTURE(p);
      REQUIRE(MergePlan(kCase, regie, Delivery(h.all(), h.rng())).dump() == bytes);
    }
    conflicts += reference["conflicts"].get<size_t>();
    std::set<FragmentId> items;
    for (const ItemVersion& v : h.all()) items.insert(v.item);
    deleted += items.size() - Oracle(h.all()).size();
    versions += h.all().size();
  }
  // The histories exercised what the property is about.
  CHECK(conflicts > 5);
  CHECK(deleted > 0);
  CHECK(versions > 400);
}

TEST_CASE("replicas that saw different parts in different orders agree once a partition heals") {
  for (const auto& groups : {std::vector<int>{0, 1, 2}, std::vector<int>{0, 0, 1}}) {
    size_t differed = 0, healed_conflicts = 0;
    for (uint64_t seed : {11, 12, 13, 14, 15, 16}) {
      CAPTURE(seed);
      CAPTURE(groups[1]);
      History h(seed);
      for (int i = 0; i < 40; ++i) h.Step();
      h.SyncAll();
      h.group = groups;
      for (int i = 0; i < 80; ++i) h.Step();
      const RegieInput regie = RandomRegie(h.rng());

      // While partitioned each replica merges what it has, received in its own order.
      std::vector<std::vector<ItemVersion>> received;
      std::set<std::string> partitioned_views;
      for (size_t r = 0; r < kOrgs.size(); ++r) {
        received.push_back(Delivery(h.Known(r), h.rng()));
        partitioned_views.insert(MergePlan(kCase, regie, received[r]).dump());
      }
      differed += partitioned_views.size() > 1;

      // Healed: each receives the union on top of what it had, in its own order.
      std::set<std::string> healed;
      for (size_t r = 0; r < kOrgs.size(); ++r) {
        std::vector<ItemVersion> more = Delivery(h.all(), h.rng());
        received[r].insert(received[r].end(), more.begin(), more.end());
        healed.insert(MergePlan(kCase, regie, received[r]).dump());
      }
      REQUIRE(healed.size() == 1);
      const json plan = json::parse(*healed.begin());
      CheckAgainstOracle(plan, h.all());
      healed_conflicts += plan["conflicts"].get<size_t>();

      // One organisation, now seeing everything, settles each conflict; all agree again.
      h.group = {0, 0, 0};
      h.SyncAll();
      for (const json& it : plan["items"]) {
        if (it["conflicts"].empty()) continue;
        FragmentId item;
        REQUIRE(FromHex(it["item"].get<std::string>(), item));
        h.EditItem(0, item, false, MakeHlc(kT0 + 10'000'000'000ull, 0), /*all_heads=*/true);
      }
      h.SyncAll();
      std::set<std::string> settled;
      for (size_t r = 0; r < kOrgs.size(); ++r) settled.insert(MergePlan(kCase, regie, Delivery(h.Known(r), h.rng())).dump());
      REQUIRE(settled.size() == 1);
      const json after = json::parse(*settled.begin());
      CHECK(after["conflicts"] == 0);
      CheckAgainstOracle(after, h.all());
    }
    CHECK(differed > 0);
    CHECK(healed_conflicts > 0);
  }
}

TEST_CASE("a replica that receives edits before the versions they supersede ends with the same plan") {
  for (uint64_t seed : {21, 22, 23, 24}) {
    CAPTURE(seed);
    History h(seed);
    for (int i = 0; i < 120; ++i) h.Step();
    const std::string reference = Dump(h.all());
    // Newest first: every edit arrives before what it supersedes.
    std::vector<ItemVersion> newest_first = h.all();
    std::reverse(newest_first.begin(), newest_first.end());
    std::vector<ItemVersion> received;
    std::string last;
    for (const ItemVersion& v : newest_first) {
      received.push_back(v);
      last = Dump(received);  // the replica renders its plan after every arrival
    }
    CHECK(last == reference);
    // And item by item: each item's edits first, then its first version last.
    std::vector<ItemVersion> by_item = h.all();
    std::stable_sort(by_item.begin(), by_item.end(), [](const ItemVersion& a, const ItemVersion& b) {
      return (a.item == a.version) < (b.item == b.version);
    });
    CHECK(Dump(by_item) == reference);
  }
}

}  // namespace
}  // namespace kring
