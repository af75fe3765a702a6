// The identity card: the JSON document two partner organisations exchange to trust each other's node.
#pragma once

#include <string>

#include "crypto/identity.h"
#include "crypto/status.h"

namespace kring {

inline constexpr size_t kMaxCardBytes = 4096;

// {"kring_card":1,"org":...,"name":...,"sign_key":hex,"box_key":hex,"transport_key":hex}
std::string CardToJson(const PublicIdentity& id, int indent = 2);

// What two people compare over the phone before trusting a card: 8 groups
// of 4 digits (106 bits) from BLAKE2b-256 of the card's org and its three
// keys, e.g. "0412 8830 1297 5561 0093 7742 3318 6605". The display name is
// not included: it may be corrected without changing who the card is.
std::string CardFingerprint(const PublicIdentity& id);

// InvalidArgument naming the field that is missing or wrong.
Result<PublicIdentity> CardFromJson(std::string_view json);

}  // namespace kring
