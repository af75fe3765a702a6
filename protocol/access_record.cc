// Signing, verifying and encoding access-log records.
#include "protocol/access_record.h"

#include <algorithm>

#include "crypto/primitives.h"

namespace kring {

namespace {
constexpr std::string_view kAccessContext = "kring/access/v1";
constexpr const char* kActions[] = {"create", "read", "update", "consent-record", "consent-withdraw", "purge", "export"};
constexpr const char* kOutcomes[] = {"success", "denied", "failure"};

Status CheckBody(const AccessRecordBody& b) {
  if (b.format != 1) return Status::Corruption("unknown access record format");
  if (!IsValidOrgSlug(b.author.v)) return Status::Corruption("author is not a valid organisation slug");
  if (std::none_of(std::begin(kActions), std::end(kActions), [&](const char* a) { return b.action.v == a; }))
    return Status::Corruption("unknown access action '" + b.action.v + "'");
  if (std::none_of(std::begin(kOutcomes), std::end(kOutcomes), [&](const char* o) { return b.outcome.v == o; }))
    return Status::Corruption("unknown access outcome '" + b.outcome.v + "'");
  if (b.actor_id.v.empty()) return Status::Corruption("access record names no actor");
  for (const std::string* t : {&b.actor_id.v, &b.actor_name.v, &b.actor_role.v, &b.on_behalf_of.v, &b.client.v, &b.consent.v})
    if (!IsPrintableText(*t)) return Status::Corruption("access record text is not printable UTF-8");
  for (const auto& item : b.items.v)
    if (!IsPrintableText(item.v)) return Status::Corruption("access record item is not printable UTF-8");
  return Status::Ok();
}
}  // namespace

RecordId AccessRecord::Id() const {
  Bytes b = Encode(body);
  return HashParts(kAccessContext, {b});
}

Result<AccessRecord> SignAccessRecord(AccessRecordBody body, const NodeIdentity& author) {
  if (body.author.v != author.pub.org) return Status::InvalidArgument("record author is not the signer");
  Status st = CheckBody(body);
  if (!st.ok()) return Status::InvalidArgument(st.message());
  AccessRecord r{std::move(body), {}};
  try {
    r.signature = Sign(kAccessContext, r.Id(), author.sign_sk);  // Id() encodes, which throws past a field's limit
  } catch (const WireError& e) {
    return Status::ResourceExhausted(std::string("record does not fit the wire format: ") + e.what());
  }
  return r;
}

Status VerifyAccessRecord(const AccessRecord& r, const SignPublicKey& author_pk) {
  KRING_RETURN_IF_ERROR(CheckBody(r.body));
  if (!Verify(kAccessContext, r.Id(), r.signature, author_pk))
    return Status::Corruption("signature does not verify with the author's key");
  return Status::Ok();
}

Bytes EncodeAccessRecord(const AccessRecord& r) {
  Bytes out{static_cast<uint8_t>(RecordType::kAccessRecord)};
  Bytes enc = Encode(r);
  out.insert(out.end(), enc.begin(), enc.end());
  return out;
}

Result<AccessRecord> DecodeAccessRecord(ByteSpan record) {
  if (record.empty() || record[0] != static_cast<uint8_t>(RecordType::kAccessRecord))
    return Status::Corruption("not an access record");
  AccessRecord r;
  KRING_RETURN_IF_ERROR(Decode(record.subspan(1), &r));
  return r;
}

}  // namespace kring
