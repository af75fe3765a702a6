// Merges the readable versions of a case's plan items into the plan view (rules in plan/merge.h and docs/plan.md).
#include "plan/merge.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "plan/items.h"

namespace kring {

namespace {

using nlohmann::json;

size_t KindOrder(std::string_view kind) {
  for (size_t i = 0; i < std::size(kItemKinds); ++i)
    if (kind == kItemKinds[i]) return i;
  return std::size(kItemKinds);
}

// The total order of versions: hybrid logical clock, then content id.
bool Earlier(const ItemVersion& a, const ItemVersion& b) {
  return std::tie(a.hlc, a.version) < std::tie(b.hlc, b.version);
}

// Orders two entries with the same version id by their whole content, so
// that even forged duplicates (same id, other content) resolve the same way
// in every order. Valid fragments never get here: their id hashes their content.
bool ContentLess(const ItemVersion& a, const ItemVersion& b) {
  auto key = [](const ItemVersion& v) { return std::tie(v.item, v.author, v.kind, v.domain, v.hlc, v.supersedes); };
  if (key(a) != key(b)) return key(a) < key(b);
  return a.data.dump() < b.data.dump();
}

bool TakesPart(const ItemVersion& v) {
  const bool first = v.item == v.version;
  if (first != v.supersedes.empty()) return false;
  return ValidateFragmentItem(v.kind, v.domain, v.data).ok();
}

// `s` as valid UTF-8 (invalid bytes become U+FFFD), so that dump() never
// throws on a string the caller passed unchecked.
std::string Utf8(const std::string& s) {
  return json::parse(json(s).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
}

json VersionJson(const ItemVersion& v) {
  return {{"version", ToHex(v.version)}, {"author", Utf8(v.author)}, {"created", IsoTimeMillis(HlcMillis(v.hlc))},
          {"data", v.data}};
}

struct MergedItem {
  size_t kind_order = 0;
  HlcTimestamp created = 0;
  FragmentId item{};
  json view;
};

// The merged item of one item's versions (sorted by version id, unique), or
// nothing when it has no live head.
std::optional<MergedItem> MergeItem(const FragmentId& item, std::vector<const ItemVersion*> vs) {
  // Kind and domain: the first version's, else the earliest version's.
  const ItemVersion* ref = nullptr;
  for (const ItemVersion* v : vs)
    if (v->version == item) ref = v;
  if (!ref) ref = *std::min_element(vs.begin(), vs.end(), [](auto* a, auto* b) { return Earlier(*a, *b); });
  std::erase_if(vs, [&](const ItemVersion* v) { return v->kind != ref->kind || v->domain != ref->domain; });

  std::set<FragmentId> present;
  for (const ItemVersion* v : vs) present.insert(v->version);
  std::set<FragmentId> superseded;
  for (const ItemVersion* v : vs)
    for (const FragmentId& p : v->supersedes)
      if (p != v->version && present.count(p)) superseded.insert(p);

  std::vector<const ItemVersion*> heads;
  for (const ItemVersion* v : vs)
    if (!superseded.count(v->version)) heads.push_back(v);
  // Newest first; a live head is shown before any tombstone.
  std::sort(heads.begin(), heads.end(), [](auto* a, auto* b) { return Earlier(*b, *a); });
  auto shown = std::find_if(heads.begin(), heads.end(), [](auto* v) { return !IsTombstone(v->data); });
  if (shown == heads.end()) return std::nullopt;  // deleted, or no head at all (only forged ids can cycle)

  json conflicts = json::array();
  for (auto* h : heads)
    if (h != *shown) conflicts.push_back(VersionJson(*h));

  MergedItem m;
  m.kind_order = KindOrder(ref->kind);
  m.created = ref->version == item ? ref->hlc
                                   : (*std::min_element(vs.begin(), vs.end(), [](auto* a, auto* b) {
                                       return Earlier(*a, *b);
                                     }))->hlc;
  m.item = item;
  const ItemVersion& s = **shown;
  m.view = {{"item", ToHex(item)},
            {"version", ToHex(s.version)},
            {"kind", s.kind},
            {"domain", s.domain},
            {"author", Utf8(s.author)},
            {"created", IsoTimeMillis(HlcMillis(m.created))},
            {"updated", IsoTimeMillis(HlcMillis(s.hlc))},
            {"data", s.data},
            {"conflicts", std::move(conflicts)}};
  return m;
}

}  // namespace

std::string IsoTimeMillis(uint64_t unix_millis) {
  // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil inverse).
  const int64_t days = static_cast<int64_t>(unix_millis / 86'400'000);
  const uint64_t ms_of_day = unix_millis % 86'400'000;
  const int64_t z = days + 719468;
  const int64_t era = z / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02llu:%02llu:%02llu.%03lluZ", static_cast<long long>(y),
                static_cast<long long>(m), static_cast<long long>(d),
                static_cast<unsigned long long>(ms_of_day / 3'600'000),
                static_cast<unsigned long long>(ms_of_day / 60'000 % 60),
                static_cast<unsigned long long>(ms_of_day / 1000 % 60),
                static_cast<unsigned long long>(ms_of_day % 1000));
  return buf;
}

json MergePlan(const CaseId& case_id, const RegieInput& regie, std::vector<ItemVersion> versions) {
  std::erase_if(versions, [](const ItemVersion& v) { return !TakesPart(v); });
  std::sort(versions.begin(), versions.end(), [](const ItemVersion& a, const ItemVersion& b) {
    if (a.version != b.version) return a.version < b.version;
    return ContentLess(a, b);
  });
  versions.erase(std::unique(versions.begin(), versions.end(),
                             [](const ItemVersion& a, const ItemVersion& b) { return a.version == b.version; }),
                 versions.end());

  std::map<FragmentId, std::vector<const ItemVersion*>> by_item;
  for (const ItemVersion& v : versions) by_item[v.item].push_back(&v);

  std::vector<MergedItem> merged;
  for (auto& [item, vs] : by_item)
    if (auto m = MergeItem(item, std::move(vs))) merged.push_back(std::move(*m));
  std::sort(merged.begin(), merged.end(), [](const MergedItem& a, const MergedItem& b) {
    return std::tie(a.kind_order, a.created, a.item) < std::tie(b.kind_order, b.created, b.item);
  });

  json items = json::array();
  size_t in_conflict = 0;
  for (MergedItem& m : merged) {
    if (!m.view["conflicts"].empty()) ++in_conflict;
    items.push_back(std::move(m.view));
  }
  return {{"case", CaseIdToHex(case_id)},
          {"regisseur", {{"org", Utf8(regie.org)}, {"person", Utf8(regie.person)}, {"conflict", regie.conflict}}},
          {"items", std::move(items)},
          {"conflicts", in_conflict}};
}

}  // namespace kring
