// The roster chain rule and the key history (consent/network.h).
#include "consent/network.h"

#include <algorithm>
#include <set>

namespace kring {

namespace {
Refusal Refuse(Reject r, std::string detail) { return Refusal{r, std::move(detail)}; }
}  // namespace

std::optional<Refusal> JudgeRosterAlone(const Roster& r, const std::string& me) {
  Status shape = CheckRosterShape(r.body);
  if (!shape.ok()) return Refuse(Reject::kBadRecord, shape.message());
  if (!me.empty() && r.body.Member(me) == nullptr)
    return Refuse(Reject::kNotAddressed, "the roster does not list " + me + " as a member");
  size_t valid = 0;
  for (const RosterSignature& s : r.signatures.v) {
    if (!r.body.IsSteward(s.org.v)) {
      // A later version is signed by the stewards before it, who may have left.
      if (r.body.version > 1) continue;
      return Refuse(Reject::kRosterNotSteward, s.org.v + " signed but is not a steward");
    }
    const RosterMember* m = r.body.Member(s.org.v);
    if (m == nullptr || !r.SignedBy(s.org.v, m->sign_pk))
      return Refuse(Reject::kRosterThreshold, "the signature of " + s.org.v + " does not verify");
    ++valid;
  }
  const size_t needed = r.body.version == 1 ? r.body.stewards.v.size() : r.body.threshold;
  if (valid < needed)
    return Refuse(Reject::kRosterThreshold, "version " + std::to_string(r.body.version) + " carries " + std::to_string(valid) +
                                                " of the " + std::to_string(needed) + " steward signatures it needs");
  return std::nullopt;
}

std::optional<Refusal> JudgeRosterNext(const Roster& current, const Roster& next, const StewardKeys& keys) {
  Status shape = CheckRosterShape(next.body);
  if (!shape.ok()) return Refuse(Reject::kBadRecord, shape.message());
  if (next.body.network.v != current.body.network.v)
    return Refuse(Reject::kRosterFork, "a roster of another network ('" + next.body.network.v + "')");
  const uint32_t want = current.body.version + 1;
  if (next.body.version < want)
    return Refuse(Reject::kRosterReplay, "version " + std::to_string(next.body.version) + " is not after the current version " +
                                             std::to_string(current.body.version));
  if (next.body.version > want)
    return Refuse(Reject::kRosterSkip, "version " + std::to_string(next.body.version) + " skips version " + std::to_string(want));
  if (next.body.previous != current.Id())
    return Refuse(Reject::kRosterFork, "version " + std::to_string(next.body.version) + " does not follow the current version");
  size_t valid = 0;
  for (const RosterSignature& s : next.signatures.v) {
    if (!current.body.IsSteward(s.org.v))
      return Refuse(Reject::kRosterNotSteward, s.org.v + " signed but is not a steward of version " +
                                                   std::to_string(current.body.version));
    bool ok = false;
    for (const SignPublicKey& pk : keys(s.org.v)) ok = ok || next.SignedBy(s.org.v, pk);
    if (!ok) return Refuse(Reject::kRosterThreshold, "the signature of steward " + s.org.v + " does not verify");
    ++valid;
  }
  if (valid < current.body.threshold)
    return Refuse(Reject::kRosterThreshold, "version " + std::to_string(next.body.version) + " carries " + std::to_string(valid) +
                                                " steward signature(s); " + std::to_string(current.body.threshold) + " are needed");
  return std::nullopt;
}

std::vector<OrgKeys> RosterKeyChanges(const RosterBody& next,
                                      const std::function<std::optional<OrgKeys>(const std::string&)>& known) {
  std::vector<OrgKeys> out;
  for (const RosterMember& m : next.members.v) {
    std::optional<OrgKeys> k = known(m.org.v);
    if (k && k->sign_pk == m.sign_pk && k->box_pk == m.box_pk && k->transport_pk == m.transport_pk) continue;
    OrgKeys n;
    n.org = m.org.v;
    n.sign_pk = m.sign_pk;
    n.box_pk = m.box_pk;
    n.transport_pk = m.transport_pk;
    n.from_ms = m.keys_from_ms;
    if (k) {
      // The old keys end where the new ones start, never before they began.
      n.from_ms = std::max(m.keys_from_ms, k->from_ms + 1);
      OrgKeys old = *k;
      old.until_ms = n.from_ms;
      out.push_back(std::move(old));
    }
    out.push_back(std::move(n));
  }
  return out;
}

std::optional<Refusal> JudgeKeyRotation(const KeyRotation& r, const std::optional<OrgKeys>& current, bool* duplicate) {
  *duplicate = false;
  Status st = VerifyKeyRotation(r);
  if (!st.ok()) return Refuse(Reject::kRotationInvalid, st.message());
  if (!current) return Refuse(Reject::kUnknownAuthor, r.body.org.v + " has no keys this node knows");
  if (current->sign_pk == r.body.new_sign_pk && current->transport_pk == r.body.new_transport_pk) {
    *duplicate = true;
    return std::nullopt;
  }
  if (current->sign_pk != r.body.old_sign_pk || current->box_pk != r.body.old_box_pk ||
      current->transport_pk != r.body.old_transport_pk)
    return Refuse(Reject::kRotationStale, "its old keys are not " + r.body.org.v + "'s current keys");
  if (r.body.switch_ms <= current->from_ms)
    return Refuse(Reject::kRotationStale, "it switches before " + r.body.org.v + "'s current keys began");
  return std::nullopt;
}

const OrgKeys* KeysAt(const std::vector<OrgKeys>& history, int64_t ms) {
  for (const OrgKeys& k : history)
    if (k.from_ms <= ms && ms < k.until_ms) return &k;
  return nullptr;
}

std::vector<std::string> RotationHolders(const std::string& me, const std::string& org, const std::vector<NetworkPeer>& partners) {
  bool org_in_roster = false;
  for (const NetworkPeer& p : partners)
    if (p.org == org) org_in_roster = p.roster_member;
  std::vector<std::string> out = {me};
  for (const NetworkPeer& p : partners)
    if (org == me || p.org == org || (org_in_roster && p.roster_member)) out.push_back(p.org);
  return out;
}

}  // namespace kring
