// Signing, verifying and encoding access-log checkpoints.
#include "protocol/checkpoint.h"

#include <algorithm>

#include "crypto/primitives.h"

namespace kring {

namespace {
constexpr std::string_view kCheckpointContext = "kring/checkpoint/v1";

Status CheckBody(const CheckpointBody& b) {
  if (b.format != kCheckpointFormat) return Status::Corruption("unknown checkpoint format");
  if (!IsValidOrgSlug(b.org.v)) return Status::Corruption("checkpoint org is not a valid organisation slug");
  if (b.time_ms < 0) return Status::Corruption("checkpoint time is negative");
  if (b.entries > static_cast<uint64_t>(INT64_MAX)) return Status::Corruption("checkpoint entry count out of range");
  const bool zero_head = std::all_of(b.head.begin(), b.head.end(), [](uint8_t x) { return x == 0; });
  if ((b.entries == 0) != zero_head) return Status::Corruption("checkpoint head must be zeros exactly when the log is empty");
  return Status::Ok();
}
}  // namespace

RecordId Checkpoint::Id() const { return HashParts(kCheckpointContext, {Encode(body)}); }

Result<Checkpoint> SignCheckpoint(CheckpointBody body, const NodeIdentity& signer) {
  if (body.org.v != signer.pub.org) return Status::InvalidArgument("checkpoint org is not the signer");
  Status st = CheckBody(body);
  if (!st.ok()) return Status::InvalidArgument(st.message());
  Checkpoint c{std::move(body), {}};
  c.signature = Sign(kCheckpointContext, c.Id(), signer.sign_sk);  // cannot throw: the org was checked above
  return c;
}

Status VerifyCheckpoint(const Checkpoint& c, const SignPublicKey& org_pk) {
  KRING_RETURN_IF_ERROR(CheckBody(c.body));
  if (!Verify(kCheckpointContext, c.Id(), c.signature, org_pk))
    return Status::Corruption("checkpoint signature does not verify with " + c.body.org.v + "'s key");
  return Status::Ok();
}

Bytes EncodeCheckpoint(const Checkpoint& c) {
  Bytes out{static_cast<uint8_t>(RecordType::kCheckpoint)};
  Bytes enc = Encode(c);
  out.insert(out.end(), enc.begin(), enc.end());
  return out;
}

Result<Checkpoint> DecodeCheckpoint(ByteSpan record) {
  if (record.size() < kCheckpointMinBytes) return Status::Corruption("checkpoint too short");
  if (record.size() > kCheckpointMaxBytes) return Status::Corruption("checkpoint too long");
  if (record[0] != static_cast<uint8_t>(RecordType::kCheckpoint)) return Status::Corruption("not a checkpoint");
  Checkpoint c;
  KRING_RETURN_IF_ERROR(Decode(record.subspan(1), &c));
  return c;
}

}  // namespace kring
