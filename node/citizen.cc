// The citizen's side of a case on this node: one-time invitations, enrolling a device key, and records the citizen signs.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "crypto/primitives.h"
#include "node/log.h"
#include "node/node.h"

namespace kring {

namespace {

constexpr std::string_view kInvitationPrefix = "citizen-invitation/";

std::string InvitationKey(const Hash& h) { return std::string(kInvitationPrefix) + ToHex(h); }

ByteSpan AsBytes(std::string_view s) { return ByteSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

}  // namespace

std::string NormaliseInvitationCode(std::string_view typed) {
  std::string out;
  if (typed.size() > 64) return "";
  for (char c : typed) {
    if (c == '-' || c == ' ') continue;
    char u = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (kInvitationAlphabet.find(u) == std::string_view::npos) return "";
    out.push_back(u);
  }
  if (out.size() != kInvitationGroups * kInvitationGroupChars) return "";
  return out;
}

void Node::CountCitizenRejection(const std::string& reason) {
  std::lock_guard meta(meta_mu_);
  ++citizen_rejections_[reason];
}

std::map<std::string, uint64_t> Node::CitizenRejections() {
  std::lock_guard meta(meta_mu_);
  return citizen_rejections_;
}

Result<Node::CitizenInvitation> Node::InviteCitizen(const CaseId& case_id, const std::string& given_by) {
  if (given_by.empty() || given_by.size() > kMaxReferenceBytes || !IsPrintableText(given_by) ||
      given_by.find('\n') != std::string::npos)
    return Status::InvalidArgument("'given_by' is required: \"burger\" or a representative's pseudonymous reference, at most 200 bytes");
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  if (state->Regie().org != org_)
    return Status::PermissionDenied("only the regie organisation (" + state->Regie().org + ") invites the citizen");
  CitizenInvitation inv;
  std::string plain;
  for (size_t i = 0; i < kInvitationGroups * kInvitationGroupChars; ++i) {
    plain.push_back(kInvitationAlphabet[randombytes_uniform(static_cast<uint32_t>(kInvitationAlphabet.size()))]);
    if (i % kInvitationGroupChars == kInvitationGroupChars - 1 && i + 1 < kInvitationGroups * kInvitationGroupChars)
      inv.code += plain.substr(plain.size() - kInvitationGroupChars) + "-";
  }
  inv.code += plain.substr(plain.size() - kInvitationGroupChars);
  inv.hash = InvitationHash(plain);
  sodium_memzero(plain.data(), plain.size());
  const int64_t now = NowMs();
  inv.expires_ms = now + kInvitationValidMs;
  nlohmann::json j = {{"case", CaseIdToHex(case_id)}, {"given_by", given_by}, {"created", now},
                      {"expires", inv.expires_ms}, {"used", 0}};
  std::string text = j.dump();
  KRING_RETURN_IF_ERROR(store_->SetNodeState(InvitationKey(inv.hash), AsBytes(text)));
  KRING_LOG(kInfo, "citizen", "invitation " << ToHex(inv.hash).substr(0, 16) << " for case " << CaseIdToHex(case_id)
                                            << ", valid until " << inv.expires_ms);
  return inv;
}

namespace {
struct StoredInvitation {
  CaseId case_id{};
  std::string given_by;
  int64_t expires_ms = 0;
  int64_t used_ms = 0;
  nlohmann::json raw;
};
}  // namespace

Result<Node::EnrolmentOffer> Node::CheckInvitation(const std::string& typed) {
  std::string code = NormaliseInvitationCode(typed);
  if (code.empty()) return Status::NotFound("no such invitation code");
  Hash h = InvitationHash(code);
  sodium_memzero(code.data(), code.size());
  auto stored = store_->GetNodeState(InvitationKey(h));
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return Status::NotFound("no such invitation code");
  nlohmann::json j = nlohmann::json::parse((*stored)->begin(), (*stored)->end(), nullptr, false);
  EnrolmentOffer offer;
  if (j.is_discarded() || !j.is_object() || !CaseIdFromHex(j.value("case", ""), &offer.case_id))
    return Status::Corruption("invitation record is malformed");
  offer.invitation = h;
  if (j.value("used", int64_t{0}) != 0) return Status::AlreadyExists("the invitation code was used already");
  if (NowMs() >= j.value("expires", int64_t{0})) return Status::PermissionDenied("the invitation code has expired");
  return offer;
}

Result<RecordId> Node::EnrolCitizen(const std::string& typed, const SignPublicKey& key, const Signature& possession,
                                    CaseId* case_id_out) {
  auto offer = CheckInvitation(typed);
  if (!offer.ok()) return offer.status();
  const CaseId case_id = offer->case_id;
  auto lock = LockCase(case_id);
  // Read again under the case's lock: two devices racing with one code enrol once.
  auto again = CheckInvitation(typed);
  if (!again.ok()) return again.status();
  auto stored = store_->GetNodeState(InvitationKey(offer->invitation));
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return Status::NotFound("no such invitation code");
  nlohmann::json j = nlohmann::json::parse((*stored)->begin(), (*stored)->end(), nullptr, false);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  if (state->Regie().org != org_)
    return Status::PermissionDenied("this organisation no longer holds regie of the case; ask the regie organisation for a new code");
  if (state->InvitationUsed(offer->invitation)) return Status::AlreadyExists("the invitation code was used already");
  std::string statement = EnrolmentStatement(case_id, offer->invitation, key);
  if (!VerifyPure(AsBytes(statement), possession, key))
    return Status::Unauthenticated("the device's signature does not prove it holds the key");
  CitizenKey k;
  k.h.case_id = case_id;
  k.h.author.v = org_;
  k.h.hlc = clock_.Now();
  k.h.parents.v = ParentsFor(*state);
  k.key = key;
  k.given_by.v = j.value("given_by", "burger");
  k.invitation = offer->invitation;
  k.possession = possession;
  auto id = WriteControlLocked(*state, std::move(k));
  if (!id.ok()) return id.status();
  j["used"] = NowMs();
  j["key"] = ToHex(*id);
  std::string text = j.dump();
  KRING_RETURN_IF_ERROR(store_->SetNodeState(InvitationKey(offer->invitation), AsBytes(text)));
  KRING_LOG(kInfo, "citizen", "citizen key " << ToHex(*id).substr(0, 16) << " enrolled in case " << CaseIdToHex(case_id));
  if (case_id_out) *case_id_out = case_id;
  return id;
}

Result<RecordId> Node::WriteControlLocked(const CaseState& state, ControlBody body) {
  auto signed_rec = SignControl(body, *Keys());
  if (!signed_rec.ok()) return signed_rec.status();
  KRING_RETURN_IF_ERROR(state.CheckNewRecord(*signed_rec));
  const CaseId case_id = signed_rec->header().case_id;
  auto id = StoreOwnControl(std::move(body));
  if (!id.ok()) return id.status();
  KRING_RETURN_IF_ERROR(RecomputeLocked(case_id));
  return id;
}

namespace {
// Fills a draft's header and citizen block: parents are the heads the citizen signs against.
template <class Body>
void PrepareDraft(Body& b, const CaseId& case_id, const std::string& me, std::vector<RecordId> parents, const RecordId& key) {
  b.h.case_id = case_id;
  b.h.author.v = me;
  b.h.parents.v = std::move(parents);
  b.citizen.key = key;
  RandomBytes(b.citizen.nonce);
  b.citizen.heads = HeadsDigest(b.h.parents.v);
}
}  // namespace

Result<ControlRecord> Node::DraftCitizenGrant(const CaseId& case_id, const RecordId& key, const ConsentInput& in) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  if (state->Regie().org != org_)
    return Status::PermissionDenied("consent is recorded by the regie organisation (" + state->Regie().org + ")");
  ConsentGrant c;
  std::vector<std::string> domains = in.domains;
  std::sort(domains.begin(), domains.end());
  domains.erase(std::unique(domains.begin(), domains.end()), domains.end());
  if (domains.empty()) return Status::InvalidArgument("choose at least one life domain");
  if (domains.size() > 1 && std::find(domains.begin(), domains.end(), "*") != domains.end())
    return Status::InvalidArgument("\"*\" (all domains) stands alone");
  for (const std::string& d : domains) {
    if (d != "*" && !IsLifeDomain(d)) return Status::InvalidArgument("unknown life domain '" + d + "'");
    c.domains.v.push_back({d});
  }
  auto partners = store_->ListPartners();
  if (!partners.ok()) return partners.status();
  if (std::none_of(partners->begin(), partners->end(), [&](const Partner& p) { return p.identity.org == in.grantee; }))
    return Status::InvalidArgument("grantee '" + in.grantee + "' is not a partner of this node");
  c.grantee.v = in.grantee;
  c.purpose.v = in.purpose;
  c.basis.v = in.basis;
  c.valid_from_ms = in.valid_from_ms;
  c.valid_until_ms = in.valid_until_ms;
  c.given_by.v = in.given_by;
  c.evidence_kind = kEvidenceCitizenSigned;
  c.evidence_reference.v = in.evidence_reference;
  PrepareDraft(c, case_id, org_, ParentsFor(*state), key);
  c.h.hlc = clock_.Now();  // for the structural check only; set again when committed
  ControlRecord draft{c, {}};
  // The structure must hold before the citizen is asked to sign.
  auto check = SignControl(c, *Keys());
  if (!check.ok()) return check.status();
  return draft;
}

Result<ControlRecord> Node::DraftCitizenWithdrawal(const CaseId& case_id, const RecordId& key, const RecordId& consent) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  auto consents = state->Consents(NowMs());
  auto it = std::find_if(consents.begin(), consents.end(), [&](const ConsentView& v) { return v.id == consent; });
  if (it == consents.end()) return Status::NotFound("no consent " + ToHex(consent) + " in this case");
  if (it->status == ConsentStatus::kWithdrawn) return Status::Conflict("consent is already withdrawn");
  ConsentWithdrawal w;
  w.h.format = kControlFormatCitizenSigned;
  w.evidence_kind = kEvidenceCitizenSigned;
  w.consent = consent;
  PrepareDraft(w, case_id, org_, ParentsFor(*state), key);
  return ControlRecord{w, {}};
}

