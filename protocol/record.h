// The one decoder of a stored or received record: its type byte picks fragment, control record, access record, checkpoint, roster or key rotation.
#pragma once

#include <variant>

#include "protocol/access_record.h"
#include "protocol/checkpoint.h"
#include "protocol/fragment.h"
#include "protocol/messages.h"
#include "protocol/records.h"
#include "protocol/roster.h"

namespace kring {

using AnyRecord = std::variant<Fragment, ControlRecord, AccessRecord, Checkpoint, Roster, KeyRotation>;

// Decodes [RecordType][encoding] into the record of that type: signatures
// unchecked. Corruption (with the reason) for an empty, unknown or
// undecodable record.
Result<AnyRecord> DecodeRecord(ByteSpan record);

}  // namespace kring
