// The plan view as a FHIR R4 CarePlan, for professionals' systems that speak FHIR (mapping: docs/plan.md).
//
// Pure: a function of the plan view only (MergePlan's output), so the same
// view gives the same resource on every node. Thread-safe.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "protocol/fragment.h"

namespace kring {

// kring's own code systems and identifiers live under a base URI the
// operator chooses (`kring-node run --fhir-base-uri`): BASE/CodeSystem/life-domain,
// BASE/CodeSystem/item-kind, BASE/CodeSystem/care-team-role, and the
// identifier systems BASE/NamingSystem/case, .../item and .../consent.
// The URIs are stable identifiers, not addresses that must resolve;
// docs/plan.md lists their codes. The default is kring's documented one.
inline constexpr char kDefaultFhirBaseUri[] = "https://kring.example/fhir";
inline constexpr char kFhirLifeDomainSystem[] = "https://kring.example/fhir/CodeSystem/life-domain";
inline constexpr char kFhirItemKindSystem[] = "https://kring.example/fhir/CodeSystem/item-kind";
inline constexpr char kFhirCareTeamRoleSystem[] = "https://kring.example/fhir/CodeSystem/care-team-role";

struct FhirOptions {
  std::string base_uri = kDefaultFhirBaseUri;  // no trailing '/'
};
// HL7's code system of Goal.achievementStatus.
inline constexpr char kFhirGoalAchievementSystem[] = "http://terminology.hl7.org/CodeSystem/goal-achievement";

// A FHIR R4 CarePlan resource (JSON) for case `case_id`:
//   - id: the case id in hex; intent "plan"; status the plan view's "status"
//     when it is "completed" or "revoked" (a closed case), else "active";
//   - subject: a contained Group "#household" (type person, actual, quantity
//     = the members of the first household item when there is one);
//   - careTeam: a contained CareTeam "#care-team": the regisseur and every
//     organisation that wrote a shown or conflicting version; author: the
//     regie organisation;
//   - goal: contained Goal resources (id = item id) for goal items;
//   - activity: actions, evaluation moments and handovers;
//   - note: agreements, signals, notes, and a warning when items or regie are in conflict;
//   - category: the life domains of the plan's items.
//   - identifier: the case id (system BASE/NamingSystem/case);
//   - meta.versionId: a digest of the resource (it changes when the plan
//     does); meta.lastUpdated: the newest item's `updated`;
//   - text: a short Dutch narrative; displays and generated notes are Dutch.
// Only shown versions are mapped; conflicting versions are reported in a note.
// REQUIRES: `plan_view` is a MergePlan result (other input yields a sparse
// but still valid resource; nothing throws).
nlohmann::json ToFhirCarePlan(const CaseId& case_id, const nlohmann::json& plan_view, const FhirOptions& options = {});

// A goal item of the plan view (one element of its "items") as a Goal of its
// own: id the item id, meta.versionId the shown version, meta.lastUpdated
// its `updated`, subject the household by the case identifier.
nlohmann::json ToFhirGoal(const CaseId& case_id, const nlohmann::json& item, const FhirOptions& options = {});

// A consent as the API lists it (GET .../consents: consent, grantee,
// domains, purpose, basis, valid_from, valid_until, given_by, recorded_by,
// recorded, status; plus "version" and "updated": the newest record of it)
// as a FHIR Consent (scope patient-privacy, category LOINC 59284-0,
// provision permit for the grantee in its life domains and period).
nlohmann::json ToFhirConsent(const CaseId& case_id, const nlohmann::json& consent, const FhirOptions& options = {});

// The CapabilityStatement of /fhir/metadata: what the node serves (read of
// CarePlan, Goal and Consent, JSON only).
nlohmann::json FhirCapabilityStatement(const FhirOptions& options, const std::string& software_version);

}  // namespace kring
