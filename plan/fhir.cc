// Maps a plan view onto a FHIR R4 CarePlan with contained Group, CareTeam and Goal resources.
#include "plan/fhir.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <string>

#include "crypto/primitives.h"
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

// The code systems of one call, under the operator's base URI.
struct Systems {
  std::string life_domain, item_kind, care_team_role, case_id, item, consent;
  explicit Systems(const FhirOptions& o)
      : life_domain(o.base_uri + "/CodeSystem/life-domain"),
        item_kind(o.base_uri + "/CodeSystem/item-kind"),
        care_team_role(o.base_uri + "/CodeSystem/care-team-role"),
        case_id(o.base_uri + "/NamingSystem/case"),
        item(o.base_uri + "/NamingSystem/item"),
        consent(o.base_uri + "/NamingSystem/consent") {}
};

// The ZRM life domains by their Dutch names (the displays of BASE/CodeSystem/life-domain).
std::string LifeDomainDisplay(const std::string& slug) {
  static const std::map<std::string, std::string> kDisplay = {
      {"finances", "Financiën"},
      {"work-education", "Werk en opleiding"},
      {"daily-activities", "Tijdsbesteding"},
      {"housing", "Huisvesting"},
      {"domestic-relations", "Huiselijke relaties"},
      {"mental-health", "Geestelijke gezondheid"},
      {"physical-health", "Lichamelijke gezondheid"},
      {"substance-use", "Middelengebruik"},
      {"basic-adl", "Basale ADL"},
      {"instrumental-adl", "Instrumentele ADL"},
      {"social-network", "Sociaal netwerk"},
      {"participation", "Maatschappelijke participatie"},
      {"justice", "Justitie"}};
  auto it = kDisplay.find(slug);
  return it == kDisplay.end() ? slug : it->second;
}

thread_local const Systems* g_systems = nullptr;  // set for the duration of one mapping call

json LifeDomainConcept(const std::string& slug) {
  return {{"coding", json::array({{{"system", g_systems->life_domain}, {"code", slug}, {"display", LifeDomainDisplay(slug)}}})},
          {"text", LifeDomainDisplay(slug)}};
}

std::string KindDisplay(const std::string& kind) {
  static const std::map<std::string, std::string> kDisplay = {
      {"household", "Huishouden"}, {"goal", "Doel"},         {"action", "Actie"},
      {"agreement", "Afspraak"},   {"evaluation", "Evaluatie"}, {"signal", "Signaal"},
      {"handover", "Warme overdracht"}, {"note", "Notitie"}, {"regisseur", "Regisseur"}};
  auto it = kDisplay.find(kind);
  return it == kDisplay.end() ? kind : it->second;
}

json KindConcept(const std::string& kind) {
  return {{"coding", json::array({{{"system", g_systems->item_kind}, {"code", kind}, {"display", KindDisplay(kind)}}})}};
}

// Text for the XHTML narrative: the five characters XML gives meaning escaped.
std::string Xml(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

json Narrative(const std::string& xhtml_body) {
  return {{"status", "generated"}, {"div", "<div xmlns=\"http://www.w3.org/1999/xhtml\">" + xhtml_body + "</div>"}};
}

// A short digest of a resource's content, for meta.versionId (FHIR id: at most 64 of [A-Za-z0-9.-]).
std::string ContentVersion(const json& resource) {
  std::string text = resource.dump();
  Hash h = HashParts("kring/fhir-version/v1", {ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size())});
  return ToHex(h).substr(0, 32);
}

// Sets g_systems for one mapping call.
struct UseSystems {
  Systems systems;
  explicit UseSystems(const FhirOptions& o) : systems(o) { g_systems = &systems; }
  ~UseSystems() { g_systems = nullptr; }
};

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
    return m.is_number_integer() ? "huishoudlid " + std::to_string(m.get<int64_t>()) : "de burger";
  }
  if (type == "network") return "netwerk (" + Str(p, "relation") + ")";
  return "onbekend";
}

json Reference(const std::string& display) { return {{"display", display.empty() ? "onbekend" : display}}; }

