// Sealing, verifying and opening plan fragments.
#include "protocol/fragment.h"

#include <algorithm>
#include <set>

#include "crypto/primitives.h"

namespace kring {

namespace {
constexpr std::string_view kFragmentContext = "kring/fragment/v1";
}

bool IsValidSlug(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

std::string CaseIdToHex(const CaseId& id) { return ToHex(id); }
bool CaseIdFromHex(std::string_view hex, CaseId* out) { return FromHex(hex, *out); }
CaseId NewCaseId() {
  CaseId id;
  RandomBytes(id);
  return id;
}

FragmentId Fragment::Id() const {
  Bytes h = Encode(header);
  return HashParts(kFragmentContext, {h, ciphertext.v});
}

FragmentId Fragment::ItemId() const {
  static const FragmentId kZero{};
  return header.item == kZero ? Id() : header.item;
}

bool Fragment::IsRecipient(std::string_view org) const {
  for (const Recipient& r : header.recipients.v)
    if (r.org.v == org) return true;
  return false;
}

Status ValidateFragmentHeader(const FragmentHeader& h) {
  if (h.format != kFragmentFormat) return Status::Corruption("unknown fragment format " + std::to_string(h.format));
  if (!IsValidOrgSlug(h.author.v)) return Status::Corruption("author is not a valid organisation slug");
  if (!IsValidSlug(h.kind.v, kMaxKindBytes)) return Status::Corruption("kind is not a valid slug");
  if (!h.domain.v.empty() && !IsValidSlug(h.domain.v, kMaxDomainBytes))
    return Status::Corruption("domain is not a valid slug");
  bool author_found = false;
  for (size_t i = 0; i < h.recipients.v.size(); ++i) {
    const std::string& org = h.recipients.v[i].org.v;
    if (!IsValidOrgSlug(org)) return Status::Corruption("recipient is not a valid organisation slug");
    if (i > 0 && !(h.recipients.v[i - 1].org.v < org))
      return Status::Corruption("recipients not sorted and unique");
    if (org == h.author.v) author_found = true;
  }
  if (!author_found) return Status::Corruption("author is not among the recipients");
  std::set<FragmentId> preds(h.predecessors.v.begin(), h.predecessors.v.end());
  if (preds.size() != h.predecessors.v.size()) return Status::Corruption("duplicate predecessor");
  static const FragmentId kZero{};
  if ((h.item == kZero) != h.predecessors.v.empty())
    return Status::Corruption("a first version names no item and no predecessors; an edit names both");
  return Status::Ok();
}

Result<Fragment> SealFragment(const FragmentDraft& d, const NodeIdentity& author) {
  if (!IsValidSlug(d.kind, kMaxKindBytes)) return Status::InvalidArgument("kind must be a slug [a-z0-9-]{1,32}");
  if (!d.domain.empty() && !IsValidSlug(d.domain, kMaxDomainBytes))
    return Status::InvalidArgument("domain must be a slug [a-z0-9-]{1,32}");
  if (d.body.size() > kMaxBodyBytes)
    return Status::ResourceExhausted("body is larger than " + std::to_string(kMaxBodyBytes) + " bytes");
  if (d.predecessors.size() > kMaxPredecessors) return Status::InvalidArgument("too many predecessors");
  if (std::set<FragmentId>(d.predecessors.begin(), d.predecessors.end()).size() != d.predecessors.size())
    return Status::InvalidArgument("duplicate predecessor");
  if ((d.item == FragmentId{}) != d.predecessors.empty())
    return Status::InvalidArgument("an edit names the item it edits and the versions it supersedes; a new item names neither");

  std::vector<const PublicIdentity*> to;
  to.push_back(&author.pub);
  for (const PublicIdentity& r : d.recipients) {
    if (!IsValidOrgSlug(r.org)) return Status::InvalidArgument("recipient '" + r.org + "' is not a valid organisation");
    to.push_back(&r);
  }
  // Stable, so that of entries with the same org the author's own (first) one
  // survives unique(): the author must always be able to open what it wrote.
  std::stable_sort(to.begin(), to.end(), [](auto* a, auto* b) { return a->org < b->org; });
  to.erase(std::unique(to.begin(), to.end(), [](auto* a, auto* b) { return a->org == b->org; }), to.end());
  if (to.size() > kMaxRecipients) return Status::InvalidArgument("too many recipients");

  Fragment f;
  FragmentHeader& h = f.header;
  h.case_id = d.case_id;
  h.author.v = author.pub.org;
  h.kind.v = d.kind;
  h.domain.v = d.domain;
  h.hlc = d.hlc;
  h.item = d.item;
  h.predecessors.v = d.predecessors;
  RandomBytes(h.nonce);
  ContentKey key;
  crypto_aead_xchacha20poly1305_ietf_keygen(key.data());
  for (const PublicIdentity* r : to) {
    Recipient rc;
    rc.org.v = r->org;
    rc.sealed_key = SealKey(key, r->box_pk);
    h.recipients.v.push_back(std::move(rc));
  }
  KRING_RETURN_IF_ERROR(ValidateFragmentHeader(h));
  Bytes ad = Encode(h);
  f.ciphertext.v = AeadEncrypt(key, h.nonce, ad, d.body);
  FragmentId id = HashParts(kFragmentContext, {ad, f.ciphertext.v});
  f.signature = Sign(kFragmentContext, id, author.sign_sk);
  return f;
}

Status VerifyFragment(const Fragment& f, const SignPublicKey& author_pk) {
  return VerifyFragmentWithId(f, f.Id(), author_pk);
}

Status VerifyFragmentWithId(const Fragment& f, const FragmentId& id, const SignPublicKey& author_pk) {
  KRING_RETURN_IF_ERROR(ValidateFragmentHeader(f.header));
  if (f.ciphertext.v.size() < kAeadTagBytes) return Status::Corruption("ciphertext shorter than its tag");
  if (!Verify(kFragmentContext, id, f.signature, author_pk))
    return Status::Corruption("signature does not verify with the author's key");
  return Status::Ok();
}

const SealedKey* SealedKeyFor(const Fragment& f, std::string_view org) {
  for (const Recipient& r : f.header.recipients.v)
    if (r.org.v == org) return &r.sealed_key;
  return nullptr;
}

Status OpenContentKey(const SealedKey& sealed, const NodeIdentity& me, ContentKey* key) {
  return OpenSealedKey(sealed, me.pub.box_pk, me.box_sk, key);
}

Result<Bytes> DecryptFragment(const Fragment& f, const ContentKey& key) {
  return AeadDecrypt(key, f.header.nonce, Encode(f.header), f.ciphertext.v);
}

Result<Bytes> OpenFragment(const Fragment& f, const NodeIdentity& me) {
  const SealedKey* sealed = SealedKeyFor(f, me.pub.org);
  if (sealed == nullptr) return Status::PermissionDenied("this organisation is not a recipient of the fragment");
  ContentKey key;
  KRING_RETURN_IF_ERROR(OpenContentKey(*sealed, me, &key));
  return DecryptFragment(f, key);
}

}  // namespace kring
