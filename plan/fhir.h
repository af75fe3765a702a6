// The plan view as a FHIR R4 CarePlan, for professionals' systems that speak FHIR (mapping: docs/plan.md).
//
// Pure: a function of the plan view only (MergePlan's output), so the same
// view gives the same resource on every node. Thread-safe.
#pragma once

#include <nlohmann/json.hpp>

#include "protocol/fragment.h"

namespace kring {

// kring's own code systems. The URIs are stable identifiers, not addresses
// that resolve; docs/plan.md lists their codes.
inline constexpr char kFhirLifeDomainSystem[] = "https://kring.example/fhir/CodeSystem/life-domain";
inline constexpr char kFhirItemKindSystem[] = "https://kring.example/fhir/CodeSystem/item-kind";
inline constexpr char kFhirCareTeamRoleSystem[] = "https://kring.example/fhir/CodeSystem/care-team-role";
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
// Only shown versions are mapped; conflicting versions are reported in a note.
// REQUIRES: `plan_view` is a MergePlan result (other input yields a sparse
// but still valid resource; nothing throws).
nlohmann::json ToFhirCarePlan(const CaseId& case_id, const nlohmann::json& plan_view);

}  // namespace kring
