// Dispatches a record's bytes to the decoder of its type.
#include "protocol/record.h"

namespace kring {

Result<AnyRecord> DecodeRecord(ByteSpan record) {
  if (record.empty()) return Status::Corruption("empty record");
  switch (static_cast<RecordType>(record[0])) {
    case RecordType::kFragment: {
      auto f = DecodeFragmentRecord(record);
      if (!f.ok()) return Status::Corruption("undecodable fragment: " + f.status().message());
      return AnyRecord(std::move(*f));
    }
    case RecordType::kAccessRecord: {
      auto a = DecodeAccessRecord(record);
      if (!a.ok()) return Status::Corruption("undecodable access record: " + a.status().message());
      return AnyRecord(std::move(*a));
    }
    case RecordType::kCheckpoint: {
      auto c = DecodeCheckpoint(record);
      if (!c.ok()) return Status::Corruption("undecodable checkpoint: " + c.status().message());
      return AnyRecord(std::move(*c));
    }
    case RecordType::kRoster: {
      auto r = DecodeRoster(record);
      if (!r.ok()) return Status::Corruption("undecodable roster: " + r.status().message());
      return AnyRecord(std::move(*r));
    }
    case RecordType::kKeyRotation: {
      auto r = DecodeKeyRotation(record);
      if (!r.ok()) return Status::Corruption("undecodable key rotation: " + r.status().message());
      return AnyRecord(std::move(*r));
    }
    default: {
      auto c = DecodeControlRecord(record);
      if (!c.ok()) return Status::Corruption("undecodable record: " + c.status().message());
      return AnyRecord(std::move(*c));
    }
  }
}

}  // namespace kring
