// Framing and decoding of node-to-node messages and records.
#include "protocol/messages.h"

namespace kring {

Bytes EncodeMessage(const Message& m) {
  Bytes out;
  out.push_back(kProtocolVersion);
  Bytes body = std::visit(
      [&](const auto& msg) {
        using T = std::decay_t<decltype(msg)>;
        if constexpr (std::is_same_v<T, PushMessage>) out.push_back(static_cast<uint8_t>(MessageType::kPush));
        if constexpr (std::is_same_v<T, ReconcileMessage>)
          out.push_back(static_cast<uint8_t>(MessageType::kReconcile));
        if constexpr (std::is_same_v<T, WantMessage>) out.push_back(static_cast<uint8_t>(MessageType::kWant));
        return Encode(msg);
      },
      m);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Result<Message> DecodeMessage(ByteSpan frame) {
  if (frame.size() < 2) return Status::Corruption("frame shorter than its header");
  if (frame.size() > kMaxFrameBytes) return Status::ResourceExhausted("frame larger than the limit");
  if (frame[0] != kProtocolVersion)
    return Status::Corruption("unsupported protocol version " + std::to_string(frame[0]));
  ByteSpan body = frame.subspan(2);
  switch (static_cast<MessageType>(frame[1])) {
    case MessageType::kPush: {
      PushMessage m;
      KRING_RETURN_IF_ERROR(Decode(body, &m));
      return Message(std::move(m));
    }
    case MessageType::kReconcile: {
      ReconcileMessage m;
      KRING_RETURN_IF_ERROR(Decode(body, &m));
      return Message(std::move(m));
    }
    case MessageType::kWant: {
      WantMessage m;
      KRING_RETURN_IF_ERROR(Decode(body, &m));
      return Message(std::move(m));
    }
  }
  return Status::Corruption("unknown message type " + std::to_string(frame[1]));
}

Bytes EncodeFragmentRecord(const Fragment& f) {
  Bytes out{static_cast<uint8_t>(RecordType::kFragment)};
  Bytes body = Encode(f);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Result<Fragment> DecodeFragmentRecord(ByteSpan record) {
  if (record.empty()) return Status::Corruption("empty record");
  if (record[0] != static_cast<uint8_t>(RecordType::kFragment))
    return Status::Corruption("unknown record type " + std::to_string(record[0]));
  Fragment f;
  KRING_RETURN_IF_ERROR(Decode(record.subspan(1), &f));
  return f;
}

}  // namespace kring
