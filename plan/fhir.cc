// Maps a plan view onto a FHIR R4 CarePlan with contained Group, CareTeam and Goal resources.
#include "plan/fhir.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <string>

#include "protocol/records.h"

namespace kring {

namespace {

using nlohmann::json;

constexpr const char* kHouseholdRef = "#household";
constexpr const char* kCareTeamRef = "#care-team";

// A string member of `j`, or "" when absent or not a string.
std::string Str(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const json& Member(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it != j.end() ? *it : kNull;
}

std::string LifeDomainDisplay(const std::string& slug) {
  static const std::map<std::string, std::string> kDisplay = {
      {"finances", "Finances"},
      {"work-education", "Work and education"},
      {"daily-activities", "Daily activities"},
      {"housing", "Housing"},
      {"domestic-relations", "Domestic relations"},
      {"mental-health", "Mental health"},
      {"physical-health", "Physical health"},
      {"substance-use", "Substance use"},
      {"basic-adl", "Basic activities of daily living"},
      {"instrumental-adl", "Instrumental activities of daily living"},
      {"social-network", "Social network"},
      {"participation", "Social participation"},
      {"justice", "Justice"}};
  auto it = kDisplay.find(slug);
  return it == kDisplay.end() ? slug : it->second;
}

json LifeDomainConcept(const std::string& slug) {
  return {{"coding", json::array({{{"system", kFhirLifeDomainSystem}, {"code", slug}, {"display", LifeDomainDisplay(slug)}}})},
          {"text", LifeDomainDisplay(slug)}};
}

json KindConcept(const std::string& kind) {
  std::string display = kind;
  if (!display.empty()) display[0] = static_cast<char>(display[0] - 'a' + 'A');
  return {{"coding", json::array({{{"system", kFhirItemKindSystem}, {"code", kind}, {"display", display}}})}};
}

// Goal.lifecycleStatus and Goal.achievementStatus for our goal status.
void MapGoalStatus(const std::string& status, json* goal) {
  auto achievement = [&](const char* code, const char* display) {
    (*goal)["achievementStatus"] = {
        {"coding", json::array({{{"system", kFhirGoalAchievementSystem}, {"code", code}, {"display", display}}})}};
  };
  if (status == "achieved") {
    (*goal)["lifecycleStatus"] = "completed";
    achievement("achieved", "Achieved");
  } else if (status == "not-achieved") {
    (*goal)["lifecycleStatus"] = "completed";
    achievement("not-achieved", "Not Achieved");
  } else if (status == "proposed" || status == "active" || status == "cancelled") {
    (*goal)["lifecycleStatus"] = status;
  } else {
    (*goal)["lifecycleStatus"] = "proposed";  // not reachable from a valid view
  }
}

// CarePlan.activity.detail.status for an action status.
std::string ActionActivityStatus(const std::string& s) {
  if (s == "planned") return "not-started";
  if (s == "in-progress" || s == "on-hold" || s == "completed" || s == "cancelled") return s;
  return "unknown";
}

std::string HandoverActivityStatus(const std::string& s) {
  if (s == "planned") return "scheduled";
  if (s == "completed" || s == "cancelled") return s;
  return "unknown";
}

// How a party (action's who, agreement's parties) reads in a display string.
std::string PartyDisplay(const json& p) {
  const std::string type = Str(p, "type");
  if (type == "organisation") return Str(p, "org");
  if (type == "citizen") {
    const json& m = Member(p, "member");
    return m.is_number_integer() ? "household member " + std::to_string(m.get<int64_t>()) : "the citizen";
  }
  if (type == "network") return "network (" + Str(p, "relation") + ")";
  return "unknown";
}

json Reference(const std::string& display) { return {{"display", display.empty() ? "unknown" : display}}; }

}  // namespace

json ToFhirCarePlan(const CaseId& case_id, const json& plan_view) {
  const json& items_in = Member(plan_view, "items");
  const json empty = json::array();
  const json& items = items_in.is_array() ? items_in : empty;
  const json& regie = Member(plan_view, "regisseur");

  // The goals first: activities refer to them, and only to goals contained here.
  json goals = json::array();
  std::set<std::string> goal_ids;
  for (const json& it : items) {
    if (Str(it, "kind") != "goal") continue;
    const json& d = Member(it, "data");
    const std::string id = Str(it, "item");
    if (id.empty()) continue;
    json g = {{"resourceType", "Goal"},
              {"id", id},
              {"description", {{"text", Str(d, "description").empty() ? "goal" : Str(d, "description")}}},
              {"subject", {{"reference", kHouseholdRef}}}};
    MapGoalStatus(Str(d, "status"), &g);
    if (!Str(it, "domain").empty()) g["category"] = json::array({LifeDomainConcept(Str(it, "domain"))});
    if (!Str(d, "target_date").empty()) g["target"] = json::array({{{"dueDate", Str(d, "target_date")}}});
    goals.push_back(std::move(g));
    goal_ids.insert(id);
  }
  auto goal_refs = [&](const std::vector<std::string>& ids) {
    json refs = json::array();
    for (const std::string& id : ids)
      if (goal_ids.count(id)) refs.push_back({{"reference", "#" + id}});
    return refs;
  };

  json activities = json::array();
  json notes = json::array();
  std::set<std::string> domains;  // sorted below by kLifeDomains order
  std::set<std::string> partners;
  const json* household = nullptr;
  for (const json& it : items) {
    const std::string kind = Str(it, "kind");
    const std::string domain = Str(it, "domain");
    const std::string author = Str(it, "author");
    const json& d = Member(it, "data");
    if (!domain.empty()) domains.insert(domain);
    if (!author.empty()) partners.insert(author);
    for (const json& c : Member(it, "conflicts").is_array() ? Member(it, "conflicts") : empty)
      if (!Str(c, "author").empty()) partners.insert(Str(c, "author"));

    if (kind == "household") {
      if (!household) household = &it;
    } else if (kind == "action") {
      json detail = {{"code", KindConcept(kind)},
                     {"status", ActionActivityStatus(Str(d, "status"))},
                     {"description", Str(d, "what").empty() ? "action" : Str(d, "what")},
                     {"performer", json::array({Reference(PartyDisplay(Member(d, "who")))})}};
      if (!domain.empty()) detail["reasonCode"] = json::array({LifeDomainConcept(domain)});
      if (!Str(d, "due_date").empty()) detail["scheduledPeriod"] = {{"end", Str(d, "due_date")}};
      json refs = goal_refs({Str(d, "goal")});
      if (!refs.empty()) detail["goal"] = std::move(refs);
      activities.push_back({{"detail", std::move(detail)}});
    } else if (kind == "evaluation") {
      const std::string outcome = Str(d, "outcome");
      json detail = {{"code", KindConcept(kind)},
                     {"status", outcome.empty() ? "scheduled" : "completed"},
                     {"description", "Evaluation: " + Str(d, "reviewed")},
                     {"performer", json::array({Reference(author)})}};
      if (!Str(d, "date").empty()) detail["scheduledPeriod"] = {{"start", Str(d, "date")}};
      if (!domain.empty()) detail["reasonCode"] = json::array({LifeDomainConcept(domain)});
      std::vector<std::string> ids;
      for (const json& g : Member(d, "goals").is_array() ? Member(d, "goals") : empty)
        if (g.is_string()) ids.push_back(g.get<std::string>());
      json refs = goal_refs(ids);
      if (!refs.empty()) detail["goal"] = std::move(refs);
      json activity = {{"detail", std::move(detail)}};
      if (!outcome.empty()) activity["outcomeCodeableConcept"] = json::array({{{"text", outcome}}});
      if (!Str(d, "next_date").empty())
        activity["progress"] = json::array({{{"text", "Next evaluation moment: " + Str(d, "next_date")}}});
      activities.push_back(std::move(activity));
    } else if (kind == "handover") {
      std::string text = "Warm handover of support from " + Str(d, "from") + " to " + Str(d, "to");
      if (!Str(d, "reason").empty()) text += ": " + Str(d, "reason");
      json detail = {{"code", KindConcept(kind)},
                     {"status", HandoverActivityStatus(Str(d, "status"))},
                     {"description", text},
                     {"performer", json::array({Reference(Str(d, "from")), Reference(Str(d, "to"))})}};
      if (!Str(d, "date").empty()) detail["scheduledPeriod"] = {{"start", Str(d, "date")}};
      if (!domain.empty()) detail["reasonCode"] = json::array({LifeDomainConcept(domain)});
      activities.push_back({{"detail", std::move(detail)}});
    } else if (kind == "agreement" || kind == "signal" || kind == "note") {
      std::string text;
      if (kind == "agreement") {
        text = "Agreement";
        if (!Str(d, "agreed_on").empty()) text += " of " + Str(d, "agreed_on");
        text += ": " + Str(d, "text");
        std::string parties;
        for (const json& p : Member(d, "parties").is_array() ? Member(d, "parties") : empty)
          parties += (parties.empty() ? "" : ", ") + PartyDisplay(p);
        if (!parties.empty()) text += "\n\nParties: " + parties;
        if (!Str(d, "review_date").empty()) text += "\n\nReview: " + Str(d, "review_date");
      } else if (kind == "signal") {
        text = "Signal from " + Str(d, "raised_by") + " on " + Str(d, "date") + "; contact: " + Str(d, "contact");
        if (!Str(d, "concern").empty()) text += "\n\n" + Str(d, "concern");
      } else {
        text = Str(d, "text").empty() ? "note" : Str(d, "text");
      }
      if (!domain.empty()) text = "[" + LifeDomainDisplay(domain) + "] " + text;
      json note = {{"text", text}};
      if (!author.empty()) note["authorString"] = author;
      if (!Str(it, "updated").empty()) note["time"] = Str(it, "updated");
      notes.push_back(std::move(note));
    }
  }

  const json& conflicts = Member(plan_view, "conflicts");
  if (conflicts.is_number_unsigned() && conflicts.get<uint64_t>() > 0)
    notes.push_back({{"text", std::to_string(conflicts.get<uint64_t>()) +
                                  " item(s) of this plan have concurrent edits that are not resolved yet; this "
                                  "CarePlan shows one version of each, the kring plan view lists them all."}});
  const std::string regie_org = Str(regie, "org");
  const std::string person = Str(regie, "person");
  const json& regie_conflict = Member(regie, "conflict");
  if (regie_conflict.is_boolean() && regie_conflict.get<bool>())
    notes.push_back({{"text", "Regie was changed concurrently; " + (regie_org.empty() ? "nobody" : regie_org) +
                                  " holds it until the regie organisation settles it."}});

  json group = {{"resourceType", "Group"}, {"id", "household"}, {"type", "person"}, {"actual", true}};
  if (household) {
    const json& members = Member(Member(*household, "data"), "members");
    if (members.is_array() && !members.empty()) group["quantity"] = members.size();
  }

  json participants = json::array();
  if (!regie_org.empty()) {
    participants.push_back(
        {{"role", json::array({{{"coding", json::array({{{"system", kFhirCareTeamRoleSystem},
                                                          {"code", "regisseur"},
                                                          {"display", "Regisseur"}}})}}})},
         {"member", Reference(person.empty() ? regie_org : person + " (" + regie_org + ")")}});
  }
  for (const std::string& org : partners) {
    if (org == regie_org) continue;
    participants.push_back(
        {{"role", json::array({{{"coding", json::array({{{"system", kFhirCareTeamRoleSystem},
                                                          {"code", "partner"},
                                                          {"display", "Partner organisation"}}})}}})},
         {"member", Reference(org)}});
  }
  json care_team = {{"resourceType", "CareTeam"},
                    {"id", "care-team"},
                    {"status", "active"},
                    {"subject", {{"reference", kHouseholdRef}}}};
  if (!participants.empty()) care_team["participant"] = std::move(participants);

  json contained = json::array({std::move(group), std::move(care_team)});
  json goal_list = json::array();
  for (json& g : goals) {
    goal_list.push_back({{"reference", "#" + g["id"].get<std::string>()}});
    contained.push_back(std::move(g));
  }

  json plan = {{"resourceType", "CarePlan"},
               {"id", CaseIdToHex(case_id)},
               {"contained", std::move(contained)},
               {"status", plan_view.is_object() && plan_view.contains("status") && plan_view["status"].is_string() &&
                                  (plan_view["status"] == "completed" || plan_view["status"] == "revoked")
                              ? plan_view["status"].get<std::string>()
                              : std::string("active")},
               {"intent", "plan"},
               {"subject", {{"reference", kHouseholdRef}, {"display", "household"}}},
               {"careTeam", json::array({{{"reference", kCareTeamRef}}})}};
  if (!regie_org.empty()) plan["author"] = Reference(regie_org);
  json category = json::array();
  for (const char* slug : kLifeDomains)
    if (domains.count(slug)) category.push_back(LifeDomainConcept(slug));
  if (!category.empty()) plan["category"] = std::move(category);
  std::string created;
  for (const json& it : items) {
    const std::string c = Str(it, "created");
    if (!c.empty() && (created.empty() || c < created)) created = c;
  }
  if (!created.empty()) plan["created"] = created;
  if (!goal_list.empty()) plan["goal"] = std::move(goal_list);
  if (!activities.empty()) plan["activity"] = std::move(activities);
  if (!notes.empty()) plan["note"] = std::move(notes);
  return plan;
}

}  // namespace kring
