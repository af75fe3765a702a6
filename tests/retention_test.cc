// Unit tests of retention (issue 16): the ISO 8601 period parser, calendar arithmetic, which rule applies, and when each held record is due.
#include "consent/retention.h"

#include <doctest/doctest.h>

#include <string>

#include "protocol/period.h"

namespace kring {
namespace {

constexpr int64_t kDay = 86'400'000;
// 2026-01-15T10:00:00Z
constexpr int64_t kJan15 = 1'768'471'200'000;

Period P(const char* text) {
  auto p = ParsePeriod(text);
  INFO(text << ": " << p.status().ToString());
  REQUIRE(p.ok());
  return *p;
}

std::string Refusal(const char* text) {
  auto p = ParsePeriod(text);
  return p.ok() ? std::string("accepted") : p.status().message();
}

TEST_CASE("issue 16: periods parse strictly as ISO 8601 durations and print back canonically") {
  CHECK(P("P15Y") == Period{.years = 15});
  CHECK(P("P6W") == Period{.weeks = 6});
  CHECK(P("PT10S") == Period{.seconds = 10});
  CHECK(P("P1Y2M3DT4H5M6S") == Period{.years = 1, .months = 2, .days = 3, .hours = 4, .minutes = 5, .seconds = 6});
  CHECK(P("P1M") == Period{.months = 1});
  CHECK(P("PT1M") == Period{.minutes = 1});
  for (const char* t : {"P15Y", "P6W", "PT10S", "P1Y2M3DT4H5M6S", "P20Y"}) CHECK(FormatPeriod(P(t)) == t);
  CHECK(FormatPeriod(P("P0D")) == "P0D");

  CHECK(Refusal("") .find("empty") != std::string::npos);
  CHECK(Refusal("15Y").find("does not start with P") != std::string::npos);
  CHECK(Refusal("P").find("names no amount") != std::string::npos);
  CHECK(Refusal("P15").find("without a unit") != std::string::npos);
  CHECK(Refusal("P1.5Y").find("fraction") != std::string::npos);
  CHECK(Refusal("P1D2Y").find("out of place") != std::string::npos);  // units in order
  CHECK(Refusal("P1Y1Y").find("out of place") != std::string::npos);  // each once
  CHECK(Refusal("P1H").find("out of place") != std::string::npos);    // hours only after T
  CHECK(Refusal("PT1Y").find("out of place") != std::string::npos);
  CHECK(Refusal("PT").find("T without") != std::string::npos);
  CHECK(Refusal("P1YT").find("T without") != std::string::npos);
  CHECK(Refusal("PTT1S").find("second T") != std::string::npos);
  CHECK(Refusal("P-1Y").find("where a number belongs") != std::string::npos);
  CHECK(Refusal("p15y").find("does not start with P") != std::string::npos);
  CHECK(Refusal("P1234567D").find("more than 6 digits") != std::string::npos);
  CHECK(Refusal("P201Y").find("longer than 200 years") != std::string::npos);
  CHECK(Refusal("P15Y ").find("where a number belongs") != std::string::npos);
  CHECK(Refusal("P0000000000000000000000000000000000000001Y").find("longer than 40") != std::string::npos);
  // Every prefix of a valid period either parses or is refused; none crashes.
  std::string full = "P1Y2M3W4DT5H6M7S";
  for (size_t n = 0; n <= full.size(); ++n) (void)ParsePeriod(full.substr(0, n));
}

TEST_CASE("issue 16: years and months add on the calendar, clamped to the month's end; the rest adds as fixed lengths") {
  CHECK(AddPeriod(kJan15, P("P15Y")) == kJan15 + (15 * 365 + 4) * kDay);  // 2028, 2032, 2036, 2040 are leap years
  // 2024-02-29 + 1 year = 2025-02-28; + 4 years = 2028-02-29.
  const int64_t feb29 = 1'709'164'800'000;  // 2024-02-29T00:00:00Z
  CHECK(AddPeriod(feb29, P("P1Y")) == feb29 + 365 * kDay);
  CHECK(AddPeriod(feb29, P("P4Y")) == feb29 + (4 * 365 + 1) * kDay);
  // 2026-01-31 + 1 month = 2026-02-28.
  const int64_t jan31 = kJan15 + 16 * kDay;
  CHECK(AddPeriod(jan31, P("P1M")) == jan31 + 28 * kDay);
  CHECK(AddPeriod(kJan15, P("P6W")) == kJan15 + 42 * kDay);
  CHECK(AddPeriod(kJan15, P("PT10S")) == kJan15 + 10'000);
  CHECK(LongerThan(P("P20Y"), P("P15Y"), kJan15));
  CHECK_FALSE(LongerThan(P("P12M"), P("P1Y"), kJan15));
}

TEST_CASE("issue 16: the rule for a case: the close reason's rule, else the longest matching basis, else the default") {
  RetentionRules r;
  r.fallback.period = P("P10Y");
  r.rules = {{"Wmo 2015", P("P15Y"), false}, {"Jeugdwet", P("P20Y"), true}, {"withdrawn-request", P("P6W"), false}};
  CHECK(RuleForCase(r, "goals-reached", {"Wmo 2015 art. 5.1.1"}, kJan15).name == "Wmo 2015");
  CHECK(RuleForCase(r, "goals-reached", {"wmo 2015 art. 2.3.5"}, kJan15).name == "Wmo 2015");  // case-insensitive
  CHECK(RuleForCase(r, "moved", {"Wmo 2015", "Jeugdwet art. 7.3.8"}, kJan15).name == "Jeugdwet");
  CHECK(RuleForCase(r, "withdrawn-request", {"Jeugdwet"}, kJan15).name == "withdrawn-request");
  CHECK(RuleForCase(r, "declined", {"Participatiewet"}, kJan15).name == "default");
  CHECK(RuleForCase(r, "declined", {}, kJan15).period == P("P10Y"));
}

TEST_CASE("issue 16: a legal duty to keep is a rule marked so that matches a basis, or a default marked so") {
  RetentionRules r;
  r.rules = {{"Wmo 2015", P("P15Y"), false}, {"Jeugdwet", P("P20Y"), true}};
  CHECK(LegalDutyFor(r, {"Wmo 2015 art. 2.3.5"}, kJan15) == nullptr);
  const RetentionRule* d = LegalDutyFor(r, {"Wmo 2015", "jeugdwet art. 7.3.8"}, kJan15);
  REQUIRE(d != nullptr);
  CHECK(d->name == "Jeugdwet");
  r.fallback.legal_duty = true;
  REQUIRE(LegalDutyFor(r, {"Participatiewet"}, kJan15) != nullptr);
  CHECK(LegalDutyFor(r, {"Participatiewet"}, kJan15)->name == "default");
}

// A case opened by gemeente with consent for wijkteam, closed by gemeente.
struct ClosedCase {
  NodeIdentity gemeente = NodeIdentity::Generate("gemeente", "Gemeente");
  CaseId case_id{};
  std::vector<ControlRecord> records;
  int64_t closed_ms = kJan15;

  explicit ClosedCase(const char* retention = "P15Y", bool close = true) {
    CaseGenesis g;
    g.nonce.fill(3);
    g.h.case_id = case_id = CaseIdFor("gemeente", g.nonce);
    g.h.author.v = "gemeente";
    g.h.hlc = MakeHlc(kJan15 - 10 * kDay, 0);
    Add(g);
    ConsentGrant c;
    c.h.hlc = MakeHlc(kJan15 - 9 * kDay, 0);
    c.grantee.v = "wijkteam";
    c.domains.v.push_back({"*"});
    c.purpose.v = "ondersteuning";
    c.basis.v = "Wmo 2015 art. 2.3.2";
    c.given_by.v = "burger";
    c.evidence_reference.v = "formulier-1";
    Add(c);
    if (close) {
      CaseClose x;
      x.h.hlc = MakeHlc(closed_ms, 0);
      x.reason.v = "goals-reached";
      x.rule.v = "Wmo 2015";
      x.retention.v = retention;
      Add(x);
    }
  }
  template <class T>
  void Add(T body) {
    body.h.case_id = case_id;
    body.h.author.v = "gemeente";
    if (!records.empty()) body.h.parents.v = {records.back().Id()};
    auto r = SignControl(std::move(body), gemeente);
    REQUIRE(r.ok());
    records.push_back(*r);
  }
  CaseState State() const { return CaseState::Build(case_id, records); }
  std::vector<RetainedRecord> Held(const std::vector<RetainedRecord>& fragments) const {
    std::vector<RetainedRecord> out = fragments;
    for (const ControlRecord& r : records) out.push_back({r.Id(), r.type(), "gemeente", kJan15, {}});
    return out;
  }
};

RetainedRecord Fragment(uint8_t tag, const char* author) {
  RetainedRecord r;
  r.id[0] = tag;
  r.type = RecordType::kFragment;
  r.author = author;
  r.time_ms = kJan15 - kDay;
  return r;
}

bool Has(const std::vector<RecordId>& v, const RecordId& id) { return std::find(v.begin(), v.end(), id) != v.end(); }

TEST_CASE("issue 16: a case closed under Wmo rules is due 15 years after the close on the author's node, not a day earlier") {
  ClosedCase c;
  RetentionRules wmo;
  wmo.fallback.period = P("P15Y");
  auto held = c.Held({Fragment(1, "gemeente"), Fragment(2, "wijkteam")});
  const int64_t end = AddPeriod(kJan15, P("P15Y"));
  RetentionPlan before = PlanRetention(c.State(), "gemeente", wmo, held, end - kDay);
  CHECK(before.due.empty());
  CHECK_FALSE(before.case_due);
  CHECK(before.next_ms == end);
  RetentionPlan at = PlanRetention(c.State(), "gemeente", wmo, held, end);
  CHECK(at.case_due);
  CHECK(at.due.size() == held.size());
}

TEST_CASE("issue 16: a copy holder keeps the author's fragments at most until the author's rule ends, its own by its own rule") {
  ClosedCase c;  // gemeente's rule: P15Y
  auto held = c.Held({Fragment(1, "gemeente"), Fragment(2, "wijkteam")});
  const int64_t y5 = AddPeriod(kJan15, P("P5Y")), y15 = AddPeriod(kJan15, P("P15Y")), y20 = AddPeriod(kJan15, P("P20Y"));

  SUBCASE("a shorter rule sweeps earlier: everything at 5 years") {
    RetentionRules shorter;
    shorter.fallback.period = P("P5Y");
    CHECK(PlanRetention(c.State(), "wijkteam", shorter, held, y5 - 1).due.empty());
    RetentionPlan p = PlanRetention(c.State(), "wijkteam", shorter, held, y5);
    CHECK(p.case_due);
  }
  SUBCASE("a longer rule: the author's fragment goes at 15 years, the holder's own and the case at 20") {
    RetentionRules longer;
    longer.rules = {{"Wmo 2015", P("P20Y"), false}};  // matches wijkteam's consent basis
    RetentionPlan p = PlanRetention(c.State(), "wijkteam", longer, held, y15);
    CHECK(Has(p.due, Fragment(1, "gemeente").id));
    CHECK_FALSE(Has(p.due, Fragment(2, "wijkteam").id));
    CHECK_FALSE(p.case_due);
    CHECK(p.next_ms == y20);
    CHECK(p.case_end_ms == y20);
    CHECK(PlanRetention(c.State(), "wijkteam", longer, held, y20).case_due);
  }
}

TEST_CASE("issue 16: nothing but access-log copies is due in an open or reopened case; those follow their own period") {
  ClosedCase open("P15Y", false);
  RetentionRules rules;
  rules.fallback.period = P("PT1S");
  RetainedRecord access;
  access.id[0] = 9;
  access.type = RecordType::kAccessRecord;
  access.author = "wijkteam";
  access.time_ms = kJan15;
  auto held = open.Held({Fragment(1, "gemeente"), access});
  RetentionPlan p = PlanRetention(open.State(), "gemeente", rules, held, AddPeriod(kJan15, P("P5Y")) - 1);
  CHECK(p.due.empty());
  CHECK(p.next_ms == AddPeriod(kJan15, P("P5Y")));
  RetentionPlan later = PlanRetention(open.State(), "gemeente", rules, held, AddPeriod(kJan15, P("P5Y")));
  CHECK(later.due == std::vector<RecordId>{access.id});
  CHECK_FALSE(later.case_due);
}

}  // namespace
}  // namespace kring
