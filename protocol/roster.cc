// Signing, encoding and checking the shape of network rosters and key rotation statements.
#include "protocol/roster.h"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "crypto/primitives.h"
#include "protocol/card.h"

namespace kring {

namespace {
constexpr std::string_view kRosterContext = "kring/roster/v1";
constexpr std::string_view kRotationContext = "kring/rotation/v1";

bool IsZero(const Hash& h) { return std::all_of(h.begin(), h.end(), [](uint8_t x) { return x == 0; }); }

}  // namespace

bool IsValidSyncEndpoint(std::string_view ep) {
  if (ep.size() > kMaxEndpointBytes || ep.rfind("tcp://", 0) != 0) return false;
  auto colon = ep.rfind(':');
  if (colon == std::string_view::npos || colon <= 6 || colon + 1 >= ep.size() || ep.size() - colon - 1 > 5) return false;
  uint32_t port = 0;
  for (size_t i = colon + 1; i < ep.size(); ++i) {
    if (ep[i] < '0' || ep[i] > '9') return false;
    port = port * 10 + static_cast<uint32_t>(ep[i] - '0');
  }
  if (port == 0 || port > 65535) return false;
  std::string_view host = ep.substr(6, colon - 6);
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '-' || c == '[' || c == ']' || c == ':' || c == '*';
    if (!ok) return false;
  }
  return true;
}

PublicIdentity RosterMember::Identity() const {
  PublicIdentity id;
  id.org = org.v;
  id.display_name = name.v;
  id.sign_pk = sign_pk;
  id.box_pk = box_pk;
  id.transport_pk = transport_pk;
  return id;
}

const RosterMember* RosterBody::Member(std::string_view org) const {
  for (const RosterMember& m : members.v)
    if (m.org.v == org) return &m;
  return nullptr;
}

bool RosterBody::IsSteward(std::string_view org) const {
  return std::any_of(stewards.v.begin(), stewards.v.end(), [&](const auto& s) { return s.v == org; });
}

Hash Roster::Id() const { return HashParts(kRosterContext, {Encode(body)}); }

bool Roster::SignedBy(std::string_view org, const SignPublicKey& pk) const {
  const Hash id = Id();
  for (const RosterSignature& s : signatures.v)
    if (s.org.v == org && Verify(kRosterContext, id, s.signature, pk)) return true;
  return false;
}

Status CheckRosterShape(const RosterBody& b) {
  if (b.format != kRosterFormat) return Status::Corruption("unknown roster format");
  if (b.network.v.empty() || !IsValidDisplayName(b.network.v)) return Status::Corruption("roster network name is empty or not printable text");
  if (b.version == 0) return Status::Corruption("roster version must be at least 1");
  if ((b.version == 1) != IsZero(b.previous))
    return Status::Corruption("roster previous must be zeros exactly for version 1");
  if (b.issued_ms <= 0) return Status::Corruption("roster issue time is not a positive Unix time");
  if (b.members.v.empty()) return Status::Corruption("roster lists no members");
  std::set<std::string> orgs;
  std::set<SignPublicKey> sign_keys;
  std::set<BoxPublicKey> transport_keys;
  for (const RosterMember& m : b.members.v) {
    if (!IsValidOrgSlug(m.org.v)) return Status::Corruption("roster member '" + m.org.v.substr(0, 64) + "' is not an organisation slug");
    if (!IsValidDisplayName(m.name.v)) return Status::Corruption("roster member " + m.org.v + " has an empty or unprintable name");
    if (!IsValidSyncEndpoint(m.endpoint.v)) return Status::Corruption("roster member " + m.org.v + " has an endpoint that is not tcp://HOST:PORT");
    if (m.keys_from_ms < 0) return Status::Corruption("roster member " + m.org.v + " has a negative keys_from_ms");
    if (!orgs.insert(m.org.v).second) return Status::Corruption("roster lists " + m.org.v + " twice");
    if (!sign_keys.insert(m.sign_pk).second || !transport_keys.insert(m.transport_pk).second)
      return Status::Corruption("roster member " + m.org.v + " shares keys with another member");
  }
  if (b.stewards.v.empty()) return Status::Corruption("roster names no stewards");
  std::set<std::string> stewards;
  for (const auto& s : b.stewards.v) {
    if (orgs.count(s.v) == 0) return Status::Corruption("roster steward '" + s.v.substr(0, 64) + "' is not a member");
    if (!stewards.insert(s.v).second) return Status::Corruption("roster names steward " + s.v + " twice");
  }
  if (b.threshold < 1 || b.threshold > stewards.size())
    return Status::Corruption("roster threshold must be between 1 and the number of stewards (" + std::to_string(stewards.size()) + ")");
  return Status::Ok();
}

