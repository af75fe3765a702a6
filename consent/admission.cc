// The admission rule for every record type, and the recompute of audiences, purges and key grants after a change.
#include "consent/admission.h"

#include <algorithm>
#include <map>

namespace kring {

namespace {

std::string Short(const Hash& id) { return ToHex(id).substr(0, 16); }

Admission Refuse(Reject why, std::string detail) {
  return Admission{Admission::Kind::kRefused, why, std::move(detail)};
}

bool Contains(const std::vector<std::string>& sorted, const std::string& org) {
  return std::binary_search(sorted.begin(), sorted.end(), org);
}

// The author lost the right to write what it wrote, and the window in which
// it can still be held to the time it claims has passed.
bool AuthorWindowClosed(const CaseState& s, const FragmentFacts& f, int64_t now_ms) {
  return !s.MayWriteAt(f.author, f.domain, now_ms) && now_ms - f.time_ms > kLateWriteWindowMs;
}

}  // namespace

const char* RejectName(Reject r) {
  switch (r) {
    case Reject::kUndecodable: return "undecodable_record";
    case Reject::kUnknownAuthor: return "unknown_author";
    case Reject::kBadRecord: return "bad_record";
    case Reject::kBadFragment: return "bad_fragment";
    case Reject::kClockSkew: return "clock_skew";
    case Reject::kUnknownCase: return "unknown_case";
    case Reject::kNotAddressed: return "not_addressed";
    case Reject::kForgedRecord: return "forged_record";
    case Reject::kForkedChain: return "forked_chain";
    case Reject::kLateWrite: return "late_write";
    case Reject::kInvalidItem: return "invalid_item";
    case Reject::kCaseFull: return "case_cap";
    case Reject::kAuthorFull: return "author_cap";
    case Reject::kKeyGrantFull: return "key_grant_cap";
    case Reject::kWaitingFull: return "waiting_cap";
    case Reject::kWaitingExpired: return "waiting_expired";
    case Reject::kRewoundLog: return "rewound_log";
    case Reject::kStoreError: return "store_error";
    case Reject::kCitizenRequired: return "citizen_required";
    case Reject::kCitizenSignature: return "citizen_signature";
    case Reject::kCitizenReplay: return "citizen_replay";
    case Reject::kInvitationUsed: return "invitation_used";
    case Reject::kRosterReplay: return "roster_replay";
    case Reject::kRosterSkip: return "roster_skip";
    case Reject::kRosterFork: return "roster_fork";
    case Reject::kRosterNotSteward: return "roster_not_steward";
    case Reject::kRosterThreshold: return "roster_threshold";
    case Reject::kRotationInvalid: return "rotation_invalid";
    case Reject::kRotationStale: return "rotation_stale";
    case Reject::kRetiredKey: return "retired_key";
    case Reject::kCaseClosed: return "case_closed";
    case Reject::kDestroyed: return "destroyed";
  }
  return "unknown";
}

std::optional<Refusal> CheckTime(HlcTimestamp hlc, int64_t now_ms) {
  // Compared in unsigned milliseconds: a time near 2^48 ms must not wrap.
  uint64_t limit = static_cast<uint64_t>(std::max<int64_t>(now_ms, 0)) + kMaxClockSkewMillis;
  if (HlcMillis(hlc) > limit) return Refusal{Reject::kClockSkew, "its time lies more than an hour in the future"};
  return std::nullopt;
}

Admission JudgeDecision(const CaseState& s, const ControlRecord& r, const Receipt& at) {
  if (auto t = CheckTime(r.header().hlc, at.now_ms)) return Refuse(t->reason, t->detail);
  return s.Check(r);
}

std::optional<Refusal> AddressedTo(const CaseState& after, const ControlRecord& r, const Receipt& at) {
  if (Contains(after.ControlAudience(r, at.now_ms), at.me)) return std::nullopt;
  return Refusal{Reject::kNotAddressed, "control record " + Short(r.Id()) + " is not for " + at.me};
}

std::vector<std::string> FragmentAudience(const CaseState& s, const FragmentFacts& f, int64_t now_ms) {
  if (!s.MayWriteAt(f.author, f.domain, f.time_ms) || s.ClosedAt(f.time_ms)) return {};
  std::vector<std::string> readers = s.Readers(f, now_ms);
  if (AuthorWindowClosed(s, f, now_ms)) std::erase(readers, f.author);
  return readers;
}

std::optional<Refusal> JudgeFragment(const CaseState& s, const FragmentFacts& f, const Receipt& at) {
  const std::string id = Short(f.id);
  if (f.time_ms > at.now_ms + static_cast<int64_t>(kMaxClockSkewMillis))
    return Refusal{Reject::kClockSkew, "fragment " + id + ": its time lies more than an hour in the future"};
  if (s.ClosedAt(f.time_ms))
    return Refusal{Reject::kCaseClosed, "fragment " + id + " by " + f.author + " claims a time at which the case was closed"};
  if (!s.MayWriteAt(f.author, f.domain, f.time_ms))
    return Refusal{Reject::kForgedRecord, "fragment " + id + " by " + f.author + ", which had no right to write in " +
                                              (f.domain.empty() ? std::string("this case") : f.domain) +
                                              " at the time it claims"};
  if (at.from == f.author && AuthorWindowClosed(s, f, at.now_ms))
    return Refusal{Reject::kLateWrite, "fragment " + id + " by " + f.author + " claims a time " +
                                           std::to_string((at.now_ms - f.time_ms) / 1000) +
                                           " s ago, when it had a right to write it that it has lost since"};
  if (!Contains(FragmentAudience(s, f, at.now_ms), at.me))
    return Refusal{Reject::kNotAddressed, "fragment " + id + " is outside what " + at.me + " may hold"};
  return std::nullopt;
}

std::vector<std::string> KeyGrantAudience(const CaseState& s, const KeyGrant& g, const ControlHeader& h,
                                          const FragmentFacts& fragment, int64_t now_ms) {
  std::vector<std::string> out = {h.author.v};
  if (s.MayRead(g.grantee.v, fragment, now_ms) && g.grantee.v != h.author.v) out.push_back(g.grantee.v);
  std::sort(out.begin(), out.end());
  return out;
}

Admission JudgeKeyGrant(const CaseState& s, const ControlRecord& r, const FragmentFacts* fragment, size_t held,
                        const Receipt& at) {
  const auto* g = std::get_if<KeyGrant>(&r.body);
  if (g == nullptr) return Refuse(Reject::kBadRecord, "not a key grant");
  if (auto t = CheckTime(r.header().hlc, at.now_ms)) return Refuse(t->reason, t->detail);
  if (g->grantee.v != at.me || fragment == nullptr)
    return Refuse(Reject::kNotAddressed, "key grant for " + g->grantee.v + " to a fragment this node does not hold");
  if (held >= kMaxKeyGrantsPerAuthor)
    return Refuse(Reject::kKeyGrantFull, "key grant by " + r.header().author.v + " for fragment " + Short(g->fragment) +
                                             ", which already gave " + at.me + " its key");
  Admission a = s.CheckKeyGrant(r, fragment->author);
  if (!a.ok()) return a;
  if (!Contains(KeyGrantAudience(s, *g, r.header(), *fragment, at.now_ms), at.me))
    return Refuse(Reject::kNotAddressed, "key grant for fragment " + Short(g->fragment) + ", which " + at.me +
                                             " may not read");
  return a;
}

std::optional<Refusal> JudgeAccessRecord(const CaseState& s, const AccessRecordBody& b, const Receipt& at) {
  if (auto t = CheckTime(b.hlc, at.now_ms)) return t;
  if (s.Regie().org != at.me)
    return Refusal{Reject::kNotAddressed, "access record for a case " + at.me + " does not hold regie of"};
  if (!s.EverInvolved(b.author.v))
    return Refusal{Reject::kNotAddressed, "access record by " + b.author.v + ", which takes no part in the case"};
  return std::nullopt;
}

CaseChanges Recompute(const CaseState& s, const std::string& me, const std::vector<HeldRecord>& held,
                      const std::set<std::string>& partners, int64_t now_ms) {
  CaseChanges out;
  const bool regie = s.Regie().org == me;
  auto consider = [&](int64_t t) {
    if (t > now_ms && (!out.next_change || t < *out.next_change)) out.next_change = t;
  };
  if (auto t = s.NextChange(now_ms)) consider(*t);

  std::map<RecordId, const HeldRecord*> fragments;
  std::set<std::pair<RecordId, std::string>> granted;
  for (const HeldRecord& r : held) {
    if (r.type == RecordType::kFragment) fragments.emplace(r.id, &r);
    if (r.control)
      if (const auto* g = std::get_if<KeyGrant>(&r.control->body)) granted.insert({g->fragment, g->grantee.v});
  }
  std::set<RecordId> purged;
  for (auto& [id, r] : fragments) {
    const FragmentFacts& f = r->fragment;
    bool mine = f.author == me;
    if (!mine && !s.MayRead(me, f, now_ms)) {
      purged.insert(id);
      out.purge.push_back(id);
      out.purged_fragments.push_back(id);
      continue;
    }
    std::vector<std::string> audience = FragmentAudience(s, f, now_ms);
    // The author's window closes by itself: recompute then.
    if (!s.MayWriteAt(f.author, f.domain, now_ms) && now_ms - f.time_ms <= kLateWriteWindowMs)
      consider(f.time_ms + kLateWriteWindowMs + 1);
    // Late grant: the regie organisation or the author re-seals the content
    // key to readers the author did not seal it to.
    if ((regie || mine) && !audience.empty())
      for (const std::string& reader : s.Readers(f, now_ms)) {
        if (reader == me || !partners.count(reader) || granted.count({id, reader})) continue;
        if (std::find(r->recipients.begin(), r->recipients.end(), reader) != r->recipients.end()) continue;
        out.key_grants.emplace_back(id, reader);
        granted.insert({id, reader});
      }
    out.audiences.emplace_back(id, std::move(audience));
  }
  for (const HeldRecord& r : held) {
    if (!r.control) continue;
    if (const auto* g = std::get_if<KeyGrant>(&r.control->body)) {
      // A grantee drops keys to fragments it no longer holds; nobody sends
      // a key to a grantee that may not read the fragment.
      auto f = fragments.find(g->fragment);
      bool fragment_held = f != fragments.end() && !purged.count(g->fragment);
      if (!fragment_held) {
        if (g->grantee.v == me) out.purge.push_back(r.id);
        else out.audiences.emplace_back(r.id, std::vector<std::string>{r.control->header().author.v});
        continue;
      }
      out.audiences.emplace_back(r.id, KeyGrantAudience(s, *g, r.control->header(), f->second->fragment, now_ms));
      continue;
    }
    out.audiences.emplace_back(r.id, s.ControlAudience(*r.control, now_ms));
  }
  return out;
}

bool MaySeeDecision(const CaseState& s, const ControlRecord& r, std::string_view me, int64_t now_ms) {
  std::vector<std::string> audience = s.ControlAudience(r, now_ms);
  return std::find(audience.begin(), audience.end(), me) != audience.end();
}

bool MaySeeVersion(const CaseState& s, const FragmentFacts& f, std::string_view me, int64_t now_ms) {
  return s.MayRead(me, f, now_ms);
}

}  // namespace kring
