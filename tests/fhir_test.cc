// Tests of the FHIR R4 CarePlan (plan/fhir.h) against a structural validator written from the R4 specification.
#include "plan/fhir.h"

#include <doctest/doctest.h>

#include <functional>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "plan/merge.h"

namespace kring {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------
// A structural validator for the R4 resources we emit (CarePlan, Goal, Group,
// CareTeam): the elements each may have, their JSON types, the required ones
// and their cardinality, the required value sets, the data type formats, and
// the rules for contained resources (dom-2, dom-3, local references resolve).
// Written from https://hl7.org/fhir/R4 (careplan, goal, group, careteam,
// datatypes, references, json). It checks structure, not terminology
// bindings weaker than "required".

using Errors = std::vector<std::string>;

class R4Validator {
 public:
  Errors Validate(const json& resource) {
    errors_.clear();
    contained_ids_.clear();
    local_refs_.clear();
    Resource(resource, "", /*contained=*/false);
    if (errors_.empty()) CheckContainedRules(resource);
    return errors_;
  }

 private:
  enum class Card { kOptional, kRequired };
  enum class Many { kOne, kMany };
  using Check = std::function<void(const json&, const std::string&)>;
  struct Element {
    Card card;
    Many many;
    Check check;
  };
  using Spec = std::map<std::string, Element>;

  void Error(const std::string& path, const std::string& what) { errors_.push_back(path + ": " + what); }

  // Applies `spec` to an object: unknown elements, cardinality, JSON arrays
  // exactly where the element repeats, and FHIR JSON's rules (no nulls, no
  // empty objects, arrays or strings).
  void Object(const json& j, const std::string& path, const Spec& spec) {
    if (!j.is_object()) return Error(path, "must be an object");
    if (j.empty()) Error(path, "must not be empty");
    for (const auto& [key, value] : j.items()) {
      const std::string at = path.empty() ? key : path + "." + key;
      auto it = spec.find(key);
      if (it == spec.end()) {
        Error(at, "is not an element of this type");
        continue;
      }
      if (value.is_null()) {
        Error(at, "must not be null");
        continue;
      }
      if (it->second.many == Many::kMany) {
        if (!value.is_array()) {
          Error(at, "repeats, so must be an array");
          continue;
        }
        if (value.empty()) Error(at, "must not be an empty array");
        for (size_t i = 0; i < value.size(); ++i) it->second.check(value[i], at + "[" + std::to_string(i) + "]");
      } else {
        if (value.is_array()) {
          Error(at, "does not repeat, so must not be an array");
          continue;
        }
        it->second.check(value, at);
      }
    }
    for (const auto& [key, element] : spec)
      if (element.card == Card::kRequired && !j.contains(key)) Error(path.empty() ? key : path + "." + key, "is required");
  }

