// The cryptographic operations kring uses: hashing, signatures, AEAD, sealing a key to an organisation.
#pragma once

#include <string_view>

#include "crypto/sodium.h"
#include "crypto/status.h"

namespace kring {

// BLAKE2b-256 of `context` followed by the parts, with the context string
// separating uses (a fragment id can never collide with a log-entry hash).
Hash HashParts(std::string_view context, std::initializer_list<ByteSpan> parts);

// Ed25519 over `context || message`. Thread-safe.
Signature Sign(std::string_view context, ByteSpan message, const SignSecretKey& sk);
bool Verify(std::string_view context, ByteSpan message, const Signature& sig, const SignPublicKey& pk);
// Pure Ed25519 over `message` as it is, without a context prefix: what a
// browser's Web Crypto signs. Only for messages that name their own context
// in their first bytes (the citizen's statements). Thread-safe.
Signature SignPure(ByteSpan message, const SignSecretKey& sk);
bool VerifyPure(ByteSpan message, const Signature& sig, const SignPublicKey& pk);

// XChaCha20-Poly1305-IETF. Encrypt returns ciphertext || tag.
Bytes AeadEncrypt(const ContentKey& key, const Nonce& nonce, ByteSpan associated, ByteSpan plaintext);
// Corruption if the tag does not verify (wrong key, tampered data or header).
Result<Bytes> AeadDecrypt(const ContentKey& key, const Nonce& nonce, ByteSpan associated, ByteSpan ciphertext);

// Seals a content key to an organisation's X25519 key (libsodium sealed box):
// only the holder of the matching secret key can open it.
SealedKey SealKey(const ContentKey& key, const BoxPublicKey& recipient);
// Corruption if the box was not sealed to this key pair or was altered.
Status OpenSealedKey(const SealedKey& sealed, const BoxPublicKey& pk, const BoxSecretKey& sk, ContentKey* key);

// Derives the public half of a signing or box secret key.
SignPublicKey SignPublicFromSecret(const SignSecretKey& sk);
BoxPublicKey BoxPublicFromSecret(const BoxSecretKey& sk);

}  // namespace kring
