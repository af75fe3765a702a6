// Identity card JSON encoding and validation.
#include "protocol/card.h"

#include <cstdio>

#include <nlohmann/json.hpp>

#include "crypto/primitives.h"

namespace kring {

std::string CardToJson(const PublicIdentity& id, int indent) {
  nlohmann::ordered_json j;
  j["kring_card"] = 1;
  j["org"] = id.org;
  j["name"] = id.display_name;
  j["sign_key"] = ToHex(id.sign_pk);
  j["box_key"] = ToHex(id.box_pk);
  j["transport_key"] = ToHex(id.transport_pk);
  return j.dump(indent);
}

std::string CardFingerprint(const PublicIdentity& id) {
  const Hash h = HashParts("kring/card-fingerprint/v1",
                           {ByteSpan(reinterpret_cast<const uint8_t*>(id.org.data()), id.org.size()), ByteSpan(id.sign_pk),
                            ByteSpan(id.box_pk), ByteSpan(id.transport_pk)});
  std::string out;
  for (size_t g = 0; g < 8; ++g) {
    const uint32_t v = (uint32_t{h[4 * g]} << 24) | (uint32_t{h[4 * g + 1]} << 16) | (uint32_t{h[4 * g + 2]} << 8) | h[4 * g + 3];
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04u", static_cast<unsigned>(v % 10000));
    if (g) out += ' ';
    out += buf;
  }
  return out;
}

Result<PublicIdentity> CardFromJson(std::string_view text) {
  if (text.size() > kMaxCardBytes) return Status::InvalidArgument("card is larger than " + std::to_string(kMaxCardBytes) + " bytes");
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::InvalidArgument("card is not a JSON object");
  auto str = [&](const char* key, std::string* out) -> Status {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return Status::InvalidArgument(std::string("card field '") + key + "' is missing or not a string");
    *out = it->get<std::string>();
    return Status::Ok();
  };
  auto ver = j.find("kring_card");
  if (ver == j.end() || !ver->is_number_integer() || ver->get<int>() != 1)
    return Status::InvalidArgument("not a kring identity card (field 'kring_card' must be 1)");
  PublicIdentity id;
  std::string sign, box, transport;
  KRING_RETURN_IF_ERROR(str("org", &id.org));
  KRING_RETURN_IF_ERROR(str("name", &id.display_name));
  KRING_RETURN_IF_ERROR(str("sign_key", &sign));
  KRING_RETURN_IF_ERROR(str("box_key", &box));
  KRING_RETURN_IF_ERROR(str("transport_key", &transport));
  if (!IsValidOrgSlug(id.org)) return Status::InvalidArgument("card org '" + id.org + "' is not a slug [a-z0-9-]{2,64}");
  if (!IsValidDisplayName(id.display_name)) return Status::InvalidArgument("card name is empty, too long or has control characters");
  if (!FromHex(sign, id.sign_pk)) return Status::InvalidArgument("card sign_key is not 64 hex characters");
  if (!FromHex(box, id.box_pk)) return Status::InvalidArgument("card box_key is not 64 hex characters");
  if (!FromHex(transport, id.transport_pk)) return Status::InvalidArgument("card transport_key is not 64 hex characters");
  return id;
}

}  // namespace kring