Status SignRoster(Roster* r, const NodeIdentity& signer) {
  const RosterMember* me = nullptr;
  for (const RosterMember& m : r->body.members.v)
    if (m.org.v == signer.pub.org) me = &m;
  (void)me;  // A steward of the previous version signs; it may have left this one (docs/protocol.md).
  Status shape = CheckRosterShape(r->body);
  if (!shape.ok()) return Status::InvalidArgument(shape.message());
  const Hash id = r->Id();
  auto& sigs = r->signatures.v;
  sigs.erase(std::remove_if(sigs.begin(), sigs.end(), [&](const RosterSignature& s) { return s.org.v == signer.pub.org; }),
             sigs.end());
  if (sigs.size() >= kMaxStewards) return Status::InvalidArgument("roster already carries the most signatures allowed");
  RosterSignature s;
  s.org.v = signer.pub.org;
  s.signature = Sign(kRosterContext, id, signer.sign_sk);
  sigs.push_back(std::move(s));
  std::sort(sigs.begin(), sigs.end(), [](const RosterSignature& a, const RosterSignature& b) { return a.org.v < b.org.v; });
  return Status::Ok();
}

Bytes EncodeRoster(const Roster& r) {
  Bytes out{static_cast<uint8_t>(RecordType::kRoster)};
  Bytes enc = Encode(r);
  out.insert(out.end(), enc.begin(), enc.end());
  return out;
}

Result<Roster> DecodeRoster(ByteSpan record) {
  if (record.empty() || record[0] != static_cast<uint8_t>(RecordType::kRoster)) return Status::Corruption("not a roster");
  if (record.size() > kMaxRecordBytes) return Status::Corruption("roster too long");
  Roster r;
  KRING_RETURN_IF_ERROR(Decode(record.subspan(1), &r));
  KRING_RETURN_IF_ERROR(CheckRosterShape(r.body));
  std::set<std::string> signers;
  for (const RosterSignature& s : r.signatures.v) {
    if (!IsValidOrgSlug(s.org.v)) return Status::Corruption("roster signature by a malformed organisation slug");
    if (!signers.insert(s.org.v).second) return Status::Corruption("roster carries two signatures by " + s.org.v);
  }
  return r;
}

std::string RosterToJson(const Roster& r) {
  nlohmann::ordered_json j;
  j["kring_roster"] = 1;
  j["network"] = r.body.network.v;
  j["version"] = r.body.version;
  j["previous"] = r.body.version == 1 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(ToHex(r.body.previous));
  j["issued_ms"] = r.body.issued_ms;
  j["threshold"] = r.body.threshold;
  j["stewards"] = nlohmann::ordered_json::array();
  for (const auto& s : r.body.stewards.v) j["stewards"].push_back(s.v);
  j["members"] = nlohmann::ordered_json::array();
  for (const RosterMember& m : r.body.members.v) {
    nlohmann::ordered_json mj;
    mj["org"] = m.org.v;
    mj["name"] = m.name.v;
    mj["endpoint"] = m.endpoint.v;
    mj["fingerprint"] = CardFingerprint(m.Identity());
    mj["sign_key"] = ToHex(m.sign_pk);
    mj["box_key"] = ToHex(m.box_pk);
    mj["transport_key"] = ToHex(m.transport_pk);
    mj["keys_from_ms"] = m.keys_from_ms;
    j["members"].push_back(std::move(mj));
  }
  j["id"] = ToHex(r.Id());
  j["signatures"] = nlohmann::ordered_json::array();
  for (const RosterSignature& s : r.signatures.v)
    j["signatures"].push_back({{"org", s.org.v}, {"signature", ToHex(s.signature)}});
  return j.dump(2);
}