  // --- primitive types
  Check String() {
    return [this](const json& v, const std::string& p) {
      if (!v.is_string()) return Error(p, "must be a string");
      const std::string& s = v.get_ref<const std::string&>();
      if (s.find_first_not_of(" \t\r\n") == std::string::npos) Error(p, "must not be empty or only whitespace");
    };
  }
  Check Pattern(const char* re, const char* what) {
    return [this, rx = std::regex(re), what](const json& v, const std::string& p) {
      if (!v.is_string() || !std::regex_match(v.get_ref<const std::string&>(), rx)) Error(p, std::string("must be ") + what);
    };
  }
  Check Code() { return Pattern(R"([^\s]+( [^\s]+)*)", "a code"); }
  Check Uri() { return Pattern(R"(\S+)", "a uri"); }
  Check Id() { return Pattern(R"([A-Za-z0-9\-\.]{1,64})", "an id [A-Za-z0-9-.]{1,64}"); }
  Check Date() {
    return Pattern(R"(([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?)",
                   "a date");
  }
  Check DateTime() {
    return Pattern(
        R"(([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?)",
        "a dateTime");
  }
  Check Boolean() {
    return [this](const json& v, const std::string& p) {
      if (!v.is_boolean()) Error(p, "must be true or false");
    };
  }
  Check UnsignedInt() {
    return [this](const json& v, const std::string& p) {
      if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0)) Error(p, "must be an unsignedInt");
    };
  }
  Check OneOf(std::set<std::string> codes) {
    return [this, codes = std::move(codes)](const json& v, const std::string& p) {
      if (!v.is_string() || !codes.count(v.get<std::string>())) Error(p, "is not in its required value set");
    };
  }
  Check Any() {
    return [](const json&, const std::string&) {};
  }

  // --- complex types
  Check Extension() {
    return [this](const json& v, const std::string& p) {
      if (!v.is_object() || !v.contains("url")) Error(p, "an extension needs a url");
    };
  }
  Check Coding() {
    return [this](const json& v, const std::string& p) {
      Object(v, p, {{"id", {Card::kOptional, Many::kOne, String()}},
                    {"extension", {Card::kOptional, Many::kMany, Extension()}},
                    {"system", {Card::kOptional, Many::kOne, Uri()}},
                    {"version", {Card::kOptional, Many::kOne, String()}},
                    {"code", {Card::kOptional, Many::kOne, Code()}},
                    {"display", {Card::kOptional, Many::kOne, String()}},
                    {"userSelected", {Card::kOptional, Many::kOne, Boolean()}}});
    };
  }
  Check CodeableConcept() {
    return [this](const json& v, const std::string& p) {
      Object(v, p, {{"id", {Card::kOptional, Many::kOne, String()}},
                    {"extension", {Card::kOptional, Many::kMany, Extension()}},
                    {"coding", {Card::kOptional, Many::kMany, Coding()}},
                    {"text", {Card::kOptional, Many::kOne, String()}}});
    };
  }
  Check Reference() {
    return [this](const json& v, const std::string& p) {
      Object(v, p, {{"id", {Card::kOptional, Many::kOne, String()}},
                    {"extension", {Card::kOptional, Many::kMany, Extension()}},
                    {"reference", {Card::kOptional, Many::kOne, String()}},
                    {"type", {Card::kOptional, Many::kOne, Uri()}},
                    {"identifier", {Card::kOptional, Many::kOne, Any()}},
                    {"display", {Card::kOptional, Many::kOne, String()}}});
      if (!v.is_object()) return;
      // ref-1: a reference, an identifier, a display or an extension.
      if (!v.contains("reference") && !v.contains("identifier") && !v.contains("display") && !v.contains("extension"))
        Error(p, "a Reference needs a reference, identifier, display or extension (ref-1)");
      if (v.contains("reference") && v["reference"].is_string()) {
        const std::string r = v["reference"];
        if (!r.empty() && r[0] == '#') local_refs_.push_back({r.substr(1), p});
      }
    };
  }
  Check Period() {
    return [this](const json& v, const std::string& p) {
      Object(v, p, {{"id", {Card::kOptional, Many::kOne, String()}},
                    {"extension", {Card::kOptional, Many::kMany, Extension()}},
                    {"start", {Card::kOptional, Many::kOne, DateTime()}},
                    {"end", {Card::kOptional, Many::kOne, DateTime()}}});
      // per-1: start <= end (both are dates or dateTimes in one format here).
      if (v.is_object() && v.contains("start") && v.contains("end") && v["start"].is_string() && v["end"].is_string() &&
          v["start"].get<std::string>() > v["end"].get<std::string>())
        Error(p, "start is after end (per-1)");
    };
  }
  Check Annotation() {
    return [this](const json& v, const std::string& p) {
      Object(v, p, {{"id", {Card::kOptional, Many::kOne, String()}},
                    {"extension", {Card::kOptional, Many::kMany, Extension()}},
                    {"authorReference", {Card::kOptional, Many::kOne, Reference()}},
                    {"authorString", {Card::kOptional, Many::kOne, String()}},
                    {"time", {Card::kOptional, Many::kOne, DateTime()}},
                    {"text", {Card::kRequired, Many::kOne, String()}}});
      if (v.is_object() && v.contains("authorReference") && v.contains("authorString"))
        Error(p, "author[x] may appear once");
    };
  }

  // Elements every DomainResource has.
  Spec DomainResource(bool contained) {
    Spec s = {{"resourceType", {Card::kRequired, Many::kOne, String()}},
              {"id", {Card::kOptional, Many::kOne, Id()}},
              {"meta", {Card::kOptional, Many::kOne, Any()}},
              {"implicitRules", {Card::kOptional, Many::kOne, Uri()}},
              {"language", {Card::kOptional, Many::kOne, Code()}},
              {"text", {Card::kOptional, Many::kOne, Any()}},
              {"extension", {Card::kOptional, Many::kMany, Extension()}},
              {"modifierExtension", {Card::kOptional, Many::kMany, Extension()}},
              {"identifier", {Card::kOptional, Many::kMany, Any()}}};
    if (!contained) {
      s["contained"] = {Card::kOptional, Many::kMany, [this](const json& v, const std::string& p) {
                          Resource(v, p, /*contained=*/true);
                          if (v.is_object() && v.contains("id") && v["id"].is_string() &&
                              !contained_ids_.insert(v["id"].get<std::string>()).second)
                            Error(p, "duplicate contained id");
                        }};
    }
    return s;
  }

  void Resource(const json& r, const std::string& path, bool contained) {
    if (!r.is_object() || !r.contains("resourceType") || !r["resourceType"].is_string())
      return Error(path, "a resource needs a resourceType");
    if (contained && r.contains("contained")) Error(path, "a contained resource contains no resources (dom-2)");
    if (contained && !r.contains("id")) Error(path, "a contained resource needs an id");
    const std::string type = r["resourceType"];
    Spec s = DomainResource(contained);
    if (contained) s["contained"] = {Card::kOptional, Many::kMany, Any()};  // reported above
    if (type == "CarePlan") {
      CarePlan(&s);
    } else if (type == "Goal") {
      Goal(&s);
    } else if (type == "Group") {
      Group(&s);
    } else if (type == "CareTeam") {
      CareTeam(&s);
    } else {
      return Error(path, "resourceType " + type + " is not one this validator knows");
    }
    Object(r, path, s);
  }

  void CarePlan(Spec* s) {
    auto refs = Reference();
    (*s)["instantiatesCanonical"] = {Card::kOptional, Many::kMany, Uri()};
    (*s)["instantiatesUri"] = {Card::kOptional, Many::kMany, Uri()};
    (*s)["basedOn"] = {Card::kOptional, Many::kMany, refs};
    (*s)["replaces"] = {Card::kOptional, Many::kMany, refs};
    (*s)["partOf"] = {Card::kOptional, Many::kMany, refs};
    (*s)["status"] = {Card::kRequired, Many::kOne,
                      OneOf({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"})};
    (*s)["intent"] = {Card::kRequired, Many::kOne, OneOf({"proposal", "plan", "order", "option"})};
    (*s)["category"] = {Card::kOptional, Many::kMany, CodeableConcept()};
    (*s)["title"] = {Card::kOptional, Many::kOne, String()};
    (*s)["description"] = {Card::kOptional, Many::kOne, String()};
    (*s)["subject"] = {Card::kRequired, Many::kOne, refs};
    (*s)["encounter"] = {Card::kOptional, Many::kOne, refs};
    (*s)["period"] = {Card::kOptional, Many::kOne, Period()};
    (*s)["created"] = {Card::kOptional, Many::kOne, DateTime()};
    (*s)["author"] = {Card::kOptional, Many::kOne, refs};
    (*s)["contributor"] = {Card::kOptional, Many::kMany, refs};
    (*s)["careTeam"] = {Card::kOptional, Many::kMany, refs};
    (*s)["addresses"] = {Card::kOptional, Many::kMany, refs};
    (*s)["supportingInfo"] = {Card::kOptional, Many::kMany, refs};
    (*s)["goal"] = {Card::kOptional, Many::kMany, refs};
    (*s)["activity"] = {Card::kOptional, Many::kMany, [this](const json& v, const std::string& p) { Activity(v, p); }};
    (*s)["note"] = {Card::kOptional, Many::kMany, Annotation()};
  }

  void Activity(const json& v, const std::string& p) {
    Object(v, p, {{"id", {Card::kOptional, Many::kOne, String()}},
                  {"extension", {Card::kOptional, Many::kMany, Extension()}},
                  {"modifierExtension", {Card::kOptional, Many::kMany, Extension()}},
                  {"outcomeCodeableConcept", {Card::kOptional, Many::kMany, CodeableConcept()}},
                  {"outcomeReference", {Card::kOptional, Many::kMany, Reference()}},
                  {"progress", {Card::kOptional, Many::kMany, Annotation()}},
                  {"reference", {Card::kOptional, Many::kOne, Reference()}},
                  {"detail", {Card::kOptional, Many::kOne, [this](const json& d, const std::string& dp) { Detail(d, dp); }}}});
    if (v.is_object() && v.contains("reference") && v.contains("detail"))
      Error(p, "provide a reference or detail, not both (cpl-3)");
  }

  void Detail(const json& v, const std::string& p) {
    Object(v, p, {{"id", {Card::kOptional, Many::kOne, String()}},
                  {"extension", {Card::kOptional, Many::kMany, Extension()}},
                  {"modifierExtension", {Card::kOptional, Many::kMany, Extension()}},
                  {"kind", {Card::kOptional, Many::kOne,
                            OneOf({"Appointment", "CommunicationRequest", "DeviceRequest", "MedicationRequest",
                                   "NutritionOrder", "Task", "ServiceRequest", "VisionPrescription"})}},
                  {"instantiatesCanonical", {Card::kOptional, Many::kMany, Uri()}},
                  {"instantiatesUri", {Card::kOptional, Many::kMany, Uri()}},
                  {"code", {Card::kOptional, Many::kOne, CodeableConcept()}},
                  {"reasonCode", {Card::kOptional, Many::kMany, CodeableConcept()}},
                  {"reasonReference", {Card::kOptional, Many::kMany, Reference()}},
                  {"goal", {Card::kOptional, Many::kMany, Reference()}},
                  {"status", {Card::kRequired, Many::kOne,
                              OneOf({"not-started", "scheduled", "in-progress", "on-hold", "completed", "cancelled",
                                     "stopped", "unknown", "entered-in-error"})}},
                  {"statusReason", {Card::kOptional, Many::kOne, CodeableConcept()}},
                  {"doNotPerform", {Card::kOptional, Many::kOne, Boolean()}},
                  {"scheduledTiming", {Card::kOptional, Many::kOne, Any()}},
                  {"scheduledPeriod", {Card::kOptional, Many::kOne, Period()}},
                  {"scheduledString", {Card::kOptional, Many::kOne, String()}},
                  {"location", {Card::kOptional, Many::kOne, Reference()}},
                  {"performer", {Card::kOptional, Many::kMany, Reference()}},
                  {"productCodeableConcept", {Card::kOptional, Many::kOne, CodeableConcept()}},
                  {"productReference", {Card::kOptional, Many::kOne, Reference()}},
                  {"dailyAmount", {Card::kOptional, Many::kOne, Any()}},
                  {"quantity", {Card::kOptional, Many::kOne, Any()}},
                  {"description", {Card::kOptional, Many::kOne, String()}}});
    if (!v.is_object()) return;
    int scheduled = v.contains("scheduledTiming") + v.contains("scheduledPeriod") + v.contains("scheduledString");
    if (scheduled > 1) Error(p, "scheduled[x] may appear once");
  }

  void Goal(Spec* s) {
    (*s)["lifecycleStatus"] = {Card::kRequired, Many::kOne,
                               OneOf({"proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                                      "entered-in-error", "rejected"})};
    (*s)["achievementStatus"] = {Card::kOptional, Many::kOne, [this](const json& v, const std::string& p) {
                                   CodeableConcept()(v, p);
                                   static const std::set<std::string> kCodes = {
                                       "in-progress", "improving",   "worsening",   "no-change",     "achieved",
                                       "sustaining",  "not-achieved", "no-progress", "not-attainable"};
                                   for (const json& c : v.value("coding", json::array())) {
                                     if (c.value("system", "") != "http://terminology.hl7.org/CodeSystem/goal-achievement")
                                       Error(p, "achievementStatus coding is not from the goal-achievement code system");
                                     else if (!kCodes.count(c.value("code", "")))
                                       Error(p, "achievementStatus code is not in goal-achievement");
                                   }
                                 }};
    (*s)["category"] = {Card::kOptional, Many::kMany, CodeableConcept()};
    (*s)["priority"] = {Card::kOptional, Many::kOne, CodeableConcept()};
    (*s)["description"] = {Card::kRequired, Many::kOne, CodeableConcept()};
    (*s)["subject"] = {Card::kRequired, Many::kOne, Reference()};
    (*s)["startDate"] = {Card::kOptional, Many::kOne, Date()};
    (*s)["startCodeableConcept"] = {Card::kOptional, Many::kOne, CodeableConcept()};
    (*s)["target"] = {Card::kOptional, Many::kMany, [this](const json& v, const std::string& p) {
                        Object(v, p, {{"id", {Card::kOptional, Many::kOne, String()}},
                                      {"extension", {Card::kOptional, Many::kMany, Extension()}},
                                      {"modifierExtension", {Card::kOptional, Many::kMany, Extension()}},
                                      {"measure", {Card::kOptional, Many::kOne, CodeableConcept()}},
                                      {"detailString", {Card::kOptional, Many::kOne, String()}},
                                      {"dueDate", {Card::kOptional, Many::kOne, Date()}},
                                      {"dueDuration", {Card::kOptional, Many::kOne, Any()}}});
                        // gol-1: a detail needs a measure.
                        if (v.is_object() && v.contains("detailString") && !v.contains("measure"))
                          Error(p, "target.detail needs target.measure (gol-1)");
                      }};
    (*s)["statusDate"] = {Card::kOptional, Many::kOne, Date()};
    (*s)["statusReason"] = {Card::kOptional, Many::kOne, String()};
    (*s)["expressedBy"] = {Card::kOptional, Many::kOne, Reference()};
    (*s)["addresses"] = {Card::kOptional, Many::kMany, Reference()};
    (*s)["note"] = {Card::kOptional, Many::kMany, Annotation()};
    (*s)["outcomeCode"] = {Card::kOptional, Many::kMany, CodeableConcept()};
    (*s)["outcomeReference"] = {Card::kOptional, Many::kMany, Reference()};
  }

  void Group(Spec* s) {
    (*s)["active"] = {Card::kOptional, Many::kOne, Boolean()};
    (*s)["type"] = {Card::kRequired, Many::kOne,
                    OneOf({"person", "animal", "practitioner", "device", "medication", "substance"})};
    (*s)["actual"] = {Card::kRequired, Many::kOne, Boolean()};
    (*s)["code"] = {Card::kOptional, Many::kOne, CodeableConcept()};
    (*s)["name"] = {Card::kOptional, Many::kOne, String()};
    (*s)["quantity"] = {Card::kOptional, Many::kOne, UnsignedInt()};
    (*s)["managingEntity"] = {Card::kOptional, Many::kOne, Reference()};
    (*s)["characteristic"] = {Card::kOptional, Many::kMany, Any()};
    (*s)["member"] = {Card::kOptional, Many::kMany, Any()};
  }

  void CareTeam(Spec* s) {
    (*s)["status"] = {Card::kOptional, Many::kOne, OneOf({"proposed", "active", "suspended", "inactive", "entered-in-error"})};
    (*s)["category"] = {Card::kOptional, Many::kMany, CodeableConcept()};
    (*s)["name"] = {Card::kOptional, Many::kOne, String()};
    (*s)["subject"] = {Card::kOptional, Many::kOne, Reference()};
    (*s)["encounter"] = {Card::kOptional, Many::kOne, Reference()};
    (*s)["period"] = {Card::kOptional, Many::kOne, Period()};
    (*s)["participant"] = {Card::kOptional, Many::kMany, [this](const json& v, const std::string& p) {
                             Object(v, p, {{"id", {Card::kOptional, Many::kOne, String()}},
                                           {"extension", {Card::kOptional, Many::kMany, Extension()}},
                                           {"modifierExtension", {Card::kOptional, Many::kMany, Extension()}},
                                           {"role", {Card::kOptional, Many::kMany, CodeableConcept()}},
                                           {"member", {Card::kOptional, Many::kOne, Reference()}},
                                           {"onBehalfOf", {Card::kOptional, Many::kOne, Reference()}},
                                           {"period", {Card::kOptional, Many::kOne, Period()}}});
                           }};
    (*s)["reasonCode"] = {Card::kOptional, Many::kMany, CodeableConcept()};
    (*s)["reasonReference"] = {Card::kOptional, Many::kMany, Reference()};
    (*s)["managingOrganization"] = {Card::kOptional, Many::kMany, Reference()};
    (*s)["telecom"] = {Card::kOptional, Many::kMany, Any()};
    (*s)["note"] = {Card::kOptional, Many::kMany, Annotation()};
  }

  // Every "#id" resolves to a contained resource, and (dom-3) every
  // contained resource is referred to from elsewhere in the resource.
  void CheckContainedRules(const json& r) {
    std::set<std::string> referenced;
    for (const auto& [id, where] : local_refs_) {
      if (!contained_ids_.count(id)) Error(where, "refers to #" + id + ", which is not contained");
      referenced.insert(id);
    }
    for (const std::string& id : contained_ids_)
      if (!referenced.count(id)) Error("contained(" + id + ")", "is referred to from nowhere (dom-3)");
    (void)r;
  }

  Errors errors_;
  std::set<std::string> contained_ids_;
  std::vector<std::pair<std::string, std::string>> local_refs_;
};

Errors Validate(const json& resource) { return R4Validator().Validate(resource); }

std::string Show(const Errors& e) {
  std::string out;
  for (const std::string& s : e) out += s + "\n";
  return out;
}

// ---------------------------------------------------------------------------
// Plans to map

constexpr uint64_t kT0 = 1'700'000'000'000;
const CaseId kCase = {0xca, 0x14, 0x9b, 0x35, 0x8a, 0x05, 0x74, 0x61, 0xef, 0x32, 0x9e, 0x69, 0xe9, 0x3a, 0x57, 0xd2};

FragmentId Id(uint8_t n) {
  FragmentId id;
  id.fill(n);
  return id;
}

ItemVersion First(uint8_t id, std::string author, std::string kind, std::string domain, uint64_t ms, json data) {
  return ItemVersion{Id(id), Id(id), std::move(author), std::move(kind), std::move(domain), MakeHlc(kT0 + ms, 0), {},
                     std::move(data)};
}

json GoalBody(const std::string& status, bool target = true) {
  json g = {{"description", "Overzicht van alle schulden"}, {"status", status}};
  if (target) g["target_date"] = "2025-03-01";
  return g;
}

// A plan with an item of every kind, a goal an action and an evaluation refer to, and a conflict.
json FullPlanView() {
  const std::string goal = ToHex(Id(2));
  std::vector<ItemVersion> vs = {
      First(1, "gemeente-a", "household", "", 1,
            {{"members", {{{"id", 1}, {"role", "parent"}, {"year_of_birth", 1984}}, {{"id", 2}, {"role", "child"}},
                          {{"id", 3}, {"role", "child"}}}}}),
      First(2, "wijkteam-b", "goal", "finances", 2, GoalBody("active")),
      First(3, "wijkteam-b", "action", "finances", 3,
            {{"what", "Schuldenoverzicht maken"}, {"who", {{"type", "organisation"}, {"org", "wijkteam-b"}}},
             {"due_date", "2025-02-01"}, {"status", "planned"}, {"goal", goal}}),
      First(4, "gemeente-a", "action", "social-network", 4,
            {{"what", "Boodschappen doen"}, {"who", {{"type", "network"}, {"relation", "neighbour"}}},
             {"status", "in-progress"}}),
      First(5, "gemeente-a", "agreement", "housing", 5,
            {{"text", "Huur via automatische incasso."},
             {"parties", {{{"type", "citizen"}, {"member", 1}}, {{"type", "organisation"}, {"org", "woon-d"}}}},
             {"agreed_on", "2025-01-10"}, {"review_date", "2025-04-01"}}),
      First(6, "wijkteam-b", "evaluation", "finances", 6,
            {{"date", "2025-04-01"}, {"reviewed", "Voortgang"}, {"outcome", "Overzicht compleet."},
             {"next_date", "2025-07-01"}, {"goals", {goal, std::string(64, 'f')}}}),
      First(7, "woon-d", "signal", "housing", 7,
            {{"raised_by", "woon-d"}, {"date", "2025-01-05"}, {"contact", "team wonen, 0570 123 456"}}),
      First(8, "wijkteam-b", "handover", "mental-health", 8,
            {{"from", "wijkteam-b"}, {"to", "ggz-e"}, {"date", "2025-03-01"}, {"status", "planned"},
             {"reason", "Specialistische hulp."}}),
      First(9, "zorg-c", "note", "", 9, {{"text", "Gesprek gehad."}}),
      First(10, "wijkteam-b", "evaluation", "", 10, {{"date", "2025-09-01"}, {"reviewed", "Het hele plan"}}),
  };
  ItemVersion e1{Id(11), Id(9), "zorg-c", "note", "", MakeHlc(kT0 + 20, 0), {Id(9)}, {{"text", "v2"}}};
  ItemVersion e2{Id(12), Id(9), "ggd-f", "note", "", MakeHlc(kT0 + 21, 0), {Id(9)}, {{"text", "v3"}}};
  vs.push_back(e1);
  vs.push_back(e2);
  return MergePlan(kCase, RegieInput{"gemeente-a", "J. de Vries", true}, vs);
}

const json* Contained(const json& fhir, const std::string& id) {
  for (const json& r : fhir["contained"])
    if (r["id"] == id) return &r;
  return nullptr;
}

TEST_CASE("the FHIR CarePlan of a full plan is valid R4") {
  json fhir = ToFhirCarePlan(kCase, FullPlanView());
  CHECK_MESSAGE(Validate(fhir).empty(), Show(Validate(fhir)) << fhir.dump(2));
  CHECK(fhir["resourceType"] == "CarePlan");
  CHECK(fhir["id"] == "ca149b358a057461ef329e69e93a57d2");
  CHECK(fhir["status"] == "active");
  CHECK(fhir["intent"] == "plan");
  CHECK(fhir["subject"]["reference"] == "#household");
  CHECK(fhir["author"]["display"] == "gemeente-a");
  CHECK(fhir["created"] == IsoTimeMillis(kT0 + 1));

  const json* group = Contained(fhir, "household");
  REQUIRE(group);
  CHECK((*group)["resourceType"] == "Group");
  CHECK((*group)["type"] == "person");
  CHECK((*group)["actual"] == true);
  CHECK((*group)["quantity"] == 3);

  const json* goal = Contained(fhir, ToHex(Id(2)));
  REQUIRE(goal);
  CHECK((*goal)["resourceType"] == "Goal");
  CHECK((*goal)["lifecycleStatus"] == "active");
  CHECK((*goal)["description"]["text"] == "Overzicht van alle schulden");
  CHECK((*goal)["target"][0]["dueDate"] == "2025-03-01");
  CHECK((*goal)["category"][0]["coding"][0] ==
        json{{"system", "https://kring.example/fhir/CodeSystem/life-domain"}, {"code", "finances"}, {"display", "Financiën"}});
  CHECK(fhir["goal"] == json::array({{{"reference", "#" + ToHex(Id(2))}}}));

  // Activities: two actions, two evaluations, a handover, in plan order.
  REQUIRE(fhir["activity"].size() == 5);
  const json& act = fhir["activity"][0]["detail"];
  CHECK(act["status"] == "not-started");
  CHECK(act["description"] == "Schuldenoverzicht maken");
  CHECK(act["scheduledPeriod"]["end"] == "2025-02-01");
  CHECK(act["performer"][0]["display"] == "wijkteam-b");
  CHECK(act["goal"][0]["reference"] == "#" + ToHex(Id(2)));
  CHECK(fhir["activity"][1]["detail"]["performer"][0]["display"] == "netwerk (neighbour)");
  CHECK(fhir["activity"][1]["detail"]["status"] == "in-progress");
  const json& eval = fhir["activity"][2];
  CHECK(eval["detail"]["status"] == "completed");
  CHECK(eval["outcomeCodeableConcept"][0]["text"] == "Overzicht compleet.");
  CHECK(eval["detail"]["goal"].size() == 1);  // the unknown goal id is not referenced
  CHECK(fhir["activity"][3]["detail"]["status"] == "scheduled");  // the evaluation without an outcome
  CHECK(fhir["activity"][4]["detail"]["description"] ==
        "Warme overdracht van wijkteam-b naar ggz-e: Specialistische hulp.");

  // Notes: the agreement, the signal, the note, and the two conflict warnings.
  REQUIRE(fhir["note"].size() == 5);
  CHECK(fhir["note"][0]["text"].get<std::string>().find("Afspraak van 2025-01-10: Huur via automatische incasso.") !=
        std::string::npos);
  CHECK(fhir["note"][0]["text"].get<std::string>().find("Partijen: huishoudlid 1, woon-d") != std::string::npos);
  CHECK(fhir["note"][1]["text"].get<std::string>().find("Signaal van woon-d op 2025-01-05") != std::string::npos);
  CHECK(fhir["note"][2]["text"] == "v3");
  CHECK(fhir["note"][2]["authorString"] == "ggd-f");
  CHECK(fhir["note"][3]["text"].get<std::string>().find("1 onderdeel van dit plan heeft") == 0);
  CHECK(fhir["note"][4]["text"].get<std::string>().find("De regie is gelijktijdig gewijzigd") == 0);

  // The care team: the regisseur first, then every other organisation that wrote a version shown or in conflict.
  const json* team = Contained(fhir, "care-team");
  REQUIRE(team);
  REQUIRE((*team)["participant"].size() == 5);
  CHECK((*team)["participant"][0]["member"]["display"] == "J. de Vries (gemeente-a)");
  CHECK((*team)["participant"][0]["role"][0]["coding"][0]["code"] == "regisseur");
  std::vector<std::string> partners;
  for (size_t i = 1; i < 5; ++i) partners.push_back((*team)["participant"][i]["member"]["display"]);
  CHECK(partners == std::vector<std::string>{"ggd-f", "wijkteam-b", "woon-d", "zorg-c"});

  // The plan's life domains in ZRM order.
  std::vector<std::string> domains;
  for (const json& c : fhir["category"]) domains.push_back(c["coding"][0]["code"]);
  CHECK(domains == std::vector<std::string>{"finances", "housing", "mental-health", "social-network"});
}

TEST_CASE("goal statuses map onto lifecycleStatus and achievementStatus") {
  struct Row {
    const char* ours;
    const char* lifecycle;
    const char* achievement;  // nullptr: none
  };
  for (const Row& r : {Row{"proposed", "proposed", nullptr}, Row{"active", "active", nullptr},
                       Row{"achieved", "completed", "achieved"}, Row{"not-achieved", "completed", "not-achieved"},
                       Row{"cancelled", "cancelled", nullptr}}) {
    CAPTURE(r.ours);
    json view = MergePlan(kCase, RegieInput{"gemeente-a", "", false},
                          {First(1, "gemeente-a", "goal", "housing", 1, GoalBody(r.ours, false))});
    json fhir = ToFhirCarePlan(kCase, view);
    CHECK_MESSAGE(Validate(fhir).empty(), Show(Validate(fhir)));
    const json* g = Contained(fhir, ToHex(Id(1)));
    REQUIRE(g);
    CHECK((*g)["lifecycleStatus"] == r.lifecycle);
    CHECK_FALSE(g->contains("target"));
    if (r.achievement) {
      CHECK((*g)["achievementStatus"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/goal-achievement");
      CHECK((*g)["achievementStatus"]["coding"][0]["code"] == r.achievement);
    } else {
      CHECK_FALSE(g->contains("achievementStatus"));
    }
  }
}

TEST_CASE("action and handover statuses map onto activity statuses") {
  for (auto [ours, theirs] : std::vector<std::pair<std::string, std::string>>{{"planned", "not-started"},
                                                                                {"in-progress", "in-progress"},
                                                                                {"on-hold", "on-hold"},
                                                                                {"completed", "completed"},
                                                                                {"cancelled", "cancelled"}}) {
    CAPTURE(ours);
    json view = MergePlan(kCase, RegieInput{"gemeente-a", "", false},
                          {First(1, "gemeente-a", "action", "justice", 1,
                                 {{"what", "x"}, {"who", {{"type", "citizen"}}}, {"status", ours}})});
    json fhir = ToFhirCarePlan(kCase, view);
    CHECK(Validate(fhir).empty());
    CHECK(fhir["activity"][0]["detail"]["status"] == theirs);
    CHECK(fhir["activity"][0]["detail"]["performer"][0]["display"] == "de burger");
  }
  for (auto [ours, theirs] : std::vector<std::pair<std::string, std::string>>{
           {"planned", "scheduled"}, {"completed", "completed"}, {"cancelled", "cancelled"}}) {
    json view = MergePlan(kCase, RegieInput{"gemeente-a", "", false},
                          {First(1, "gemeente-a", "handover", "", 1,
                                 {{"from", "gemeente-a"}, {"to", "zorg-c"}, {"date", "2025-01-01"}, {"status", ours}})});
    json fhir = ToFhirCarePlan(kCase, view);
    CHECK(Validate(fhir).empty());
    CHECK(fhir["activity"][0]["detail"]["status"] == theirs);
  }
}

TEST_CASE("an empty plan is a valid CarePlan with only the household and the care team") {
  json fhir = ToFhirCarePlan(kCase, MergePlan(kCase, RegieInput{"gemeente-a", "", false}, {}));
  CHECK_MESSAGE(Validate(fhir).empty(), Show(Validate(fhir)));
  CHECK(fhir["contained"].size() == 2);
  CHECK_FALSE(Contained(fhir, "household")->contains("quantity"));
  CHECK((*Contained(fhir, "care-team"))["participant"][0]["member"]["display"] == "gemeente-a");
  for (const char* absent : {"goal", "activity", "note", "category", "created"}) CHECK_FALSE(fhir.contains(absent));
}

TEST_CASE("random plans always map to valid R4") {
  std::mt19937_64 rng(99);
  const std::vector<std::string> orgs = {"gemeente-a", "wijkteam-b", "zorg-c"};
  const json examples = json::array({
      {"household", "", {{"members", {{{"id", 1}, {"role", "adult"}}}}}},
      {"goal", "finances", GoalBody("achieved")},
      {"goal", "housing", GoalBody("proposed", false)},
      {"action", "housing", {{"what", "x"}, {"who", {{"type", "citizen"}, {"member", 2}}}, {"status", "on-hold"}, {"goal", ToHex(Id(1))}}},
      {"agreement", "", {{"text", "x"}}},
      {"evaluation", "housing", {{"date", "2025-01-01"}, {"reviewed", "x"}, {"goals", {ToHex(Id(1))}}}},
      {"signal", "", {{"raised_by", "zorg-c"}, {"date", "2025-01-01"}, {"contact", "c"}, {"concern", "x"}}},
      {"handover", "justice", {{"from", "zorg-c"}, {"to", "gemeente-a"}, {"date", "2025-01-01"}, {"status", "completed"}}},
      {"note", "justice", {{"text", "x"}}},
  });
  for (int round = 0; round < 200; ++round) {
    std::vector<ItemVersion> vs;
    for (int i = 0, n = static_cast<int>(rng() % 12); i < n; ++i) {
      const json& e = examples[rng() % examples.size()];
      vs.push_back(First(static_cast<uint8_t>(1 + rng() % 250), orgs[rng() % 3], e[0], e[1], rng() % 1000, e[2]));
      if (rng() % 4 == 0) {  // a concurrent edit: two heads
        ItemVersion ed = vs.back();
        ed.version = Id(static_cast<uint8_t>(1 + rng() % 250));
        ed.supersedes = {vs.back().version};
        if (ed.version != ed.item) vs.push_back(ed);
      }
    }
    json view = MergePlan(kCase, RegieInput{orgs[rng() % 3], rng() % 2 ? "" : "P", rng() % 2 == 0}, vs);
    json fhir = ToFhirCarePlan(kCase, view);
    CAPTURE(view.dump());
    REQUIRE_MESSAGE(Validate(fhir).empty(), Show(Validate(fhir)));
  }
}

TEST_CASE("the validator rejects what R4 does not allow") {
  const json valid = ToFhirCarePlan(kCase, FullPlanView());
  REQUIRE(Validate(valid).empty());
  REQUIRE(valid["contained"][2]["resourceType"] == "Goal");
  struct Mutation {
    const char* what;
    std::function<void(json&)> apply;
    const char* expect;
  };
  const std::vector<Mutation> mutations = {
      {"no status", [](json& j) { j.erase("status"); }, "status: is required"},
      {"a status outside its value set", [](json& j) { j["status"] = "in-progress"; }, "status: is not in its required value set"},
      {"no intent", [](json& j) { j.erase("intent"); }, "intent: is required"},
      {"an intent outside its value set", [](json& j) { j["intent"] = "directive"; }, "intent: is not in its required"},
      {"no subject", [](json& j) { j.erase("subject"); }, "subject: is required"},
      {"a subject that is not a Reference", [](json& j) { j["subject"] = "#household"; }, "subject: must be an object"},
      {"an empty Reference", [](json& j) { j["author"] = {{"id", "x"}}; }, "(ref-1)"},
      {"a repeating element as a single value", [](json& j) { j["goal"] = j["goal"][0]; }, "goal: repeats"},
      {"a single element as an array", [](json& j) { j["intent"] = {"plan"}; }, "intent: does not repeat"},
      {"an empty array", [](json& j) { j["category"] = json::array(); }, "category: must not be an empty array"},
      {"a null", [](json& j) { j["title"] = nullptr; }, "title: must not be null"},
      {"an empty string", [](json& j) { j["title"] = ""; }, "title: must not be empty"},
      {"an unknown element", [](json& j) { j["regisseur"] = "gemeente-a"; }, "regisseur: is not an element"},
      {"a bad id", [](json& j) { j["id"] = "case/1"; }, "id: must be an id"},
      {"a bad dateTime", [](json& j) { j["created"] = "2025-13-01"; }, "created: must be a dateTime"},
      {"a goal without lifecycleStatus", [&](json& j) { j["contained"][2].erase("lifecycleStatus"); }, "lifecycleStatus: is required"},
      {"a goal lifecycleStatus outside its value set", [&](json& j) { j["contained"][2]["lifecycleStatus"] = "achieved"; }, "lifecycleStatus: is not in"},
      {"a goal without description", [&](json& j) { j["contained"][2].erase("description"); }, "description: is required"},
      {"a goal description that is a string", [&](json& j) { j["contained"][2]["description"] = "x"; }, "description: must be an object"},
      {"a goal without subject", [&](json& j) { j["contained"][2].erase("subject"); }, "subject: is required"},
      {"an achievementStatus code outside goal-achievement", [&](json& j) {
         j["contained"][2]["achievementStatus"] = {{"coding", {{{"system", kFhirGoalAchievementSystem}, {"code", "done"}}}}};
       }, "achievementStatus code is not in goal-achievement"},
      {"an achievementStatus from another system", [&](json& j) {
         j["contained"][2]["achievementStatus"] = {{"coding", {{{"system", "http://example.org"}, {"code", "achieved"}}}}};
       }, "not from the goal-achievement code system"},
      {"a goal dueDate that is not a date", [&](json& j) { j["contained"][2]["target"][0]["dueDate"] = "soon"; }, "dueDate: must be a date"},
      {"a reference to a resource not contained", [](json& j) { j["goal"].push_back({{"reference", "#nope"}}); }, "refers to #nope"},
      {"a contained resource referred to from nowhere", [](json& j) {
         j["contained"].push_back({{"resourceType", "Group"}, {"id", "extra"}, {"type", "person"}, {"actual", true}});
       }, "contained(extra): is referred to from nowhere (dom-3)"},
      {"a contained resource that contains", [](json& j) { j["contained"][0]["contained"] = json::array({{{"resourceType", "Group"}}}); }, "(dom-2)"},
      {"two contained resources with one id", [](json& j) { j["contained"][1]["id"] = "household"; }, "duplicate contained id"},
      {"an activity detail without status", [](json& j) { j["activity"][0]["detail"].erase("status"); }, "detail.status: is required"},
      {"an activity detail status outside its value set", [](json& j) { j["activity"][0]["detail"]["status"] = "planned"; }, "detail.status: is not in"},
      {"an activity with reference and detail", [](json& j) { j["activity"][0]["reference"] = {{"display", "x"}}; }, "(cpl-3)"},
      {"two scheduled[x]", [](json& j) { j["activity"][0]["detail"]["scheduledString"] = "soon"; }, "scheduled[x] may appear once"},
      {"a note without text", [](json& j) { j["note"][0].erase("text"); }, "text: is required"},
      {"a Group without type", [](json& j) { j["contained"][0].erase("type"); }, "type: is required"},
      {"a Group without actual", [](json& j) { j["contained"][0].erase("actual"); }, "actual: is required"},
      {"a negative Group quantity", [](json& j) { j["contained"][0]["quantity"] = -1; }, "quantity: must be an unsignedInt"},
      {"a CareTeam status outside its value set", [](json& j) { j["contained"][1]["status"] = "on-hold"; }, "status: is not in"},
      {"an unknown resource type", [](json& j) { j["contained"][1]["resourceType"] = "Household"; }, "is not one this validator knows"},
      {"a coding code with spaces around", [](json& j) { j["category"][0]["coding"][0]["code"] = " finances"; }, "code: must be a code"},
  };
  for (const Mutation& m : mutations) {
    CAPTURE(m.what);
    json doc = valid;
    m.apply(doc);
    Errors errors = Validate(doc);
    REQUIRE_FALSE(errors.empty());
    CHECK_MESSAGE(Show(errors).find(m.expect) != std::string::npos, Show(errors));
  }
}

TEST_CASE("the same plan view gives the same FHIR bytes") {
  const json view = FullPlanView();
  CHECK(ToFhirCarePlan(kCase, view).dump() == ToFhirCarePlan(kCase, json::parse(view.dump())).dump());
}

TEST_CASE("input that is not a plan view still yields a valid resource") {
  for (const json& junk : {json(nullptr), json::object(), json{{"items", 3}}, json{{"items", {1, "x", nullptr}}},
                           json{{"items", {{{"kind", "goal"}, {"item", "g1"}, {"data", 5}}}}, {"regisseur", "x"}}}) {
    CAPTURE(junk.dump());
    json fhir;
    CHECK_NOTHROW(fhir = ToFhirCarePlan(kCase, junk));
    CHECK_MESSAGE(Validate(fhir).empty(), Show(Validate(fhir)));
  }
}

}  // namespace
}  // namespace kring
