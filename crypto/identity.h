// A node's long-term identity: its organisation and three key pairs, kept in an owner-only key file.
#pragma once

#include <string>

#include "crypto/sodium.h"
#include "crypto/status.h"

namespace kring {

// The public half of an organisation's identity: what partners exchange.
struct PublicIdentity {
  std::string org;           // slug [a-z0-9-]{2,64}
  std::string display_name;  // for people; 1..128 bytes of UTF-8
  SignPublicKey sign_pk{};   // Ed25519: authorship of fragments and records
  BoxPublicKey box_pk{};     // X25519: content keys are sealed to it
  BoxPublicKey transport_pk{};  // Curve25519: ZeroMQ CURVE transport
};

// An organisation's full identity. Secret keys are wiped on destruction.
// Not copyable by accident: pass by reference.
struct NodeIdentity {
  PublicIdentity pub;
  SignSecretKey sign_sk;
  BoxSecretKey box_sk;
  BoxSecretKey transport_sk;

  // Generates fresh key pairs for `org`.
  // REQUIRES: IsValidOrgSlug(org) and IsValidDisplayName(display_name)
  static NodeIdentity Generate(std::string org, std::string display_name);
};

bool IsValidOrgSlug(std::string_view org);
// Well-formed UTF-8: no overlong forms, surrogates or code points past U+10FFFF.
bool IsValidUtf8(std::string_view s);
// Valid UTF-8 without control characters other than newline and tab: text
// from a peer that will reach JSON, logs or a screen.
bool IsPrintableText(std::string_view s);
bool IsValidDisplayName(std::string_view name);

// Writes the identity to `path` with mode 0600, refusing to overwrite an
// existing file (AlreadyExists). The file is fsynced before returning.
Status WriteKeyFile(const std::string& path, const NodeIdentity& id);

// Reads a key file. PermissionDenied if the file can be read or written by
// anyone but its owner; Corruption if it is not a kring key file or its
// public keys do not match its secret keys.
Result<NodeIdentity> ReadKeyFile(const std::string& path);

}  // namespace kring