Result<Roster> RosterFromJson(std::string_view text) {
  if (text.size() > kMaxRosterJsonBytes)
    return Status::InvalidArgument("roster file is larger than " + std::to_string(kMaxRosterJsonBytes) + " bytes");
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::InvalidArgument("roster is not a JSON object");
  auto field = [](const nlohmann::json& o, const char* key, nlohmann::json::value_t type) -> const nlohmann::json* {
    auto it = o.find(key);
    if (it == o.end()) return nullptr;
    if (type == nlohmann::json::value_t::number_unsigned ? !it->is_number_integer() : it->type() != type) return nullptr;
    return &*it;
  };
  auto bad = [](const std::string& what) { return Status::InvalidArgument("roster field '" + what + "' is missing or wrong"); };
  const auto* kind = field(j, "kring_roster", nlohmann::json::value_t::number_unsigned);
  if (!kind || kind->get<int64_t>() != 1) return Status::InvalidArgument("not a kring roster (field 'kring_roster' must be 1)");
  Roster r;
  const auto* network = field(j, "network", nlohmann::json::value_t::string);
  if (!network || network->get_ref<const std::string&>().size() > kMaxNetworkNameBytes) return bad("network");
  r.body.network.v = network->get<std::string>();
  const auto* version = field(j, "version", nlohmann::json::value_t::number_unsigned);
  if (!version || version->get<int64_t>() < 1 || version->get<int64_t>() > UINT32_MAX) return bad("version");
  r.body.version = static_cast<uint32_t>(version->get<int64_t>());
  auto prev = j.find("previous");
  if (prev != j.end() && prev->is_string()) {
    if (!FromHex(prev->get<std::string>(), r.body.previous)) return bad("previous");
  } else if (prev != j.end() && !prev->is_null()) {
    return bad("previous");
  }
  const auto* issued = field(j, "issued_ms", nlohmann::json::value_t::number_unsigned);
  if (!issued) return bad("issued_ms");
  r.body.issued_ms = issued->get<int64_t>();
  const auto* threshold = field(j, "threshold", nlohmann::json::value_t::number_unsigned);
  if (!threshold || threshold->get<int64_t>() < 1 || threshold->get<int64_t>() > 255) return bad("threshold");
  r.body.threshold = static_cast<uint8_t>(threshold->get<int64_t>());
  const auto* stewards = field(j, "stewards", nlohmann::json::value_t::array);
  if (!stewards || stewards->size() > kMaxStewards) return bad("stewards");
  for (const auto& s : *stewards) {
    if (!s.is_string() || s.get_ref<const std::string&>().size() > kMaxOrgBytes) return bad("stewards");
    r.body.stewards.v.push_back({s.get<std::string>()});
  }
  const auto* members = field(j, "members", nlohmann::json::value_t::array);
  if (!members || members->size() > kMaxRosterMembers) return bad("members");
  for (const auto& mj : *members) {
    if (!mj.is_object()) return bad("members");
    RosterMember m;
    auto str = [&](const char* key, size_t max, std::string* out) -> bool {
      const auto* f = field(mj, key, nlohmann::json::value_t::string);
      if (!f || f->get_ref<const std::string&>().size() > max) return false;
      *out = f->get<std::string>();
      return true;
    };
    std::string sign, box, transport;
    if (!str("org", kMaxOrgBytes, &m.org.v) || !str("name", kMaxDisplayNameBytes, &m.name.v) ||
        !str("endpoint", kMaxEndpointBytes, &m.endpoint.v) || !str("sign_key", 64, &sign) || !str("box_key", 64, &box) ||
        !str("transport_key", 64, &transport) || !FromHex(sign, m.sign_pk) || !FromHex(box, m.box_pk) ||
        !FromHex(transport, m.transport_pk))
      return bad("members");
    if (const auto* from = field(mj, "keys_from_ms", nlohmann::json::value_t::number_unsigned)) m.keys_from_ms = from->get<int64_t>();
    r.body.members.v.push_back(std::move(m));
  }
  const auto* sigs = field(j, "signatures", nlohmann::json::value_t::array);
  if (!sigs || sigs->size() > kMaxStewards) return bad("signatures");
  for (const auto& sj : *sigs) {
    if (!sj.is_object()) return bad("signatures");
    const auto* org = field(sj, "org", nlohmann::json::value_t::string);
    const auto* sig = field(sj, "signature", nlohmann::json::value_t::string);
    RosterSignature s;
    if (!org || !sig || org->get_ref<const std::string&>().size() > kMaxOrgBytes ||
        !FromHex(sig->get<std::string>(), s.signature))
      return bad("signatures");
    s.org.v = org->get<std::string>();
    r.signatures.v.push_back(std::move(s));
  }
  Status shape = CheckRosterShape(r.body);
  if (!shape.ok()) return Status::InvalidArgument(shape.message());
  // Round-trip through the wire form: what is signed is what travels.
  auto again = DecodeRoster(EncodeRoster(r));
  if (!again.ok()) return Status::InvalidArgument(again.status().message());
  return r;
}

