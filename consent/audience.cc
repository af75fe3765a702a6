// The audience rule for fragments.
#include "consent/audience.h"

namespace kring {

bool MayHold(const Fragment& f, std::string_view org) { return f.IsRecipient(org); }

}  // namespace kring