// A goal item as a Goal resource (contained: no meta, no narrative).
json GoalResource(const json& it, const json& subject) {
  const json& d = Member(it, "data");
  json g = {{"resourceType", "Goal"},
            {"id", Str(it, "item")},
            {"description", {{"text", Str(d, "description").empty() ? "doel" : Str(d, "description")}}},
            {"subject", subject}};
  MapGoalStatus(Str(d, "status"), &g);
  if (!Str(it, "domain").empty()) g["category"] = json::array({LifeDomainConcept(Str(it, "domain"))});
  if (!Str(d, "target_date").empty()) g["target"] = json::array({{{"dueDate", Str(d, "target_date")}}});
  return g;
}

}  // namespace

json ToFhirCarePlan(const CaseId& case_id, const json& plan_view, const FhirOptions& options) {
  UseSystems use(options);
  const json& items_in = Member(plan_view, "items");
  const json empty = json::array();
  const json& items = items_in.is_array() ? items_in : empty;
  const json& regie = Member(plan_view, "regisseur");

  // The goals first: activities refer to them, and only to goals contained here.
  json goals = json::array();
  std::set<std::string> goal_ids;
  for (const json& it : items) {
    if (Str(it, "kind") != "goal") continue;
    const std::string id = Str(it, "item");
    if (id.empty()) continue;
    goals.push_back(GoalResource(it, {{"reference", kHouseholdRef}}));
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
                     {"description", Str(d, "what").empty() ? "actie" : Str(d, "what")},
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
                     {"description", "Evaluatie: " + Str(d, "reviewed")},
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
        activity["progress"] = json::array({{{"text", "Volgend evaluatiemoment: " + Str(d, "next_date")}}});
      activities.push_back(std::move(activity));
    } else if (kind == "handover") {
      std::string text = "Warme overdracht van " + Str(d, "from") + " naar " + Str(d, "to");
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
        text = "Afspraak";
        if (!Str(d, "agreed_on").empty()) text += " van " + Str(d, "agreed_on");
        text += ": " + Str(d, "text");
        std::string parties;
        for (const json& p : Member(d, "parties").is_array() ? Member(d, "parties") : empty)
          parties += (parties.empty() ? "" : ", ") + PartyDisplay(p);
        if (!parties.empty()) text += "\n\nPartijen: " + parties;
        if (!Str(d, "review_date").empty()) text += "\n\nHerzien op: " + Str(d, "review_date");
      } else if (kind == "signal") {
        text = "Signaal van " + Str(d, "raised_by") + " op " + Str(d, "date") + "; contactpersoon: " + Str(d, "contact");
        if (!Str(d, "concern").empty()) text += "\n\n" + Str(d, "concern");
      } else {
        text = Str(d, "text").empty() ? "notitie" : Str(d, "text");
      }
      if (!domain.empty()) text = "[" + LifeDomainDisplay(domain) + "] " + text;
      json note = {{"text", text}};
      if (!author.empty()) note["authorString"] = author;
      if (!Str(it, "updated").empty()) note["time"] = Str(it, "updated");
      notes.push_back(std::move(note));
    }
  }

  const size_t activities_count = activities.size();
  const json& conflicts = Member(plan_view, "conflicts");
  if (conflicts.is_number_unsigned() && conflicts.get<uint64_t>() > 0)
    notes.push_back({{"text", std::to_string(conflicts.get<uint64_t>()) +
                                  (conflicts.get<uint64_t>() == 1 ? " onderdeel van dit plan heeft" : " onderdelen van dit plan hebben") +
                                  " gelijktijdige wijzigingen die nog niet zijn samengevoegd; dit CarePlan toont van elk "
                                  "één versie, het plan in kring toont ze allemaal."}});
  // Versions whose content could not be read are not mapped; a note says how many and who wrote them.
  const json& unreadable = Member(plan_view, "unreadable");
  if (unreadable.is_array() && !unreadable.empty()) {
    std::set<std::string> authors;
    for (const json& u : unreadable) authors.insert(Str(u, "author"));
    std::string by;
    for (const std::string& a : authors) by += (by.empty() ? "" : ", ") + a;
    notes.push_back({{"text", std::to_string(unreadable.size()) +
                                  (unreadable.size() == 1 ? " versie van een onderdeel kon niet worden gelezen"
                                                          : " versies van onderdelen konden niet worden gelezen") +
                                  " (geschreven door " + by + "); dit CarePlan laat ze weg, het plan in kring noemt ze."}});
  }
  const std::string regie_org = Str(regie, "org");
  const std::string person = Str(regie, "person");
  const json& regie_conflict = Member(regie, "conflict");
  if (regie_conflict.is_boolean() && regie_conflict.get<bool>())
    notes.push_back({{"text", "De regie is gelijktijdig gewijzigd; " + (regie_org.empty() ? "niemand" : regie_org) +
                                  " houdt de regie tot de regieorganisatie het rechtzet."}});

  json group = {{"resourceType", "Group"}, {"id", "household"}, {"type", "person"}, {"actual", true}};
  if (household) {
    const json& members = Member(Member(*household, "data"), "members");
    if (members.is_array() && !members.empty()) group["quantity"] = members.size();
  }

  json participants = json::array();
  if (!regie_org.empty()) {
    participants.push_back(
        {{"role", json::array({{{"coding", json::array({{{"system", g_systems->care_team_role},
                                                          {"code", "regisseur"},
                                                          {"display", "Regisseur"}}})}}})},
         {"member", Reference(person.empty() ? regie_org : person + " (" + regie_org + ")")}});
  }
  for (const std::string& org : partners) {
    if (org == regie_org) continue;
    participants.push_back(
        {{"role", json::array({{{"coding", json::array({{{"system", g_systems->care_team_role},
                                                          {"code", "partner"},
                                                          {"display", "Partnerorganisatie"}}})}}})},
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
               {"identifier", json::array({{{"system", g_systems->case_id}, {"value", CaseIdToHex(case_id)}}})},
               {"subject", {{"reference", kHouseholdRef}, {"display", "huishouden"}}},
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
  std::string narrative = "<p>Plan van een huishouden: " + std::to_string(goal_ids.size()) +
                          (goal_ids.size() == 1 ? " doel, " : " doelen, ") + std::to_string(activities_count) +
                          (activities_count == 1 ? " activiteit" : " activiteiten");
  if (!regie_org.empty()) narrative += "; regie bij " + Xml(regie_org) + (person.empty() ? "" : " (regisseur " + Xml(person) + ")");
  narrative += ".</p>";
  plan["text"] = Narrative(narrative);
  std::string updated;
  for (const json& it : items)
    if (Str(it, "updated") > updated) updated = Str(it, "updated");
  json meta = {{"versionId", ContentVersion(plan)}};
  if (!updated.empty()) meta["lastUpdated"] = updated;
  plan["meta"] = std::move(meta);
  return plan;
}

json ToFhirGoal(const CaseId& case_id, const json& item, const FhirOptions& options) {
  UseSystems use(options);
  json g = GoalResource(item, {{"identifier", {{"system", g_systems->case_id}, {"value", CaseIdToHex(case_id)}}},
                               {"display", "huishouden"}});
  g["identifier"] = json::array({{{"system", g_systems->item}, {"value", Str(item, "item")}}});
  const json& d = Member(item, "data");
  std::string text = "<p>Doel: " + Xml(Str(d, "description")) + " (status: " + Xml(Str(d, "status")) + ")";
  if (!Str(item, "domain").empty()) text += "; leefgebied " + Xml(LifeDomainDisplay(Str(item, "domain")));
  if (!Str(d, "target_date").empty()) text += "; streefdatum " + Xml(Str(d, "target_date"));
  text += ". Opgesteld door " + Xml(Str(item, "author")) + ".</p>";
  g["text"] = Narrative(text);
  json meta = {{"versionId", Str(item, "version")}};
  if (!Str(item, "updated").empty()) meta["lastUpdated"] = Str(item, "updated");
  g["meta"] = std::move(meta);
  return g;
}

json ToFhirConsent(const CaseId& case_id, const json& c, const FhirOptions& options) {
  UseSystems use(options);
  const std::string status = Str(c, "status");
  // R4 consent-state-codes: active, inactive (ended), proposed (not yet in force).
  const std::string fhir_status = status == "active" ? "active" : status == "pending" ? "proposed" : "inactive";
  static const std::map<std::string, std::string> kStatusNl = {
      {"active", "actief"}, {"pending", "nog niet ingegaan"}, {"expired", "verlopen"}, {"withdrawn", "ingetrokken"}};
  json domains = json::array();
  std::string domain_names;
  for (const json& d : Member(c, "domains").is_array() ? Member(c, "domains") : json::array()) {
    if (!d.is_string()) continue;
    const std::string slug = d.get<std::string>();
    if (slug == "*") {
      domain_names = "alle leefgebieden";
      continue;
    }
    domains.push_back(LifeDomainConcept(slug));
    domain_names += (domain_names.empty() ? "" : ", ") + LifeDomainDisplay(slug);
  }
  json period = {{"start", Str(c, "valid_from")}};
  if (!Str(c, "valid_until").empty()) period["end"] = Str(c, "valid_until");
  json provision = {{"type", "permit"},
                    {"period", period},
                    {"actor", json::array({{{"role", {{"coding", json::array({{{"system", "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"},
                                                                                {"code", "IRCP"},
                                                                                {"display", "information recipient"}}})}}},
                                            {"reference", Reference(Str(c, "grantee"))}}})}};
  if (!domains.empty()) provision["code"] = std::move(domains);
  auto it = kStatusNl.find(status);
  std::string text = "<p>Toestemming voor " + Xml(Str(c, "grantee")) + " voor " + Xml(domain_names) + ". Doel: " +
                     Xml(Str(c, "purpose")) + ". Grondslag: " + Xml(Str(c, "basis")) + ". Gegeven door " +
                     Xml(Str(c, "given_by")) + ", vastgelegd door " + Xml(Str(c, "recorded_by")) + ". Status: " +
                     Xml(it == kStatusNl.end() ? status : it->second) + ".</p>";
  json consent = {
      {"resourceType", "Consent"},
      {"id", Str(c, "consent")},
      {"meta", {{"versionId", Str(c, "version").empty() ? Str(c, "consent") : Str(c, "version")},
                {"lastUpdated", Str(c, "updated").empty() ? Str(c, "recorded") : Str(c, "updated")}}},
      {"text", Narrative(text)},
      {"identifier", json::array({{{"system", g_systems->consent}, {"value", Str(c, "consent")}},
                                  {{"system", g_systems->case_id}, {"value", CaseIdToHex(case_id)}}})},
      {"status", fhir_status},
      {"scope", {{"coding", json::array({{{"system", "http://terminology.hl7.org/CodeSystem/consentscope"},
                                          {"code", "patient-privacy"},
                                          {"display", "Privacy Consent"}}})}}},
      {"category", json::array({{{"coding", json::array({{{"system", "http://loinc.org"},
                                                          {"code", "59284-0"},
                                                          {"display", "Patient Consent"}}})}}})},
      {"dateTime", Str(c, "recorded")},
      {"performer", json::array({Reference(Str(c, "given_by"))})},
      {"organization", json::array({Reference(Str(c, "recorded_by"))})},
      {"policyRule", {{"text", "Grondslag: " + Str(c, "basis") + "; doel: " + Str(c, "purpose")}}},
      {"provision", std::move(provision)}};
  return consent;
}

json FhirCapabilityStatement(const FhirOptions& options, const std::string& software_version) {
  auto read = [](const char* type, const char* doc) {
    return json{{"type", type}, {"interaction", json::array({{{"code", "read"}}})}, {"documentation", doc}};
  };
  json cs = {
      {"resourceType", "CapabilityStatement"},
      {"status", "active"},
      {"date", "2026-11-29"},
      {"publisher", "kring"},
      {"kind", "instance"},
      {"software", {{"name", "kring-node"}, {"version", software_version}}},
      {"implementation", {{"description", "kring-node: het gedeelde plan van een huishouden, zoals deze organisatie het mag zien"}}},
      {"fhirVersion", "4.0.1"},
      {"format", json::array({"application/fhir+json"})},
      {"text", Narrative("<p>Deze kring-node levert het plan van een huishouden als CarePlan, doelen als Goal en "
                         "toestemmingen als Consent, alleen lezen, in JSON. Code systems onder " +
                         Xml(options.base_uri) + ".</p>")},
      {"rest", json::array({{{"mode", "server"},
                             {"documentation", "Elk verzoek naar CarePlan, Goal en Consent heeft het token van het "
                                               "systeem en de X-Kring-Actor-headers nodig en komt in het toegangslogboek."},
                             {"security", {{"description", "Authorization: Bearer <token>; X-Kring-Actor, X-Kring-Actor-Name, X-Kring-Role"}}},
                             {"resource", json::array({read("CarePlan", "id: het zaak-id (32 hex)"),
                                                       read("Goal", "id: het item-id van een doel (64 hex)"),
                                                       read("Consent", "id: het id van een toestemming (64 hex)")})}}})}};
  return cs;
}

}  // namespace kring