RecordId KeyRotation::Id() const { return HashParts(kRotationContext, {Encode(body)}); }

namespace {
Status CheckRotationBody(const KeyRotationBody& b) {
  if (b.format != kRotationFormat) return Status::Corruption("unknown key rotation format");
  if (!IsValidOrgSlug(b.org.v)) return Status::Corruption("key rotation org is not an organisation slug");
  if (b.switch_ms <= 0) return Status::Corruption("key rotation switch time is not a positive Unix time");
  // Keys are not retired after the fact: records signed before the statement stay valid.
  if (static_cast<uint64_t>(b.switch_ms) < HlcMillis(b.hlc)) return Status::Corruption("key rotation switches before it was signed");
  if (b.old_sign_pk == b.new_sign_pk || b.old_box_pk == b.new_box_pk || b.old_transport_pk == b.new_transport_pk)
    return Status::Corruption("key rotation keeps an old key");
  return Status::Ok();
}
}  // namespace

Result<KeyRotation> SignKeyRotation(const NodeIdentity& old_id, const NodeIdentity& new_id, HlcTimestamp hlc,
                                    int64_t switch_ms) {
  if (old_id.pub.org != new_id.pub.org) return Status::InvalidArgument("a rotation keeps the organisation");
  KeyRotation r;
  r.body.org.v = old_id.pub.org;
  r.body.hlc = hlc;
  r.body.switch_ms = switch_ms;
  r.body.old_sign_pk = old_id.pub.sign_pk;
  r.body.old_box_pk = old_id.pub.box_pk;
  r.body.old_transport_pk = old_id.pub.transport_pk;
  r.body.new_sign_pk = new_id.pub.sign_pk;
  r.body.new_box_pk = new_id.pub.box_pk;
  r.body.new_transport_pk = new_id.pub.transport_pk;
  Status st = CheckRotationBody(r.body);
  if (!st.ok()) return Status::InvalidArgument(st.message());
  const RecordId id = r.Id();
  r.old_signature = Sign(kRotationContext, id, old_id.sign_sk);
  r.new_signature = Sign(kRotationContext, id, new_id.sign_sk);
  return r;
}

Status VerifyKeyRotation(const KeyRotation& r) {
  KRING_RETURN_IF_ERROR(CheckRotationBody(r.body));
  const RecordId id = r.Id();
  if (!Verify(kRotationContext, id, r.old_signature, r.body.old_sign_pk))
    return Status::Corruption("key rotation is not signed by the old key");
  if (!Verify(kRotationContext, id, r.new_signature, r.body.new_sign_pk))
    return Status::Corruption("key rotation is not signed by the new key");
  return Status::Ok();
}

Bytes EncodeKeyRotation(const KeyRotation& r) {
  Bytes out{static_cast<uint8_t>(RecordType::kKeyRotation)};
  Bytes enc = Encode(r);
  out.insert(out.end(), enc.begin(), enc.end());
  return out;
}

Result<KeyRotation> DecodeKeyRotation(ByteSpan record) {
  if (record.size() < kRotationBytes) return Status::Corruption("key rotation too short");
  if (record.size() > kRotationBytes + kMaxOrgBytes - 2) return Status::Corruption("key rotation too long");
  if (record[0] != static_cast<uint8_t>(RecordType::kKeyRotation)) return Status::Corruption("not a key rotation");
  KeyRotation r;
  KRING_RETURN_IF_ERROR(Decode(record.subspan(1), &r));
  KRING_RETURN_IF_ERROR(CheckRotationBody(r.body));
  return r;
}

}  // namespace kring
