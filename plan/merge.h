// The plan view: the conflict-free merge of the item versions an organisation may read into one household plan.
//
// MergePlan is a pure function of the SET of versions it is given: the same
// versions in any order, with or without duplicates, give the same JSON
// value, and so the same bytes from dump(), on every node. It does no I/O
// and reads no clock. Rules (docs/plan.md has them in full):
//
//   - a version takes part when it is a valid fragment item
//     (ValidateFragmentItem) and structurally sound: a first version has
//     item == version and supersedes nothing; an edit names another item and
//     supersedes at least one version. Duplicate version ids count once.
//   - an item is its versions with one `item` id. Its kind and domain are
//     those of its first version, or, while that is absent, of its earliest
//     version by (hlc, version id); versions of another kind or domain are
//     ignored. Only versions of the same item supersede each other.
//   - the heads of an item are its versions no other present version
//     supersedes. The shown version is the live (not tombstone) head with the
//     greatest (hlc, version id); every other head, live or tombstone, is a
//     conflict, listed by (hlc, version id) descending. An item without a
//     live head (deleted, or deleted concurrently twice) is omitted.
//   - items are listed by kind (the order of kItemKinds), then creation hlc,
//     then item id.
//
// Output, the body of GET /v1/cases/{case}/plan (keys sorted, as nlohmann::json dumps):
//   {"case": hex, "regisseur": {"org", "person", "conflict": bool},
//    "items": [{"item", "version", "kind", "domain", "author", "created", "updated",
//               "data", "conflicts": [{"version", "author", "created", "data"}...]}...],
//    "conflicts": <number of items with a non-empty "conflicts">}
// Ids are lower-case hex; times are ISO-8601 UTC with milliseconds, from the
// millisecond part of the hlc.
//
// Thread-safety: pure; call from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "protocol/fragment.h"
#include "protocol/hlc.h"

namespace kring {

// One readable version of a plan item: a fragment's header facts and its decrypted body.
struct ItemVersion {
  FragmentId version{};  // the fragment's content id
  FragmentId item{};     // Fragment::ItemId(): == version for an item's first version
  std::string author;    // the organisation that wrote this version
  std::string kind;
  std::string domain;    // empty where the kind has no life domain
  HlcTimestamp hlc = 0;
  std::vector<FragmentId> supersedes;  // the fragment's predecessors
  nlohmann::json data;                 // the body; {"deleted": true} for a tombstone
};

// Who holds regie, as consent/ decides it (CaseState::Regie()); shown as given.
struct RegieInput {
  std::string org;
  std::string person;  // empty until a RegieChange names one
  bool conflict = false;
};

// The plan view of case `case_id` from the versions the caller may read.
// Never fails and never throws: versions that do not take part are left out.
nlohmann::json MergePlan(const CaseId& case_id, const RegieInput& regie, std::vector<ItemVersion> versions);

// "YYYY-MM-DDTHH:MM:SS.mmmZ" for Unix milliseconds (UTC, proleptic Gregorian).
std::string IsoTimeMillis(uint64_t unix_millis);

}  // namespace kring
