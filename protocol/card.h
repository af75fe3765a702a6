// The identity card: the JSON document two partner organisations exchange to trust each other's node.
#pragma once

#include <string>

#include "crypto/identity.h"
#include "crypto/status.h"

namespace kring {

inline constexpr size_t kMaxCardBytes = 4096;

// {"kring_card":1,"org":...,"name":...,"sign_key":hex,"box_key":hex,"transport_key":hex}
std::string CardToJson(const PublicIdentity& id, int indent = 2);

// InvalidArgument naming the field that is missing or wrong.
Result<PublicIdentity> CardFromJson(std::string_view json);

}  // namespace kring
