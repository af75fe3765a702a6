// Who may hold a fragment: the one decision every sending and receiving node makes before moving a record.
#pragma once

#include <string_view>

#include "protocol/fragment.h"

namespace kring {

// True when `org` may receive and store `f`. For now an organisation may hold
// a fragment exactly when its author sealed the content key to it; consent
// records (docs/consent.md) will narrow this further.
bool MayHold(const Fragment& f, std::string_view org);

}  // namespace kring