Result<ControlRecord> Node::DraftCitizenKeyRevocation(const CaseId& case_id, const RecordId& key, const RecordId& revoked) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  if (state->Regie().org != org_)
    return Status::PermissionDenied("a key is revoked by the regie organisation (" + state->Regie().org + ")");
  CitizenKeyRevocation v;
  v.key = revoked;
  v.evidence_kind = kEvidenceCitizenSigned;
  PrepareDraft(v, case_id, org_, ParentsFor(*state), key);
  return ControlRecord{v, {}};
}

Result<RecordId> Node::CommitCitizenRecord(const CaseId& case_id, ControlRecord draft, const Signature& signature) {
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  if (draft.header().case_id != case_id) return Status::InvalidArgument("the draft belongs to another case");
  bool withdrawal = false;
  Status st = std::visit([&](auto& b) -> Status {
    using T = std::decay_t<decltype(b)>;
    if constexpr (std::is_same_v<T, ConsentGrant> || std::is_same_v<T, ConsentWithdrawal> ||
                  std::is_same_v<T, CitizenKeyRevocation>) {
      b.citizen.signature = signature;
      b.h.hlc = clock_.Now();
      withdrawal = std::is_same_v<T, ConsentWithdrawal>;
      return Status::Ok();
    } else {
      return Status::InvalidArgument("the citizen signs only consents, withdrawals and key revocations");
    }
  }, draft.body);
  KRING_RETURN_IF_ERROR(st);
  auto id = WriteControlLocked(*state, std::move(draft.body));
  if (!id.ok()) return id.status();
  if (withdrawal) withdrawals_processed_.fetch_add(1);
  KRING_LOG(kInfo, "citizen", "record " << ToHex(*id).substr(0, 16) << " signed by the citizen stored in case "
                                        << CaseIdToHex(case_id));
  return id;
}

Result<RecordId> Node::RevokeCitizenKey(const CaseId& case_id, const RecordId& key, const std::string& reference) {
  if (reference.empty() || reference.size() > kMaxReferenceBytes)
    return Status::InvalidArgument("'reference' is required (what the revocation acted on), at most 200 bytes");
  auto lock = LockCase(case_id);
  auto state = StateLocked(case_id);
  if (!state.ok()) return state.status();
  CitizenKeyRevocation v;
  v.h.case_id = case_id;
  v.h.author.v = org_;
  v.h.hlc = clock_.Now();
  v.h.parents.v = ParentsFor(*state);
  v.key = key;
  v.evidence_kind = kEvidenceAttested;
  v.evidence_reference.v = reference;
  return WriteControlLocked(*state, std::move(v));
}

}  // namespace kring
