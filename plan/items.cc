// Validation of plan item bodies, one schema per kind (docs/plan.md).
#include "plan/items.h"

#include <algorithm>
#include <cctype>
#include <initializer_list>
#include <set>
#include <string>

#include "crypto/identity.h"
#include "protocol/records.h"

namespace kring {

namespace {

using nlohmann::json;
using Names = std::initializer_list<std::string_view>;

const Names kGoalStatuses = {"proposed", "active", "achieved", "not-achieved", "cancelled"};
const Names kActionStatuses = {"planned", "in-progress", "on-hold", "completed", "cancelled"};
const Names kHandoverStatuses = {"planned", "completed", "cancelled"};
const Names kMemberRoles = {"adult", "parent", "partner", "child", "grandparent", "other-relative", "other"};
const Names kPartyTypes = {"organisation", "citizen", "network"};
const Names kRelations = {"family", "friend", "neighbour", "volunteer", "informal-carer", "other"};

std::string Join(Names names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

bool OneOf(std::string_view s, Names names) {
  return std::find(names.begin(), names.end(), s) != names.end();
}

// Decodes UTF-8 strictly (no overlong forms, surrogates or code points past
// U+10FFFF). Returns the number of code points, or -1 when invalid. Sets
// *control when a control character other than those `allowed` occurs.
long CountUtf8(std::string_view s, bool multiline, bool* control) {
  long n = 0;
  *control = false;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    uint32_t cp;
    size_t len;
    if (b < 0x80) {
      cp = b;
      len = 1;
    } else if ((b & 0xe0) == 0xc0) {
      cp = b & 0x1f;
      len = 2;
    } else if ((b & 0xf0) == 0xe0) {
      cp = b & 0x0f;
      len = 3;
    } else if ((b & 0xf8) == 0xf0) {
      cp = b & 0x07;
      len = 4;
    } else {
      return -1;
    }
    if (i + len > s.size()) return -1;
    for (size_t k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xc0) != 0x80) return -1;
      cp = (cp << 6) | (c & 0x3f);
    }
    static constexpr uint32_t kMinOf[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinOf[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
    const bool allowed = multiline && (cp == '\n' || cp == '\r' || cp == '\t');
    if ((cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0)) && !allowed) *control = true;
    i += len;
    ++n;
  }
  return n;
}

bool IsLeapYear(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

// "YYYY-MM-DD", a real calendar day between kMinYear and kMaxYear.
bool IsDate(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (s[i] < '0' || s[i] > '9') return false;
  auto num = [&](size_t at, size_t len) {
    int v = 0;
    for (size_t i = at; i < at + len; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  const int y = num(0, 4), m = num(5, 2), d = num(8, 2);
  if (y < kMinYear || y > kMaxYear || m < 1 || m > 12 || d < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const int days = kDays[m - 1] + (m == 2 && IsLeapYear(y) ? 1 : 0);
  return d <= days;
}

bool IsItemId(std::string_view s) {
  return s.size() == 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Checks the fields of one JSON object of a body. Each check takes the key
// and whether it is required; the first failure is kept and later checks do
// nothing, so a body reports the first problem in schema order.
class Fields {
 public:
  // `path` is the object's own path in the body ("" for the body, "who", "members[2]").
  Fields(std::string_view kind, const json& obj, std::string path)
      : kind_(kind), obj_(obj), path_(std::move(path)) {}

  const Status& status() const { return st_; }
  bool ok() const { return st_.ok(); }

  // Rejects any key not in `allowed`.
  Fields& Only(Names allowed) {
    if (!ok()) return *this;
    for (const auto& [key, value] : obj_.items()) {
      if (OneOf(key, allowed)) continue;
      std::string hint;
      std::string lower = key;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      if (lower.find("name") != std::string::npos || lower.find("bsn") != std::string::npos)
        hint = " (a plan holds no names or BSN of household members)";
      // Keys come from untrusted JSON; show them only when they print safely.
      bool control = false;
      const bool printable = CountUtf8(key, false, &control) >= 0 && !control && key.size() <= 64;
      st_ = Status::InvalidArgument(std::string(kind_) + ": unknown field '" + Path(printable ? key : "?") + "'" + hint);
      return *this;
    }
    return *this;
  }

  Fields& Text(std::string_view key, bool required, size_t max, bool multiline = true) {
    const json* v = Get(key, required);
    if (!v) return *this;
    if (!v->is_string()) return Fail(key, "must be a string");
    const std::string& s = v->get_ref<const std::string&>();
    bool control = false;
    const long n = CountUtf8(s, multiline, &control);
    if (n < 0) return Fail(key, "is not valid UTF-8");
    if (control) return Fail(key, multiline ? "must not contain control characters other than newlines and tabs"
                                            : "must not contain control characters");
    if (std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }))
      return Fail(key, "must not be empty");
    if (static_cast<size_t>(n) > max) return Fail(key, "is longer than " + std::to_string(max) + " characters");
    return *this;
  }

  Fields& Enum(std::string_view key, bool required, Names values) {
    const json* v = Get(key, required);
    if (!v) return *this;
    if (!v->is_string() || !OneOf(v->get_ref<const std::string&>(), values))
      return Fail(key, "must be one of " + Join(values));
    return *this;
  }

  Fields& Date(std::string_view key, bool required) {
    const json* v = Get(key, required);
    if (!v) return *this;
    if (!v->is_string() || !IsDate(v->get_ref<const std::string&>()))
      return Fail(key, "must be a date YYYY-MM-DD between " + std::to_string(kMinYear) + " and " +
                           std::to_string(kMaxYear));
    return *this;
  }

  Fields& Org(std::string_view key, bool required) {
    const json* v = Get(key, required);
    if (!v) return *this;
    if (!v->is_string() || !IsValidOrgSlug(v->get_ref<const std::string&>()))
      return Fail(key, "must be an organisation slug [a-z0-9-]{2,64}");
    return *this;
  }

  Fields& ItemRef(std::string_view key, bool required) {
    const json* v = Get(key, required);
    if (!v) return *this;
    if (!v->is_string() || !IsItemId(v->get_ref<const std::string&>()))
      return Fail(key, "must be an item id (64 lower-case hex characters)");
    return *this;
  }

  Fields& Integer(std::string_view key, bool required, int min, int max) {
    const json* v = Get(key, required);
    if (!v) return *this;
    bool in_range = false;
    if (v->is_number_unsigned()) in_range = v->get<uint64_t>() >= static_cast<uint64_t>(std::max(min, 0)) &&
                                            v->get<uint64_t>() <= static_cast<uint64_t>(max);
    else if (v->is_number_integer()) in_range = v->get<int64_t>() >= min && v->get<int64_t>() <= max;
    if (!in_range)
      return Fail(key, "must be a whole number from " + std::to_string(min) + " to " + std::to_string(max));
    return *this;
  }

  // A list of 1..max elements, each checked by `each(element, path)`.
  template <class Each>
  Fields& List(std::string_view key, bool required, size_t max, Each each) {
    const json* v = Get(key, required);
    if (!v) return *this;
    if (!v->is_array()) return Fail(key, "must be an array");
    if (v->empty()) return Fail(key, "must not be empty (leave it out instead)");
    if (v->size() > max) return Fail(key, "has more than " + std::to_string(max) + " entries");
    for (size_t i = 0; i < v->size() && ok(); ++i) st_ = each((*v)[i], Path(std::string(key)) + "[" + std::to_string(i) + "]");
    return *this;
  }

  // A nested object checked by `check(object, path)`.
  template <class Check>
  Fields& Object(std::string_view key, bool required, Check check) {
    const json* v = Get(key, required);
    if (!v) return *this;
    if (!v->is_object()) return Fail(key, "must be an object");
    st_ = check(*v, Path(std::string(key)));
    return *this;
  }

  // A rule over several fields; `what` is the complaint about `key`.
  Fields& Require(bool cond, std::string_view key, const std::string& what) {
    if (ok() && !cond) Fail(key, what);
    return *this;
  }

  bool Has(std::string_view key) const { return obj_.contains(key); }

 private:
  std::string Path(std::string_view key) const { return path_.empty() ? std::string(key) : path_ + "." + std::string(key); }

  const json* Get(std::string_view key, bool required) {
    if (!ok()) return nullptr;
    auto it = obj_.find(key);
    if (it == obj_.end()) {
      if (required) Fail(key, "is required");
      return nullptr;
    }
    return &*it;
  }

  Fields& Fail(std::string_view key, const std::string& what) {
    st_ = Status::InvalidArgument(std::string(kind_) + ": '" + Path(key) + "' " + what);
    return *this;
  }

  std::string_view kind_;
  const json& obj_;
  std::string path_;
  Status st_;
};

Status ErrorAt(std::string_view kind, const std::string& path, const std::string& what) {
  return Status::InvalidArgument(std::string(kind) + ": '" + path + "' " + what);
}

// Who does or agrees something: an organisation, the citizen (optionally a
// household member by number), or someone of their network (by relation only).
Status CheckParty(std::string_view kind, const json& v, const std::string& path) {
  if (!v.is_object()) return ErrorAt(kind, path, "must be an object {\"type\": organisation|citizen|network, ...}");
  Fields f(kind, v, path);
  f.Only({"type", "org", "member", "relation"}).Enum("type", true, kPartyTypes);
  if (!f.ok()) return f.status();
  const std::string& type = v["type"].get_ref<const std::string&>();
  f.Require(type == "organisation" || !f.Has("org"), "org", "is only allowed when 'type' is organisation")
      .Require(type == "citizen" || !f.Has("member"), "member", "is only allowed when 'type' is citizen")
      .Require(type == "network" || !f.Has("relation"), "relation", "is only allowed when 'type' is network")
      .Org("org", type == "organisation")
      .Integer("member", false, 1, kMaxMemberId)
      .Enum("relation", type == "network", kRelations);
  return f.status();
}

Status CheckMember(std::string_view kind, const json& v, const std::string& path) {
  if (!v.is_object()) return ErrorAt(kind, path, "must be an object {\"id\", \"role\", \"year_of_birth\"}");
  Fields f(kind, v, path);
  f.Only({"id", "role", "year_of_birth"})
      .Integer("id", true, 1, kMaxMemberId)
      .Enum("role", true, kMemberRoles)
      .Integer("year_of_birth", false, kMinYear, kMaxYear);
  return f.status();
}

Status CheckHousehold(const json& d) {
  Fields f("household", d, "");
  f.Only({"members"}).List("members", true, kMaxMembers, [](const json& m, const std::string& path) {
    return CheckMember("household", m, path);
  });
  if (!f.ok()) return f.status();
  std::set<int64_t> ids;
  for (const json& m : d["members"]) {
    if (!ids.insert(m["id"].get<int64_t>()).second)
      return Status::InvalidArgument("household: 'members' has member id " + std::to_string(m["id"].get<int64_t>()) +
                                     " twice");
  }
  return Status::Ok();
}

Status CheckGoal(const json& d) {
  Fields f("goal", d, "");
  f.Only({"description", "status", "target_date"})
      .Text("description", true, kMaxText)
      .Enum("status", true, kGoalStatuses)
      .Date("target_date", false);
  return f.status();
}

Status CheckAction(const json& d) {
  Fields f("action", d, "");
  f.Only({"what", "who", "due_date", "status", "goal"})
      .Text("what", true, kMaxText)
      .Object("who", true, [](const json& v, const std::string& path) { return CheckParty("action", v, path); })
      .Date("due_date", false)
      .Enum("status", true, kActionStatuses)
      .ItemRef("goal", false);
  return f.status();
}

Status CheckAgreement(const json& d) {
  Fields f("agreement", d, "");
  f.Only({"text", "parties", "agreed_on", "review_date"})
      .Text("text", true, kMaxLongText)
      .List("parties", false, kMaxParties,
            [](const json& v, const std::string& path) { return CheckParty("agreement", v, path); })
      .Date("agreed_on", false)
      .Date("review_date", false);
  return f.status();
}

Status CheckEvaluation(const json& d) {
  Fields f("evaluation", d, "");
  f.Only({"date", "reviewed", "outcome", "next_date", "goals"})
      .Date("date", true)
      .Text("reviewed", true, kMaxText)
      .Text("outcome", false, kMaxLongText)
      .Date("next_date", false)
      .List("goals", false, kMaxGoalRefs, [](const json& v, const std::string& path) {
        if (!v.is_string() || !IsItemId(v.get_ref<const std::string&>()))
          return ErrorAt("evaluation", path, "must be an item id (64 lower-case hex characters)");
        return Status::Ok();
      });
  if (!f.ok()) return f.status();
  if (d.contains("goals")) {
    std::set<std::string> seen;
    for (const json& g : d["goals"])
      if (!seen.insert(g.get<std::string>()).second)
        return Status::InvalidArgument("evaluation: 'goals' names goal " + g.get<std::string>() + " twice");
  }
  return Status::Ok();
}

Status CheckSignal(const json& d) {
  Fields f("signal", d, "");
  f.Only({"raised_by", "date", "contact", "concern"})
      .Org("raised_by", true)
      .Date("date", true)
      .Text("contact", true, kMaxShortText, false)
      .Text("concern", false, kMaxText);
  return f.status();
}

Status CheckHandover(const json& d) {
  Fields f("handover", d, "");
  f.Only({"from", "to", "date", "status", "reason"})
      .Org("from", true)
      .Org("to", true)
      .Date("date", true)
      .Enum("status", true, kHandoverStatuses)
      .Text("reason", false, kMaxText);
  if (f.ok() && d["from"] == d["to"]) f.Require(false, "to", "must differ from 'from'");
  return f.status();
}

Status CheckNote(const json& d) {
  Fields f("note", d, "");
  f.Only({"text"}).Text("text", true, kMaxLongText);
  return f.status();
}

Status CheckRegisseur(const json& d) {
  Fields f("regisseur", d, "");
  f.Only({"org", "person"}).Org("org", true).Text("person", true, 128, false);
  if (f.ok() && !IsValidDisplayName(d["person"].get_ref<const std::string&>()))
    f.Require(false, "person", "must be at most 128 bytes");
  return f.status();
}

}  // namespace

bool IsItemKind(std::string_view kind) {
  return std::any_of(std::begin(kItemKinds), std::end(kItemKinds), [&](const char* k) { return kind == k; });
}

bool IsFragmentKind(std::string_view kind) { return kind != "regisseur" && IsItemKind(kind); }

DomainRule DomainRuleOf(std::string_view kind) {
  if (kind == "goal" || kind == "action") return DomainRule::kRequired;
  if (kind == "household" || kind == "regisseur") return DomainRule::kForbidden;
  return DomainRule::kOptional;
}

bool IsTombstone(const nlohmann::json& data) {
  if (!data.is_object() || data.size() != 1) return false;
  auto it = data.find("deleted");
  return it != data.end() && it->is_boolean() && it->get<bool>();
}

Status ValidateItem(std::string_view kind, std::string_view domain, const nlohmann::json& data) {
  if (!IsItemKind(kind)) {
    bool control = false;
    const bool printable = CountUtf8(kind, false, &control) >= 0 && !control && kind.size() <= 64;
    std::string known;
    for (const char* k : kItemKinds) known += (known.empty() ? "" : ", ") + std::string(k);
    return Status::InvalidArgument("unknown kind '" + (printable ? std::string(kind) : std::string("?")) +
                                   "' (one of " + known + ")");
  }
  const std::string k(kind);
  switch (DomainRuleOf(kind)) {
    case DomainRule::kRequired:
      if (domain.empty()) return Status::InvalidArgument(k + ": a life domain is required (one of the 13 ZRM slugs)");
      break;
    case DomainRule::kForbidden:
      if (!domain.empty()) return Status::InvalidArgument(k + ": has no life domain (it concerns the whole case)");
      break;
    case DomainRule::kOptional:
      break;
  }
  if (!domain.empty() && !IsLifeDomain(domain)) {
    bool control = false;
    const bool printable = CountUtf8(domain, false, &control) >= 0 && !control && domain.size() <= 64;
    std::string known;
    for (const char* d : kLifeDomains) known += (known.empty() ? "" : ", ") + std::string(d);
    return Status::InvalidArgument(k + ": unknown life domain '" + (printable ? std::string(domain) : "?") +
                                   "' (one of " + known + ")");
  }
  if (!data.is_object()) return Status::InvalidArgument(k + ": 'data' must be a JSON object");
  if (data.contains("deleted")) {
    if (kind == "regisseur")
      return Status::InvalidArgument("regisseur: cannot be deleted; hand regie over with a new regisseur instead");
    if (!IsTombstone(data)) {
      const json& d = data["deleted"];
      if (!d.is_boolean() || !d.get<bool>()) return Status::InvalidArgument(k + ": 'deleted' must be true");
      return Status::InvalidArgument(k + ": a tombstone holds only 'deleted', no other field");
    }
    return Status::Ok();
  }
  if (kind == "household") return CheckHousehold(data);
  if (kind == "goal") return CheckGoal(data);
  if (kind == "action") return CheckAction(data);
  if (kind == "agreement") return CheckAgreement(data);
  if (kind == "evaluation") return CheckEvaluation(data);
  if (kind == "signal") return CheckSignal(data);
  if (kind == "handover") return CheckHandover(data);
  if (kind == "note") return CheckNote(data);
  return CheckRegisseur(data);
}

Status ValidateFragmentItem(std::string_view kind, std::string_view domain, const nlohmann::json& data) {
  if (kind == "regisseur")
    return Status::InvalidArgument("regisseur: is a RegieChange control record, never a fragment");
  return ValidateItem(kind, domain, data);
}

Status CheckFragmentHeader(std::string_view kind, std::string_view domain) {
  bool fits = IsFragmentKind(kind) && (domain.empty() || IsLifeDomain(domain)) &&
              !(DomainRuleOf(kind) == DomainRule::kRequired && domain.empty()) &&
              !(DomainRuleOf(kind) == DomainRule::kForbidden && !domain.empty());
  if (fits) return Status::Ok();
  return Status::InvalidArgument("kind '" + std::string(kind) + "' and domain '" + std::string(domain) +
                                 "' do not make a plan item");
}

Status CheckEdit(const Fragment& edit, const Fragment& prev) {
  const FragmentHeader& e = edit.header;
  const FragmentHeader& p = prev.header;
  if (p.case_id != e.case_id || p.kind.v != e.kind.v || p.domain.v != e.domain.v || prev.ItemId() != edit.ItemId())
    return Status::InvalidArgument("it edits a version of another case, item, kind or domain");
  return Status::Ok();
}

}  // namespace kring
