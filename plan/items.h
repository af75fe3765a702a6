// Plan item kinds and the validation of their JSON bodies: what the API accepts and what a receiving node stores.
//
// A plan item is a fragment (protocol/fragment.h) whose `kind` names one of
// the kinds below and whose decrypted body is a JSON object whose fields that
// kind defines, all listed with their types and limits in docs/plan.md. The
// `regisseur` kind is the exception: it is written as a RegieChange control
// record (protocol/records.h), never as a fragment.
//
// Everything here is pure and thread-safe: no I/O, no clock, no state.
#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "crypto/status.h"

#include "protocol/fragment.h"

namespace kring {

// Every kind, fragment kinds in the order the plan view lists them, then regisseur.
inline constexpr const char* kItemKinds[] = {"household", "goal",     "action", "agreement", "evaluation",
                                             "signal",    "handover", "note",   "regisseur"};

// Limits of a body, in Unicode code points for text.
inline constexpr size_t kMaxShortText = 200;   // a contact line
inline constexpr size_t kMaxText = 2000;       // a description, a concern, a reason
inline constexpr size_t kMaxLongText = 4000;   // an agreement, a note, an outcome
inline constexpr size_t kMaxMembers = 20;      // household members
inline constexpr int kMaxMemberId = 99;        // household member numbers are 1..99
inline constexpr size_t kMaxParties = 20;      // parties of an agreement
inline constexpr size_t kMaxGoalRefs = 50;     // goals an evaluation reviews
inline constexpr int kMinYear = 1900;          // dates and years of birth
inline constexpr int kMaxYear = 2199;

// Whether a kind needs a life domain (one of the 13 ZRM slugs, kLifeDomains).
enum class DomainRule {
  kRequired,   // goal, action
  kOptional,   // agreement, evaluation, signal, handover, note
  kForbidden,  // household, regisseur: case-wide
};

// True for the kinds above.
bool IsItemKind(std::string_view kind);
// True for every kind but "regisseur": the kinds a fragment may carry.
bool IsFragmentKind(std::string_view kind);
// The domain rule of a kind. REQUIRES: IsItemKind(kind)
DomainRule DomainRuleOf(std::string_view kind);

// True when `data` is exactly {"deleted": true}: an edit that deletes its item.
bool IsTombstone(const nlohmann::json& data);

// Checks a plan item as the API receives it and as a writer means it: the
// kind is known, the domain fits the kind (required, optional or forbidden;
// when given, a ZRM slug), and `data` is a valid body of that kind or a
// tombstone (every kind but regisseur, which cannot be deleted).
// Ok, or InvalidArgument whose message names the kind and the field, e.g.
//   "goal: 'status' must be one of proposed, active, achieved, not-achieved, cancelled".
// Never throws, whatever `data` holds. Strings that pass are valid UTF-8, so
// a validated body always dumps.
Status ValidateItem(std::string_view kind, std::string_view domain, const nlohmann::json& data);

// ValidateItem for a fragment from a peer or the store: also rejects the
// "regisseur" kind, which only a RegieChange control record may carry.
Status ValidateFragmentItem(std::string_view kind, std::string_view domain, const nlohmann::json& data);

// Whether a fragment's cleartext header can make a plan item: a fragment kind
// and a domain that fits it (a ZRM slug where given). Checked at receipt,
// before the body can be opened. InvalidArgument names the kind and domain.
Status CheckFragmentHeader(std::string_view kind, std::string_view domain);

// Whether a version may supersede `prev`: an edit stays within its case and
// item and keeps the item's kind and domain. InvalidArgument otherwise.
Status CheckEdit(const Fragment& edit, const Fragment& prev);

}  // namespace kring
